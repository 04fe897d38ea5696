"""plenctl replay of a recording: the daemon plays back what it recorded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import Daemon, wait_for_mode


def test_a_recording_replays_its_targets_or_its_measured_angles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = Daemon(tmp_path)
    try:
        assert d.ctl("record", "start", "--out", "walk.mcap") == 0
        assert d.ctl("gait", "sine", "--speed", "0.5") == 0
        time.sleep(1.5)
        assert d.ctl("stop") == 0
        wait_for_mode(d, "stand")
        assert d.ctl("record", "stop") == 0
        recording = tmp_path / "rec" / "walk.mcap"
        capsys.readouterr()
        assert d.ctl("replay", str(recording)) == 0
        said = capsys.readouterr().out
        assert "replaying" in said and d.status()["mode"] == "replay"
        wait_for_mode(d, "stand", timeout=20)
        assert d.ctl("replay", str(recording), "--measured") == 0
        assert d.status()["mode"] == "replay"
        wait_for_mode(d, "stand", timeout=20)
        assert d.status()["faults"] == []
        capsys.readouterr()
        assert d.ctl("replay", str(recording), "--rate", "100") == 1  # twice as fast: validated like any file
        assert "faster than the 9.0 rad/s slew limit" in capsys.readouterr().err
        assert d.status()["mode"] == "stand"
        junk = tmp_path / "junk.mcap"
        junk.write_bytes(bytes(range(256)))
        assert d.ctl("replay", str(junk)) == 1
        err = capsys.readouterr().err
        assert "not an MCAP recording" in err and err.count("\n") == 1
    finally:
        d.stop()
