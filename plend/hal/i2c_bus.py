"""Opening the Pi's I2C bus through Blinka, and saying exactly why it did not open.

Three causes need three different remedies: the device node is missing (I2C is not
enabled), it is there but this user may not open it (not in group ``i2c``), or the
platform library Blinka needs on this board (``gpiod`` on a Pi) is not installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from plend.core.errors import HalError

I2C_DEVICE = Path("/dev/i2c-1")  # the Pi's i2c_arm bus, GPIO 2 (SDA) and 3 (SCL)
GPIOD_REQUIREMENT = "gpiod>=2.2.2,<3"


def make_i2c_bus(device: Path = I2C_DEVICE) -> Any:
    """The Pi's I2C bus (a ``busio.I2C``), or a HalError that names the remedy."""
    # Blinka offers, at a terminal, to pip-install missing board packages into the running
    # environment. A daemon must never do that; it reports what is missing instead.
    os.environ.setdefault("BLINKA_SKIP_DEPENDENCY_CHECK", "1")
    try:
        import board
        import busio
    except Exception as exc:  # Blinka raises RuntimeError, ImportError, NotImplementedError...
        raise HalError(import_problem(exc)) from None
    try:
        return busio.I2C(board.SCL, board.SDA)
    except Exception as exc:
        raise HalError(open_problem(exc, device, on_raspberry_pi())) from None


def on_raspberry_pi() -> bool:
    """Whether Blinka takes this machine for a Raspberry Pi (it honours BLINKA_FORCEBOARD)."""
    try:
        from adafruit_blinka.agnostic import detector

        return str(detector.board.id or "").startswith("RASPBERRY_PI")
    except Exception:
        model = Path("/proc/device-tree/model")
        return model.is_file() and "Raspberry Pi" in model.read_text(errors="replace")


def _missing_module(exc: BaseException) -> str | None:
    """The module a failed import was missing, looking through Blinka's wrapping."""
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, ModuleNotFoundError) and error.name:
            return error.name
    text = str(exc)
    if "platform library '" in text:
        return text.split("platform library '", 1)[1].split("'", 1)[0]
    return None


def import_problem(exc: BaseException) -> str:
    """What to say when ``import board`` fails."""
    module = _missing_module(exc)
    if module is not None:
        requirement = GPIOD_REQUIREMENT if module == "gpiod" else module
        return (
            f"the platform library '{module}' that Blinka needs on this board is not installed; "
            f"run ./install.sh again, or: {sys.executable} -m pip install '{requirement}'"
        )
    return (
        f"Blinka cannot drive this machine's pins ({type(exc).__name__}: {exc}); on a PC use --bus emulated"
    )


def open_problem(exc: BaseException, device: Path, on_pi: bool) -> str:
    """What to say when the bus does not open."""
    if isinstance(exc, PermissionError) or (device.exists() and not os.access(device, os.R_OK | os.W_OK)):
        return (
            f"no permission to open {device}; add this user to group i2c "
            "(sudo usermod -aG i2c $USER, then log in again; the service's user plend is in it)"
        )
    if not on_pi:
        return f"no I2C bus on this machine ({type(exc).__name__}: {exc}); on a PC use --bus emulated"
    if not device.exists():
        return (
            f"no I2C device node {device}: I2C is not enabled; run sudo ./install.sh "
            "(or sudo raspi-config nonint do_i2c 0), then reboot"
        )
    return f"cannot open the I2C bus {device} ({type(exc).__name__}: {exc})"
