"""Benchmark: how fast the simulated robot walks in ``--fast`` mode.

Run with ``.venv/bin/python tests/benchmarks/sim_speed.py``. Prints, per speed, the
simulation's real-time factor and the tick compute time (physics included) over a few
20 s runs, and what each run walked.
"""

from __future__ import annotations

import statistics
import sys

from plend.core.config import Config
from plend.daemon.headless import RunOptions, run

REPEATS = 3


def main() -> int:
    header = ("speed", "rtf min", "rtf med", "tick p50 ms", "tick p99 ms", "distance m")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 8, 8, 12, 12, 11), strict=True)))
    for speed in (0.0, 0.5, 1.0):
        runs = [run(Config(), RunOptions(speed=speed, duration_s=20.0, fast=True)) for _ in range(REPEATS)]
        rtf = [r["sim_realtime_factor"] for r in runs]
        p50 = statistics.median(r["tick_compute_ms"]["p50"] for r in runs)
        p99 = statistics.median(r["tick_compute_ms"]["p99"] for r in runs)
        print(
            f"{speed:5.1f} {min(rtf):8.1f} {statistics.median(rtf):8.1f} {p50:12.3f} {p99:12.3f} "
            f"{runs[0]['distance_m']:11.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
