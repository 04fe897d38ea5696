"""Benchmark: how long plenctl takes to start, against the interpreter alone.

Run with ``.venv/bin/python tests/benchmarks/plenctl_startup.py [--runs N]``. Each row is
a fresh process, as a person or a script starts plenctl: the bare interpreter, ``plenctl
--help``, and a command that fails to connect (everything plenctl loads before it talks
to the daemon). Prints the median and the 90th percentile in milliseconds. The target
is under 100 ms for ``--help``; numpy, which alone took most of that, is not imported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str], runs: int) -> tuple[float, float]:
    """Median and 90th percentile wall time of ``command``, in ms."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="starts per row (default 30)")
    runs = parser.parse_args().runs
    plenctl = Path(sys.executable).with_name("plenctl")
    command = [str(plenctl)] if plenctl.exists() else [sys.executable, "-m", "plend.plenctl"]
    rows = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "plenctl --help": [*command, "--help"],
        "plenctl status (no daemon)": [*command, "--socket", "/nonexistent/plend.sock", "status"],
    }
    print(f"{runs} starts each          median ms   p90 ms")
    for name, argv in rows.items():
        median, p90 = timed(argv, runs)
        print(f"{name:<26} {median:9.1f} {p90:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
