"""Evaluate a policy file the way the daemon would run it, against the sine gait.

``python -m policies.evaluate FILE`` walks the policy through :func:`plend.daemon.headless.run`
(the daemon's loop, supervisor, safety filter and :class:`~policies.runner.PolicyBehaviour`,
in fast mode) on the nominal world and on randomised ones (friction, masses, actuation
delay, sensor noise, drawn as in training), then walks the sine gait at the policy's
gait speed on the same worlds, and prints one row per world and a summary. Distances are
along the starting heading, including the stop back to standing at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.config import Config, SimWorld, replace_section
from plend.core.errors import PlendError, require_package
from plend.daemon.headless import RunOptions, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.evaluate",
        description="Walk an ONNX policy in simulation through the daemon's own policy path, on the "
        "nominal world and randomised ones, next to the sine gait on the same worlds.",
    )
    parser.add_argument("file", type=Path, help="the ONNX policy file")
    parser.add_argument(
        "--episodes", type=int, default=5, help="worlds to walk, the first nominal (default 5)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="walking time per world (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised worlds (default 0)")
    return parser


def worlds(count: int, seed: int) -> list[SimWorld]:
    """The nominal world, then ``count - 1`` worlds drawn as in training."""
    require_package("gymnasium", "train")
    from policies.env import random_world

    rng = np.random.default_rng(seed)
    return [SimWorld(seed=seed)] + [random_world(rng) for _ in range(count - 1)]


def _walk(world: SimWorld, rate_hz: float, options: RunOptions) -> dict[str, Any]:
    config = replace_section(Config(hal="sim", sim=world), "loop", rate_hz=rate_hz)
    summary = run(config, options)
    distance = float(summary["distance_m"])
    return {"distance_m": distance, "fell": bool(summary["fell"]),
            "speed_m_s": distance / max(summary["duration_s"], 1e-9)}  # fmt: skip


def evaluate(path: Path, episodes: int, seconds: float, seed: int) -> list[dict[str, Any]]:
    """One row per world: the world, and the policy's and the sine gait's walks."""
    from policies.runner import load_runner

    runner = load_runner(path, _rate_of(path), "sim", None)  # refuses a bad file before walking
    spec = runner.spec
    rows = []
    for world in worlds(episodes, seed):
        policy = _walk(world, spec.rate_hz, RunOptions(duration_s=seconds, fast=True, policy=path.resolve()))
        sine = _walk(world, spec.rate_hz, RunOptions(speed=spec.gait_speed, duration_s=seconds, fast=True))
        rows.append({"world": world, "policy": policy, "sine": sine})
    return rows


def _rate_of(path: Path) -> float:
    require_package("onnxruntime", "onnxruntime")
    import onnxruntime as ort

    from policies.runner import read_spec

    if not path.is_file():
        raise PlendError(f"{path}: no such file")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PlendError(f"{path}: not a valid ONNX model ({str(exc).strip()[:160]})") from None
    return read_spec(path, session).rate_hz


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'world':<5} {'friction':>8} {'jitter':>6} {'delay':>5}  "
            f"{'policy m':>8} {'fell':>5} {'m/s':>7}  {'sine m':>8} {'fell':>5} {'m/s':>7}")  # fmt: skip
    lines = [head]
    for i, row in enumerate(rows):
        w, p, s = row["world"], row["policy"], row["sine"]
        name = "nom" if i == 0 else str(i)
        lines.append(
            f"{name:<5} {w.friction:8.2f} {w.mass_jitter:6.2f} {w.actuation_delay_ticks:5d}  "
            f"{p['distance_m']:8.3f} {_yes(p['fell']):>5} {p['speed_m_s']:7.4f}  "
            f"{s['distance_m']:8.3f} {_yes(s['fell']):>5} {s['speed_m_s']:7.4f}"
        )
    lines.append(summary_line(rows))
    return "\n".join(lines)


def summary_line(rows: list[dict[str, Any]]) -> str:
    """Means, falls, and whether the policy beats the sine gait on the nominal world."""
    nominal = rows[0]
    beats = not nominal["policy"]["fell"] and nominal["policy"]["distance_m"] >= nominal["sine"]["distance_m"]
    parts = []
    for name in ("policy", "sine"):
        walks = [r[name] for r in rows]
        mean = np.mean([w["distance_m"] for w in walks])
        parts.append(f"{name} {mean:.3f} m mean, {sum(w['fell'] for w in walks)}/{len(rows)} fell")
    verdict = "yes" if beats else "no"
    return f"summary: {'; '.join(parts)}; nominal world: policy >= sine without falling: {verdict}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("plend").setLevel(logging.CRITICAL)  # falls are in the table
    try:
        if args.episodes < 1 or not 0 < args.seconds <= 3600:
            raise PlendError("--episodes must be at least 1 and --seconds in (0, 3600]")
        rows = evaluate(args.file, args.episodes, args.seconds, args.seed)
    except (PlendError, OSError) as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"policies.evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {args.episodes} worlds, {args.seconds:g} s each (seed {args.seed})")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
