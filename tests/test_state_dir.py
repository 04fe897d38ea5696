"""Where plend keeps its files: the service's directory, root's, or the user's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plend.core.config import Config, PathsConfig, from_dict
from plend.core.locations import SYSTEM_STATE_DIR, default_state_dir


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A non-root user outside systemd, with its home in tmp_path."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_user_gets_a_state_directory_of_their_own(user: Path) -> None:
    assert default_state_dir() == str(user / ".local" / "state" / "plend")
    assert PathsConfig().recordings_path() == user / ".local" / "state" / "plend" / "recordings"


def test_xdg_state_home_is_honoured_and_a_relative_one_ignored(
    user: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(user / "xdg"))
    assert default_state_dir() == str(user / "xdg" / "plend")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # the spec says: ignore it
    assert default_state_dir() == str(user / ".local" / "state" / "plend")


def test_the_service_uses_the_directory_systemd_gives_it(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/plend")
    assert default_state_dir() == SYSTEM_STATE_DIR


def test_root_outside_systemd_uses_the_robots_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_dir() == SYSTEM_STATE_DIR


def test_a_configured_directory_wins(user: Path) -> None:
    config = from_dict({"paths": {"state_dir": "/srv/robot"}, "hardware": {"bus": "emulated"}})
    assert config.calibration_path() == Path("/srv/robot/calibration.json")
    assert config.paths.recordings_path() == Path("/srv/robot/recordings")


def test_each_emulated_robot_keeps_its_own_calibration(user: Path) -> None:
    base = user / ".local" / "state" / "plend"
    real = Config()
    rehearsal = from_dict({"hardware": {"bus": "emulated", "emulated_miscalibration_seed": 11}})
    exact = from_dict({"hardware": {"bus": "emulated"}})
    assert real.calibration_path() == base / "calibration.json"
    assert rehearsal.calibration_path() == base / "emulated" / "seed-11" / "calibration.json"
    assert exact.calibration_path() == base / "emulated" / "exact" / "calibration.json"


def test_a_path_that_is_not_text_is_refused() -> None:
    with pytest.raises(ValueError, match=r"paths.state_dir must be a file system path"):
        from_dict({"paths": {"state_dir": 3}})


def test_dump_config_shows_where_the_files_go(user: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from plend.main import main

    assert main(["--dump-config"]) == 0
    paths = json.loads(capsys.readouterr().out)["paths"]
    assert paths["state_dir"] == str(user / ".local" / "state" / "plend")
    assert paths["recordings_dir"].endswith("plend/recordings")
