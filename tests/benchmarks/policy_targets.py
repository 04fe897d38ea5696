"""Benchmark: a walking policy against the targets of the shipped policy.

Run with ``.venv/bin/python tests/benchmarks/policy_targets.py [FILE] [--worlds N]
[--seconds S] [--jobs J] [--json OUT]`` (default policies/walk.onnx, 50 worlds, 20 s).
Every walk goes through the daemon's own path (``plend run --fast``), in parallel worker
processes. Prints each target with the figure reached and whether it is met:

- worlds 0..N-1 of the robustness suite at speed 0.5, turn 0: falls, median and worst
  |yaw|, median |lateral|, and mean distance over the balanced sine gait's on the same
  worlds;
- speed 1.0: distance on the nominal world, mean distance and falls over the same worlds;
- command tracking on the nominal world (speed 0.25/0.5/1.0 x turn -0.5/0/0.5, those the
  policy takes): forward speed and yaw rate within 25 % (or 3 deg/s) of the gait's;
- the emulated hardware path (``--hal hardware --bus emulated``): no fall, distance
  within 20 % of the pure simulation, fewer than 20 limit clips;
- a model whose soles differ by 6 mm in height and have 4 mm rounded edges (either side
  lower): no fall, distance at least the gait's on that model;
- the observation uses only what the real robot has.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from plend.cli.evaluate import ProgressBar, default_jobs, library_versions, totals
from plend.core.config import Config, HardwareConfig
from plend.daemon.headless import RunOptions
from plend.model.sim_world import SimWorld
from plend.model.worlds import draw_world
from policies.evaluate import run_jobs, tracking_commands, tracking_rows
from policies.runner import available_sources, load_runner

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "walk.onnx"
MODELS = {
    "right sole 6 mm lower, rounded": SimWorld(sole_height_right_mm=6.0, sole_edge_radius_mm=4.0),
    "left sole 6 mm lower, rounded": SimWorld(sole_height_left_mm=6.0, sole_edge_radius_mm=4.0),
}


def jobs(
    path: Path, spec: Any, worlds: int, seconds: float
) -> dict[str, list[tuple[str, Config, RunOptions]]]:
    """Every walk the targets need, by group."""
    sim = Config(hal="sim")
    emulated = dataclasses.replace(Config(hal="hardware"), hardware=HardwareConfig(bus="emulated"))

    def opts(speed: float = 0.5, turn: float = 0.0, policy: bool = True) -> RunOptions:
        return RunOptions(
            speed=speed, turn=turn, duration_s=seconds, fast=True, policy=path if policy else None
        )

    suite = [(n, dataclasses.replace(sim, sim=draw_world(n))) for n in range(worlds)]
    groups: dict[str, list[tuple[str, Config, RunOptions]]] = {}
    full = takes(spec, 1.0)  # a policy trained at one speed cannot be told 1.0
    for speed in (0.5, 1.0) if full else (0.5,):
        groups[f"policy {speed}"] = [(str(n), c, opts(speed)) for n, c in suite]
        groups[f"sine {speed}"] = [(str(n), c, opts(speed, policy=False)) for n, c in suite]
    groups["nominal"] = [("policy 1.0", sim, opts(1.0)), ("sine 1.0", sim, opts(1.0, policy=False))] * full
    groups["emulated"] = [("simulation", sim, opts()), ("emulated", emulated, opts())]
    groups["models"] = [
        (f"{name}|{walker}", dataclasses.replace(sim, sim=world), opts(policy=walker == "policy"))
        for name, world in MODELS.items()
        for walker in ("policy", "sine")
    ]
    pairs = tracking_commands(spec)
    groups["track policy"] = [(f"{s:g}/{t:+g}", sim, opts(s, t)) for s, t in pairs]
    groups["track sine"] = [(f"{s:g}/{t:+g}", sim, opts(s, t, policy=False)) for s, t in pairs]
    return groups


def takes(spec: Any, speed: float) -> bool:
    """Whether the policy takes this speed command."""
    try:
        spec.check_command(speed, 0.0, 0.0)
    except ValueError:
        return False
    return True


def verdicts(spec: Any, r: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, bool]]:
    """(target, what was reached, met) for every target."""
    out = half_speed(r)
    if r["nominal"]:
        out += full_speed(r)
    else:
        low, high = spec.command_range("speed")
        out.append(("speed 1.0 targets", f"the policy takes only speed {low:g}..{high:g}", False))
    track = tracking_rows(r["track policy"], r["track sine"])
    ok = sum(t["speed_ok"] and t["yaw_ok"] and not t["policy_fell"] for t in track)
    out.append(("tracking within 25 % (3 deg/s) of the gait", f"{ok} of 9 commands", ok == 9))
    out += hardware_and_models(r)
    missing = [name for name, _ in spec.observation if name not in available_sources("hardware")]
    reached = "all" if not missing else f"needs {missing}"
    out.append(("observation: only what the robot has", reached, not missing))
    return out


def half_speed(r: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, bool]]:
    half, sine = totals(r["policy 0.5"]), totals(r["sine 0.5"])
    n = half["worlds"]
    ratio = half["mean_distance_m"] / max(sine["mean_distance_m"], 1e-9)
    yaw, worst = half["median_abs_yaw_deg"], half["worst_abs_yaw_deg"]
    lateral = half["median_abs_lateral_m"]
    return [
        (f"{n} worlds at 0.5: 0 falls", f"{half['falls']}/{n} (sine gait {sine['falls']}/{n})",
         half["falls"] == 0),
        ("median |yaw| <= 5 deg, worst <= 15", f"{yaw} / {worst} deg", yaw <= 5 and worst <= 15),
        ("median |lateral| <= 0.05 m", f"{lateral} m", lateral <= 0.05),
        ("mean distance >= 1.3x the sine gait's",
         f"{half['mean_distance_m']} m vs {sine['mean_distance_m']} m: {ratio:.2f}x", ratio >= 1.3),
    ]  # fmt: skip


def full_speed(r: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, bool]]:
    full, sine = totals(r["policy 1.0"]), totals(r["sine 1.0"])
    n = full["worlds"]
    nominal = {row["world"]: row["distance_m"] for row in r["nominal"]}
    return [
        ("speed 1.0, nominal: >= 2.0 m", f"{nominal['policy 1.0']} m (sine gait {nominal['sine 1.0']} m)",
         nominal["policy 1.0"] >= 2.0),
        (f"speed 1.0, {n} worlds: mean >= 1.5 m, 0 falls",
         f"{full['mean_distance_m']} m, {full['falls']}/{n} fell (sine gait {sine['mean_distance_m']} m, "
         f"{sine['falls']}/{n})", full["mean_distance_m"] >= 1.5 and full["falls"] == 0),
    ]  # fmt: skip


def hardware_and_models(r: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, bool]]:
    sim_row, emu = r["emulated"]
    clips = emu["safety_interventions"]["limit"]
    within = abs(emu["distance_m"] - sim_row["distance_m"]) <= 0.2 * abs(sim_row["distance_m"])
    reached = f"fell {emu['fell']}, {emu['distance_m']} m vs {sim_row['distance_m']} m, {clips} clips"
    out = [("emulated hardware: no fall, distance within 20 %, < 20 limit clips", reached,
            not emu["fell"] and within and clips < 20)]  # fmt: skip
    for name in MODELS:
        p, s = (next(x for x in r["models"] if x["world"] == f"{name}|{w}") for w in ("policy", "sine"))
        reached = f"fell {p['fell']}, {p['distance_m']} m (sine gait {s['distance_m']} m, fell {s['fell']})"
        out.append((f"{name}: no fall, distance >= the gait's", reached,
                    not p["fell"] and p["distance_m"] >= s["distance_m"]))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path, nargs="?", default=SHIPPED)
    parser.add_argument("--worlds", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    path = args.file.resolve()
    spec = load_runner(path, 50.0, "sim", None).spec
    groups = jobs(path, spec, args.worlds, args.seconds)
    flat = [job for group in groups.values() for job in group]
    rows = run_jobs(flat, args.jobs, ProgressBar())
    results, at = {}, 0
    for key, group in groups.items():
        results[key], at = rows[at : at + len(group)], at + len(group)
    print(f"{args.file}: targets ({args.worlds} worlds x {args.seconds:g} s)")
    print(", ".join(f"{name} {v}" for name, v in library_versions().items()))
    table = verdicts(spec, results)
    width = max(len(t) for t, _, _ in table)
    for target, reached, met in table:
        print(f"{target:<{width}}  {'met' if met else 'NOT met':<7}  {reached}")
    print(f"met {sum(m for _, _, m in table)} of {len(table)}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"results": results, "verdicts": table}, indent=1, default=str) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
