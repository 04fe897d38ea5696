"""install.sh: lint-clean, helpful on bad options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_install_script_passes_shellcheck() -> None:
    venv_bin = str(Path(sys.executable).parent)
    shellcheck = shutil.which("shellcheck", path=venv_bin) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (./install.sh --dev provides it)")
    done = subprocess.run([shellcheck, "install.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_unknown_option_is_refused_before_doing_anything() -> None:
    done = subprocess.run(["bash", "install.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown option '--bogus'" in done.stderr
    assert done.stdout == ""


def test_help_names_the_options() -> None:
    done = subprocess.run(["bash", "install.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--dev" in done.stdout


def test_help_names_the_pi_options() -> None:
    done = subprocess.run(["bash", "install.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--pi" in done.stdout and "--dry-run" in done.stdout and "sudo ./install.sh" in done.stdout


def test_dry_run_on_a_pc_prints_the_venv_steps_only(tmp_path: Path) -> None:
    # An empty PLEND_SYSROOT has no /proc/device-tree/model: a PC, even when run on a Pi.
    env = {**os.environ, "PLEND_SYSROOT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "install.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "would run: .venv/bin/python -m pip install --quiet -e .[sim,track]" in done.stdout
    for system_step in ("apt-get", "raspi-config", "systemctl", "sysusers", "config.txt"):
        assert system_step not in done.stdout
    assert list(tmp_path.iterdir()) == []
