"""plend-track.service: the tracker's unit reaches the cameras and the socket, nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_systemd import make_repo, render, unit_entries

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "plend-track.service"
ENTRIES = unit_entries(UNIT.read_text())
ANALYZE = shutil.which("systemd-analyze")


def values(key: str) -> list[str]:
    return [v for s, k, v in ENTRIES if s == "Service" and k == key]


def test_only_the_cameras_and_unix_sockets_are_reachable() -> None:
    assert values("DevicePolicy") == ["closed"]
    assert values("DeviceAllow") == ["char-video4linux rw"]  # /dev/video*
    assert values("RestrictAddressFamilies") == ["AF_UNIX"] and values("PrivateNetwork") == ["yes"]
    assert values("User") == ["plend"] and values("SupplementaryGroups") == ["video"]
    assert values("CapabilityBoundingSet") == [""]


def test_it_streams_to_the_daemons_socket_and_comes_back_after_a_failure() -> None:
    (command,) = values("ExecStart")
    assert command.startswith("@VENV@/bin/plend track") and "--socket /run/plend/plend.sock" in command
    assert values("Restart") == ["on-failure"]


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo)
    unit = tmp_path / "units" / "plend-track.service"
    unit.parent.mkdir()
    unit.write_text(UNIT.read_text().replace("@VENV@", f"{repo}/.venv").replace("@REPO@", str(repo)))
    (unit.parent / "plend.service").write_text(render(repo))  # the unit it binds to
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    complaints = [line for line in done.stderr.splitlines() if "plend-track.service" in line]
    assert complaints == [], done.stderr
