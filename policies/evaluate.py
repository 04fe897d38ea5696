"""Evaluate a policy file the way the daemon runs it: drift on the robustness suite, and
command tracking, each next to the balanced sine gait.

``python -m policies.evaluate FILE`` walks the policy through :func:`plend.daemon.headless.run`
(the daemon's loop, supervisor, safety filter and :class:`~policies.runner.PolicyBehaviour`,
in fast mode), in parallel worker processes:

1. **The suite**: the policy and the sine gait (with its balance layer, as configured by
   default) at the same command (``--speed``, ``--turn``, ``--side``) on worlds K .. K+N-1
   of the robustness suite (:func:`plend.model.worlds.draw_world`): per world distance, lateral
   drift, heading change and its rate, whether and when it fell; totals as ``plend
   evaluate`` gives them, and the policy's mean distance over the gait's.
2. **Command tracking**, on the nominal world: for speed 0.25, 0.5, 1.0 and turn -0.5, 0,
   0.5 (those inside the policy's command ranges), the forward speed (the distance walked
   along the heading, tick by tick, over the run) and the yaw rate of the policy and of
   the gait, and whether the policy is within 25 % (or 3 deg/s for the yaw rate) of what
   the gait achieves for the same command.

Worlds the training draws from (:data:`policies.env.TRAINING_WORLDS`) start at 1000, so
the suite's first worlds are ones the policy has not walked. ``--json FILE`` writes it all.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plend.cli.evaluate import ProgressBar, default_jobs, totals, walk_world, world_seeds
from plend.core.config import Config
from plend.core.errors import PlendError
from plend.core.files import refuse_existing, write_new
from plend.daemon.headless import RunOptions
from plend.model.worlds import draw_world

TRACKING_SPEEDS = (0.25, 0.5, 1.0)
TRACKING_TURNS = (-0.5, 0.0, 0.5)
SPEED_TOLERANCE = 0.25  # of the gait's
YAW_TOLERANCE = 0.25
YAW_FLOOR_DEG_S = 3.0

Job = tuple[str, Config, RunOptions]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.evaluate",
        description="Walk an ONNX policy in simulation through the daemon's own policy path: drift and "
        "falls on worlds of the robustness suite, and command tracking on the nominal world, each next to "
        "the balanced sine gait.",
    )
    add = parser.add_argument
    add("file", type=Path, help="the ONNX policy file")
    add("--worlds", type=int, default=50, help="worlds of the suite (default 50; 0: none)")
    add("--first", type=int, default=0, help="the first world's number (default 0)")
    add("--seconds", type=float, default=20.0, help="walking time per run (default 20)")
    add("--speed", type=float, default=0.5, help="the command on the suite (default 0.5)")
    add("--turn", type=float, default=0.0, help="(default 0)")
    add("--side", type=float, default=0.0, help="(default 0)")
    add("--no-tracking", action="store_true", help="skip the command-tracking table")
    add("--jobs", type=int, default=default_jobs(), help="worker processes (default: the cores)")
    add("--json", type=Path, help="write the report here")
    add("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_jobs(jobs: list[Job], workers: int, progress: Callable[[int, int, int], None] | None) -> list[dict]:
    """Each (name, config, options) walked as ``plend run --fast`` would; rows in order."""
    rows: dict[int, dict[str, Any]] = {}

    def finished(index: int, row: dict[str, Any]) -> None:
        rows[index] = row
        if progress is not None:
            progress(len(rows), len(jobs), sum(r["fell"] for r in rows.values()))

    if workers <= 1:
        for i, job in enumerate(jobs):
            finished(i, walk_world(*job))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(walk_world, *job): i for i, job in enumerate(jobs)}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
    return [rows[i] for i in range(len(jobs))]


def tracking_commands(spec: Any) -> list[tuple[float, float]]:
    """The (speed, turn) pairs of the tracking table inside the policy's ranges."""
    pairs = []
    for speed in TRACKING_SPEEDS:
        for turn in TRACKING_TURNS:
            try:
                spec.check_command(speed, turn, 0.0)
            except ValueError:
                continue
            pairs.append((speed, turn))
    return pairs


def plan(args: argparse.Namespace, spec: Any) -> dict[str, list[Job]]:
    """The runs: the suite for policy and gait, and the tracking commands for both."""
    base = Config(hal="sim")
    seconds = args.seconds

    def walkers(speed: float, turn: float, side: float) -> dict[str, RunOptions]:
        return {
            "policy": RunOptions(speed=speed, turn=turn, side=side, duration_s=seconds, fast=True,
                                 policy=args.file.resolve()),
            "sine": RunOptions(speed=speed, turn=turn, side=side, duration_s=seconds, fast=True),
        }  # fmt: skip

    jobs: dict[str, list[Job]] = {"policy": [], "sine": [], "track_policy": [], "track_sine": []}
    seeds = world_seeds(args.first, args.worlds) if args.worlds else ()
    for walker, options in walkers(args.speed, args.turn, args.side).items():
        for n in seeds:
            jobs[walker].append((str(n), dataclasses.replace(base, sim=draw_world(n)), options))
    if not args.no_tracking:
        for speed, turn in tracking_commands(spec):
            for walker, options in walkers(speed, turn, 0.0).items():
                jobs[f"track_{walker}"].append((f"{speed:g}/{turn:+g}", base, options))
    return jobs


def tracking_rows(policy: list[dict], sine: list[dict]) -> list[dict[str, Any]]:
    """Commanded against achieved, policy against gait, and whether within the tolerances."""
    out = []
    for p, s in zip(policy, sine, strict=True):
        speed, turn = (float(v) for v in p["world"].split("/"))
        pv, sv = (r["walked_m"] / max(r["duration_s"], 1e-9) for r in (p, s))
        pw, sw = p["yaw_rate_deg_s"], s["yaw_rate_deg_s"]
        out.append({
            "speed": speed, "turn": turn, "policy_m_s": round(pv, 4), "sine_m_s": round(sv, 4),
            "policy_yaw_deg_s": pw, "sine_yaw_deg_s": sw, "policy_fell": p["fell"], "sine_fell": s["fell"],
            "speed_ok": abs(pv - sv) <= SPEED_TOLERANCE * abs(sv),
            "yaw_ok": abs(pw - sw) <= max(YAW_TOLERANCE * abs(sw), YAW_FLOOR_DEG_S),
        })  # fmt: skip
    return out


def suite_table(policy: list[dict], sine: list[dict]) -> str:
    """Per world: the policy's and the gait's figures; then both totals."""
    head = (f"{'world':>6} | {'policy m':>8} {'lat m':>6} {'yaw':>6} {'deg/s':>6} {'fell':>5} | "
            f"{'sine m':>7} {'lat m':>6} {'yaw':>6} {'deg/s':>6} {'fell':>5}")  # fmt: skip
    lines = [head]
    for p, s in zip(policy, sine, strict=True):
        lines.append(f"{p['world']:>6} | {_walk(p, 8)} | {_walk(s, 7)}")
    for name, rows in (("policy", policy), ("sine", sine)):
        t = totals(rows)
        lines.append(
            f"{name:>6}: falls {t['falls']}/{t['worlds']}; |lateral| median {t['median_abs_lateral_m']} m, "
            f"worst {t['worst_abs_lateral_m']} m; |yaw| median {t['median_abs_yaw_deg']} deg, worst "
            f"{t['worst_abs_yaw_deg']} deg; mean distance {t['mean_distance_m']} m"
        )
    return "\n".join(lines)


def _walk(r: dict[str, Any], width: int) -> str:
    fell = f"{r['time_to_fall_s']:.1f}s" if r["fell"] else "no"
    return (f"{r['distance_m']:{width}.3f} {r['lateral_m']:6.3f} {r['yaw_deg']:6.1f} "
            f"{r['yaw_rate_deg_s']:6.2f} {fell:>5}")  # fmt: skip


def tracking_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'speed':>5} {'turn':>5} | {'policy m/s':>10} {'sine m/s':>8} {'ok':>3} | "
             f"{'policy deg/s':>12} {'sine deg/s':>10} {'ok':>3} | fell"]  # fmt: skip
    for r in rows:
        fell = ", ".join(n for n in ("policy", "sine") if r[f"{n}_fell"]) or "no"
        lines.append(
            f"{r['speed']:5.2f} {r['turn']:+5.1f} | {r['policy_m_s']:10.4f} {r['sine_m_s']:8.4f} "
            f"{_ok(r['speed_ok']):>3} | {r['policy_yaw_deg_s']:12.2f} {r['sine_yaw_deg_s']:10.2f} "
            f"{_ok(r['yaw_ok']):>3} | {fell}"
        )
    return "\n".join(lines)


def _ok(flag: bool) -> str:
    return "yes" if flag else "no"


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Check the policy, run every walk, print the tables; return the report."""
    from policies.runner import load_runner

    if not (0 < args.seconds <= 3600) or args.jobs < 1:
        raise PlendError("--seconds must be in (0, 3600] and --jobs at least 1")
    runner = load_runner(args.file, Config().loop.rate_hz, "sim", None)  # a bad file: refused first
    runner.spec.check_command(args.speed, args.turn, args.side)
    jobs = plan(args, runner.spec)
    order = [job for group in jobs.values() for job in group]
    bar = None if args.no_progress else ProgressBar()
    rows = run_jobs(order, args.jobs, bar)
    split, at = {}, 0
    for key, group in jobs.items():
        split[key], at = rows[at : at + len(group)], at + len(group)
    report: dict[str, Any] = {"policy": str(args.file), "seconds": args.seconds,
                              "command": [args.speed, args.turn, args.side]}  # fmt: skip
    if split["policy"]:
        report["suite"] = {k: {"totals": totals(split[k]), "worlds": split[k]} for k in ("policy", "sine")}
        last = args.first + args.worlds - 1
        print(f"{args.file}: worlds {args.first}-{last} of the suite, {args.seconds:g} s at speed "
              f"{args.speed:g}, turn {args.turn:g}, side {args.side:g}")  # fmt: skip
        print(suite_table(split["policy"], split["sine"]))
        ratio = _ratio(report["suite"])
        report["suite"]["distance_ratio"] = ratio
        print(f"policy / sine mean distance: {ratio}")
    if split["track_policy"]:
        report["tracking"] = tracking_rows(split["track_policy"], split["track_sine"])
        print(
            f"command tracking, nominal world, {args.seconds:g} s (within {SPEED_TOLERANCE:.0%} of the "
            f"gait's speed, {YAW_TOLERANCE:.0%} or {YAW_FLOOR_DEG_S:g} deg/s of its yaw rate):"
        )
        print(tracking_table(report["tracking"]))
    return report


def _ratio(suite: dict[str, Any]) -> float | None:
    policy, sine = (suite[k]["totals"]["mean_distance_m"] for k in ("policy", "sine"))
    return None if not sine else round(policy / sine, 3)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("plend").setLevel(logging.CRITICAL)  # falls are in the table
    try:
        if args.json is not None:
            refuse_existing("--json", args.json)  # before the evaluation, not after
        report = evaluate(args)
        if args.json is not None:
            write_new("--json", args.json, (json.dumps(report, indent=1, default=str) + "\n").encode())
    except (PlendError, OSError) as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"policies.evaluate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
