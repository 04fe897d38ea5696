"""The code stays lint-clean and type-checked (ruff and mypy, configured in pyproject.toml;
mypy checks the tests too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


def _tool(name: str) -> str:
    path = shutil.which(name, path=VENV_BIN) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (./install.sh --dev provides it)")
    return path


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_mypy_finds_nothing() -> None:
    done = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout
