"""Benchmark: what filming a simulated run costs.

Run with ``.venv/bin/python tests/benchmarks/video.py``. Walks 20 s at speed 0.5 with
``--fast``, without a video and with one (MP4 and GIF at 320x240, 25 fps; MP4 with
PyBullet's own renderer too), several times in turn, and prints each run's wall-clock
and CPU time, their ratio to the run without a video (target: under 3x), the time per
frame, the file size, and whether the summary's figures are the same.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plend.core.config import Config
from plend.daemon.headless import RunOptions, run
from plend.daemon.video import VideoOptions

REPEATS = 3
TIMING = {"wall_s", "sim_realtime_factor", "tick_compute_ms", "rate_hz", "video"}


def timed(options: RunOptions) -> tuple[float, float, dict[str, Any]]:
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run(Config(), options)
    return time.perf_counter() - wall, time.process_time() - cpu, summary


def main() -> int:
    base = RunOptions(speed=0.5, duration_s=20.0, fast=True)
    with tempfile.TemporaryDirectory() as tmp:
        cases: dict[str, RunOptions | None] = {
            "no video": None,
            "mp4 boxes": RunOptions(**{**vars(base), "video": VideoOptions(Path(tmp) / "a.mp4")}),
            "gif boxes": RunOptions(**{**vars(base), "video": VideoOptions(Path(tmp) / "a.gif")}),
            "mp4 pybullet": RunOptions(
                **{**vars(base), "video": VideoOptions(Path(tmp) / "b.mp4", renderer="pybullet")}
            ),
        }
        results: dict[str, list[tuple[float, float, dict[str, Any]]]] = {name: [] for name in cases}
        for _ in range(REPEATS):  # in turn, so a busy spell of the machine hits every case
            for name, options in cases.items():
                results[name].append(timed(options or base))
        plain = results["no video"][0][2]
        print("20 s walk at 0.5, --fast; video 320x240 at 25 fps; medians of", REPEATS, "runs")
        print(f"{'case':<14}{'wall s':>8}{'cpu s':>8}{'x wall':>8}{'x cpu':>7}{'frame ms':>10}{'frames':>8}"
              f"{'KiB':>8}  same figures")  # fmt: skip
        wall0 = statistics.median(r[0] for r in results["no video"])
        cpu0 = statistics.median(r[1] for r in results["no video"])
        for name, runs in results.items():
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            video = runs[-1][2].get("video") or {}
            same = all({k: v for k, v in r[2].items() if k not in TIMING} ==
                       {k: v for k, v in plain.items() if k not in TIMING} for r in runs)  # fmt: skip
            print(
                f"{name:<14}{wall:8.2f}{cpu:8.2f}{wall / wall0:8.2f}{cpu / cpu0:7.2f}"
                f"{video.get('frame_ms', 0.0):10.2f}{video.get('frames', 0):8d}"
                f"{video.get('bytes', 0) / 1024:8.0f}  {'yes' if same else 'NO'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
