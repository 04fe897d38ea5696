"""plend live: the daemon's status served to Foxglove by a separate process."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plend.cli.recording import read
from plend.model.robot import JOINT_NAMES
from plend.plenctl import Client
from tests.support import Daemon, wait_for_mode

foxglove = pytest.importorskip("foxglove")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Daemon(tmp_path)
    yield d
    d.stop()


def test_the_bridge_publishes_ticks_in_the_recording_format(daemon: Daemon, tmp_path: Path) -> None:
    from plend.cli.live import Bridge

    context = foxglove.Context()
    path = tmp_path / "live.mcap"
    sink = foxglove.open_mcap(path, context=context)  # what a Foxglove client would receive
    client = Client(daemon.socket)
    try:
        bridge = Bridge(client, context)
        for _ in range(5):
            bridge.poll()
        assert daemon.ctl("gait", "sine", "--speed", "0.5") == 0
        wait_for_mode(daemon, "sine")
        for _ in range(5):
            bridge.poll()
    finally:
        client.close()
        sink.close()
    rec = read(path)
    assert len(rec.t) == 10 and rec.joint_names == JOINT_NAMES  # no info message: the canonical order
    assert rec.mode[:5] == ["stand"] * 5 and rec.mode[-1] == "sine"
    assert np.isfinite(rec.measured).all() and np.isfinite(rec.targets[-1]).all()
    assert np.isfinite(rec.euler).all() and np.isfinite(rec.compute_ms).all()


def test_plend_live_serves_a_port_and_stops_by_itself(daemon: Daemon) -> None:
    live = subprocess.Popen(
        [sys.executable, "-m", "plend.main", "live", "--socket", str(daemon.socket), "--port", "0",
         "--duration", "3", "--rate", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert live.stdout is not None
        first = live.stdout.readline()
        port = int(re.search(r"serving ws://127\.0\.0\.1:(\d+)", first).group(1))  # type: ignore[union-attr]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # a WebSocket client would start its handshake here
        out, err = live.communicate(timeout=20)
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    assert live.returncode == 0, err
    served = int(re.search(r"(\d+) status messages served", out).group(1))  # type: ignore[union-attr]
    assert 15 <= served <= 31


def test_plend_live_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plend.main", "live", "--socket", str(tmp_path / "none.sock")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "plend is not running (no socket at" in done.stderr
    done = subprocess.run([sys.executable, "-m", "plend.main", "live", "--rate", "0"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "--rate 0.0 is out of range" in done.stderr
    for duration in ("0", "-1", "nan"):
        done = subprocess.run([sys.executable, "-m", "plend.main", "live", "--duration", duration],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
        assert done.returncode == 2 and f"--duration {float(duration)} is out of range" in done.stderr
