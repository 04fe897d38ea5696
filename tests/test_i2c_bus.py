"""Opening the Pi's I2C bus: each cause of failure gets its own remedy, and Blinka never
offers to install packages into the daemon's environment."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plend.hal.i2c_bus import import_problem, open_problem

# Blinka (through Adafruit-PlatformDetect) takes this machine for a Pi Zero 2 W.
AS_A_PI = {"BLINKA_FORCEBOARD": "RASPBERRY_PI_ZERO_2_W", "BLINKA_FORCECHIP": "BCM2XXX"}

# Makes gpiod look uninstalled to both Blinka's dependency check and the import, and
# gives the board the revision code of a Pi Zero 2 W (read from /proc/cpuinfo on a Pi),
# which is what makes Blinka check a Pi's platform packages.
HIDE_GPIOD = """
import sys
from adafruit_platformdetect.board import Board
Board._pi_rev_code = lambda self: "902120"
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "gpiod":
            raise ModuleNotFoundError("No module named 'gpiod'", name="gpiod")
sys.meta_path.insert(0, Hide())
"""
OPEN_BUS = """
from plend.core.errors import HalError
from plend.hal.i2c_bus import make_i2c_bus
try:
    make_i2c_bus()
except HalError as exc:
    print("HalError:", exc)
"""


def run_at_a_terminal(code: str, env: dict[str, str], timeout: float = 60.0) -> str:
    """Run Python code with a pty as stdin and stdout, as a person at a terminal would.

    A ``[Y/n]`` question is answered "n" (so nothing is ever installed) and left in the
    output for the test to see.
    """
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=child, stdout=child, stderr=child, env={**os.environ, **env}
    )
    os.close(child)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], 0.2)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if out.rstrip().endswith(b"[Y/n]"):
                os.write(main, b"n\n")
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    return out.decode(errors="replace")


def test_a_pi_without_gpiod_is_told_to_install_it_and_never_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("board")
    monkeypatch.delenv("BLINKA_SKIP_DEPENDENCY_CHECK", raising=False)
    out = run_at_a_terminal(HIDE_GPIOD + OPEN_BUS, AS_A_PI)
    assert "Install them into the current Python environment" not in out
    assert "HalError: the platform library 'gpiod' that Blinka needs on this board is not installed" in out
    assert "run ./install.sh again" in out and "gpiod>=2.2.2,<3" in out
    assert "enable" not in out  # not the advice for a missing device node


def test_blinka_would_ask_if_plend_did_not_switch_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same terminal importing board directly: the question the daemon must never show.
    pytest.importorskip("board")
    monkeypatch.delenv("BLINKA_SKIP_DEPENDENCY_CHECK", raising=False)
    out = run_at_a_terminal(HIDE_GPIOD + "import board\n", AS_A_PI)
    assert "Install them into the current Python environment? [Y/n]" in out


def test_a_pi_with_i2c_disabled_is_told_to_enable_it() -> None:
    pytest.importorskip("gpiod")
    if Path("/dev/i2c-1").exists():
        pytest.skip("this machine has an I2C bus 1")
    out = run_at_a_terminal(OPEN_BUS, AS_A_PI)
    assert "HalError: no I2C device node /dev/i2c-1: I2C is not enabled; run sudo ./install.sh" in out
    assert "then reboot" in out


def test_a_pc_is_pointed_to_the_emulated_bus() -> None:
    pytest.importorskip("board")
    if Path("/proc/device-tree/model").exists():
        pytest.skip("this machine has a device tree (a board, not a PC)")
    out = run_at_a_terminal(OPEN_BUS, {})
    assert "HalError: no I2C bus on this machine" in out and "on a PC use --bus emulated" in out


def test_no_permission_names_the_group(tmp_path: Path) -> None:
    node = tmp_path / "i2c-1"
    node.touch()
    text = open_problem(PermissionError(13, "Permission denied"), node, on_pi=True)
    assert text.startswith(f"no permission to open {node}; add this user to group i2c")
    assert "sudo usermod -aG i2c $USER" in text


def test_a_missing_node_on_a_pi_says_enable_i2c(tmp_path: Path) -> None:
    text = open_problem(ValueError("No Hardware I2C on (scl,sda)=(3, 2)"), tmp_path / "i2c-1", on_pi=True)
    assert text.startswith(f"no I2C device node {tmp_path / 'i2c-1'}: I2C is not enabled")


def test_an_unknown_import_failure_is_reported_with_its_cause() -> None:
    text = import_problem(NotImplementedError("Board not supported"))
    assert "NotImplementedError: Board not supported" in text and "--bus emulated" in text
