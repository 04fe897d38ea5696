"""Benchmark: the sine gait on the robustness suite, on a model with uneven rounded soles,
and how long an evaluation of 50 worlds x 20 s takes.

Run with ``.venv/bin/python tests/benchmarks/robustness.py`` (options: ``--help``). Prints:

- per speed (0.5 and 1.0) and, when the config has a balance layer (``[gait] balance``),
  with it on and off: falls, median and worst |lateral| and |yaw|, mean distance over
  worlds 0-49 of the full suite, 20 s each;
- the same walks on a model whose soles differ by 6 mm in height and have rounded edges
  (either side lower), and on the nominal world;
- the wall time of the first 50-world evaluation and the processes it used.

``--first N`` starts at world N (``--first 50``: worlds 50-99, a second set to check that
a change was not tuned to the first).

``--set KEY=VALUE`` passes a config value to every walk (e.g. gait gains); ``--only on``
(or ``off``) runs only the rows with the balance layer on (or off), e.g. after a change
to the balance layer, which leaves the open-loop rows as they were.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from plend.cli.evaluate import Plan, default_jobs, evaluate, library_versions, parse_settings, totals
from plend.core.config import Config
from plend.daemon.headless import RunOptions
from plend.main import apply_settings
from plend.model.sim_world import SimWorld

SPEEDS = (0.5, 1.0)
UNEVEN_ROUNDED = {
    "right sole 6 mm lower": SimWorld(sole_height_right_mm=6.0, sole_edge_radius_mm=4.0),
    "left sole 6 mm lower": SimWorld(sole_height_left_mm=6.0, sole_edge_radius_mm=4.0),
}


def balance_settings(config: Config, only: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """("on"/"off", settings) when the config has a balance switch (only ``only`` if
    given), else one plain row."""
    gait = getattr(config, "gait", None)
    if gait is None or not hasattr(gait, "balance"):
        return [("none", {})]
    rows = [("off", {"gait": {"balance": False}}), ("on", {"gait": {"balance": True}})]
    return [row for row in rows if only in (None, row[0])]


def line(cells: list[Any], widths: tuple[int, ...]) -> str:
    """One table row: numbers with 3 decimals (1 for degrees and seconds), right aligned."""
    out = []
    for cell, width in zip(cells, widths, strict=True):
        if isinstance(cell, float):
            cell = f"{cell:.1f}" if width < 0 else f"{cell:.3f}"
        out.append(f"{cell:>{abs(width)}}")
    return " ".join(out)


SUITE_HEAD = [
    "speed",
    "balance",
    "falls",
    "|lat| med m",
    "worst",
    "|yaw| med",
    "worst",
    "mean dist m",
    "wall s",
]
SUITE_W = (-5, 7, 6, 11, 6, -9, -6, 11, -7)
MODEL_HEAD = ["model", "speed", "balance", "fell", "distance m", "lateral m", "yaw deg"]
MODEL_W = (24, -5, 7, 5, 10, 9, -7)


def suite_rows(base: Config, args: argparse.Namespace, report: dict[str, Any]) -> None:
    worlds = f"worlds {args.first}-{args.first + args.worlds - 1}"
    print(f"robustness suite: sine gait, {worlds} x {args.seconds:g} s, {args.jobs} processes")
    print(", ".join(f"{name} {v}" for name, v in library_versions().items()))
    print(line(SUITE_HEAD, SUITE_W))
    for speed in SPEEDS:
        for label, settings in balance_settings(base, args.only):
            options = RunOptions(speed=speed, duration_s=args.seconds, fast=True)
            seeds = tuple(range(args.first, args.first + args.worlds))
            plan = Plan(apply_settings(base, settings), options, seeds)
            began = time.perf_counter()
            rows = evaluate(plan, args.jobs)
            wall = time.perf_counter() - began
            t = totals(rows)
            report["suite"].append(
                {"speed": speed, "balance": label, "wall_s": wall, "totals": t, "worlds": rows}
            )
            cells = [speed, label, f"{t['falls']}/{t['worlds']}", t["median_abs_lateral_m"]]
            cells += [t["worst_abs_lateral_m"], t["median_abs_yaw_deg"], t["worst_abs_yaw_deg"]]
            cells += [t["mean_distance_m"], wall]
            print(line(cells, SUITE_W), flush=True)


def model_rows(base: Config, args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"\nmodels, {args.seconds:g} s each")
    print(line(MODEL_HEAD, MODEL_W))
    for name, world in {"nominal": SimWorld(), **UNEVEN_ROUNDED}.items():
        for speed in SPEEDS:
            for label, settings in balance_settings(base, args.only):
                config = apply_settings(dataclasses.replace(base, sim=world), settings)
                options = RunOptions(speed=speed, duration_s=args.seconds, fast=True)
                row = evaluate(Plan(config, options), 1)[0]
                report["models"].append({"model": name, "speed": speed, "balance": label, **row})
                fell = "yes" if row["fell"] else "no"
                cells = [name, speed, label, fell, row["distance_m"], row["lateral_m"], row["yaw_deg"]]
                print(line(cells, MODEL_W), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, default=50)
    parser.add_argument("--first", type=int, default=0, help="number of the first world (default 0)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="write every world's figures here")
    parser.add_argument("--only", choices=("on", "off"), help="only the rows with the balance on (or off)")
    args = parser.parse_args(argv)
    base = apply_settings(Config(), parse_settings(args.set))
    report: dict[str, Any] = {"first": args.first, "worlds": args.worlds, "seconds": args.seconds,
                              "jobs": args.jobs, "versions": library_versions(),
                              "suite": [], "models": []}  # fmt: skip
    suite_rows(base, args, report)
    model_rows(base, args, report)
    first = report["suite"][0]
    what = f"{args.worlds} worlds x {args.seconds:g} s (speed {first['speed']}, balance {first['balance']})"
    print(f"\ntiming: {what} took {first['wall_s']:.1f} s on {args.jobs} processes")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
