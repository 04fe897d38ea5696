"""Fuzzing a live daemon: seeded random and structured-but-wrong requests (tests/fuzz.py).

Bounded to a few seconds: 800 requests. ``tests/benchmarks/hostile_clients.py`` sends
10 000. Every reply must be ``ok`` or a known, non-``internal`` error; no refused request
may change the mode; the daemon must stay alive without using much more memory. What the
requests cost the loop (overruns) depends on the machine: the benchmark prints it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests import fuzz
from tests.support import Daemon

pytest.importorskip("pybullet")

REQUESTS = 800
MAX_RSS_GROWTH_KIB = 30 * 1024


def hostile_files(tmp: Path) -> dict[str, Path]:
    """Files a fuzzed request may name: none of them is a usable trajectory or policy."""
    tmp.mkdir(exist_ok=True)
    files = {name: tmp / name for name in ("fifo", "dir", "big.csv", "bad.csv", "bad.npy", "deep.npy")}
    os.mkfifo(files["fifo"])
    files["dir"].mkdir()
    with files["big.csv"].open("wb") as f:
        f.truncate(600 * 2**20)
    files["bad.csv"].write_text("# rate_hz: 50\ntorso_r_shoulder\n0.0\n3.0\n")
    np.save(files["bad.npy"], np.zeros(4, [("r_thigh_r_knee", float, (18,))]))
    np.save(files["deep.npy"], np.zeros(3, [("r_thigh_r_knee", object)]), allow_pickle=True)
    return files


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0])


def test_fuzzed_requests_are_refused_cleanly_and_change_nothing(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    try:
        files = hostile_files(tmp_path / "files")
        rss = rss_kib(d.proc.pid)
        tally = fuzz.run(d.socket, REQUESTS, seed=1, files=files)
        assert d.proc.poll() is None, "the daemon died"
        growth = rss_kib(d.proc.pid) - rss
    finally:
        code, err = d.stop()
    assert tally.sent == REQUESTS and tally.not_json == 0
    assert tally.internal == [], tally.internal[:5]
    assert tally.mode_changes == [], tally.mode_changes[:5]
    assert sum(tally.errors.values()) > REQUESTS * 0.8, tally.errors
    assert growth < MAX_RSS_GROWTH_KIB, f"RSS grew {growth} KiB"
    assert code == 0 and "Traceback" not in err and "internal error" not in err, err[-2000:]
