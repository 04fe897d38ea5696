"""Benchmark: ``plend plot`` of a 60 s recording (target: under 3 s).

Run with ``.venv/bin/python tests/benchmarks/plot.py``. Records a 60 s walk with
``plend run --fast --record`` once, then times ``plend plot`` on it as a user runs it
(a new process: interpreter, imports, reading, drawing, writing the PNG), a few times,
and prints each one's wall-clock and CPU time (the CPU time says more on a shared,
busy machine) and the picture's size.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLEND = [sys.executable, "-m", "plend.main"]
REPEATS = 3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rec, png = Path(tmp) / "walk.mcap", Path(tmp) / "walk.png"
        record = ["run", "--fast", "--duration", "60", "--record", str(rec), "--summary", "none"]
        subprocess.run([*PLEND, *record], check=True, capture_output=True)
        print(f"recording: 60 s walk, {rec.stat().st_size / 2**20:.2f} MiB")
        for n in range(REPEATS):
            began, cpu = time.perf_counter(), _children_cpu()
            done = subprocess.run([*PLEND, "plot", str(rec), "-o", str(png)], capture_output=True, text=True)
            took, used = time.perf_counter() - began, _children_cpu() - cpu
            print(f"plend plot, run {n + 1}: {took:.2f} s wall, {used:.2f} s CPU "
                  f"({done.stdout.strip() or done.stderr.strip()})")  # fmt: skip
        print(f"picture: {png.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
