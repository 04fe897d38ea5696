"""Benchmark: the daemon's control loop timing in real time on the simulation backend.

Run with ``.venv/bin/python tests/benchmarks/loop_timing.py [SECONDS]``. For each rate
(50 and 100 Hz), each behaviour and with or without a CPU hog (a busy process pinned to
another core), it runs the daemon in-process for SECONDS (default 5) and prints tick
compute time (read + decide + write, physics included) and wake-up lateness
percentiles, and the overruns. Real-time scheduling is requested as the service does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from plend.control.behaviours import Trajectory
from plend.control.loop import Request
from plend.core.config import Config, LoopConfig
from plend.daemon.daemon import Daemon, DaemonOptions
from plend.model.robot import JOINT_NAMES


@contextlib.contextmanager
def cpu_hog(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    with contextlib.suppress(OSError, AttributeError):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(hog.pid, {cores[-1]})
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def wave() -> Trajectory:
    t = np.arange(0, 10, 0.02)
    column = (0.5 * np.sin(2 * np.pi * 0.5 * t))[:, None]
    return Trajectory((JOINT_NAMES[12],), column, 50.0)


def measure(rate: float, behaviour: str, seconds: float) -> dict[str, object]:
    config = replace(Config(), loop=LoopConfig(rate_hz=rate))
    start = "sine" if behaviour == "sine" else ("relax" if behaviour == "relax" else "stand")
    daemon = Daemon(config, DaemonOptions(socket=None, start=start))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    daemon.started.wait()
    if behaviour == "replay":
        daemon.loop.submit(Request("replay", trajectory=wave())).wait(2.0)
    time.sleep(seconds)
    stats = daemon.loop.stats
    figures = {
        "compute": stats.compute.percentiles_ms(),
        "lateness": stats.lateness.percentiles_ms(),
        "overruns": stats.overruns,
        "mode": daemon.supervisor.mode,
    }
    daemon.request_stop("benchmark over")
    runner.join()
    return figures


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    print(f"{'hog':>4} {'Hz':>4} {'behaviour':>9} | {'compute ms p50/p99/max':>24} | "
          f"{'lateness ms p50/p99/max':>24} | overruns")  # fmt: skip
    for hog in (False, True):
        with cpu_hog(hog):
            for rate in (50.0, 100.0):
                for behaviour in ("relax", "stand", "sine", "replay"):
                    f = measure(rate, behaviour, seconds)
                    c, lat = f["compute"], f["lateness"]
                    print(
                        f"{'yes' if hog else 'no':>4} {rate:4.0f} {behaviour:>9} | "
                        f"{c['p50']:7.3f} {c['p99']:7.3f} {c['max']:8.3f} | "  # type: ignore[index]
                        f"{lat['p50']:7.3f} {lat['p99']:7.3f} {lat['max']:8.3f} | {f['overruns']}",  # type: ignore[index]
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
