"""install.sh: lint-clean, helpful on bad options."""

from __future__ import annotations

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
