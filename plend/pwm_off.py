"""``plend safe-off``: the last-resort relax of the PCA9685 servo board.

The unit's ``ExecStopPost=`` runs this after every stop of the daemon, including a crash
or a watchdog kill, when the daemon could not relax the servos itself. The PCA9685 keeps
pulsing the last commanded positions after its master dies, so a robot whose controller
crashed would otherwise keep holding (or fighting towards) its last pose.

It uses the standard library only, so it still works when the venv's packages (numpy,
the Adafruit drivers) are broken: run it as ``python -m plend.pwm_off``.

Two single-register writes, each its own I2C transaction:

1. ``ALL_LED_OFF_H`` (0xFD) = 0x10. The ALL_LED registers load every channel's registers
   at once; bit 4 of ``LEDn_OFF_H`` is "full off", which takes precedence over any ON
   setting, including full on. The output change is applied at the end of the current
   PWM period, so no pulse is cut short into a runt that could twitch a servo.
2. ``MODE1`` (0x00) = 0x10, the SLEEP bit: the oscillator stops, and with it the PWM
   counter, so nothing can start a pulse again until someone wakes the chip. Writing the
   whole register (rather than reading it first, one more transfer that can fail) also
   clears auto-increment and ALLCALL; the next start sets MODE1 again anyway.

Between the two it waits one PWM frame at the slowest rate the chip can run, so the
full-off has taken effect (outputs low) before the clock stops: the datasheet does not
say which level an output keeps when the oscillator stops in the middle of a pulse.
This assumes MODE2.INVRT = 0 (not inverted), as every servo driver sets it.

What the next start of the board must do (the Adafruit driver does both): clear SLEEP
(its ``reset()`` writes MODE1 = 0) before setting the frequency, and write each channel's
four ON/OFF registers, which clears that channel's full-off bit.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from plend.core.errors import PlendError

I2C_SLAVE = 0x0703  # linux/i2c-dev.h: address the following read()/write() calls to this chip
MODE1 = 0x00
MODE1_SLEEP = 0x10
ALL_LED_OFF_H = 0xFD
LED_FULL_OFF = 0x10
# One frame at the lowest PWM rate (prescale 255: 25 MHz / (4096 * 256) = 23.8 Hz, 42 ms).
FRAME_WAIT_S = 0.05

# (register, value) in the order they are written.
OFF_WRITES: tuple[tuple[int, int], ...] = ((ALL_LED_OFF_H, LED_FULL_OFF), (MODE1, MODE1_SLEEP))

_CHECKS = (
    "check that I2C is enabled, the servo board is powered and wired, "
    "and this user may open the bus (group i2c)"
)
_HINTS = {
    errno.ENOENT: "the bus does not exist: enable I2C (raspi-config nonint do_i2c 0) and reboot",
    errno.EACCES: "permission denied: run as root or as a member of group i2c",
    errno.EPERM: "not permitted: run as root or as a member of group i2c (and allow the device in the unit)",
    errno.EBUSY: "a kernel driver has claimed that address",
    errno.ENXIO: "no chip answered: check that the servo board is powered and wired, and the address",
    errno.EREMOTEIO: "no chip answered: check that the servo board is powered and wired, and the address",
    errno.EIO: "the transfer failed: check the servo board's power and wiring",
}


class PwmOffError(PlendError, OSError):
    """The PWM board could not be switched off; the message names the bus, address and what to check."""


def all_off(
    bus: str = "/dev/i2c-1",
    address: int = 0x40,
    opener: Callable[[str, int], int] = os.open,
    *,
    ioctl: Callable[[int, int, int], Any] = fcntl.ioctl,
    write: Callable[[int, bytes], int] = os.write,
    close: Callable[[int], None] = os.close,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Stop every output of the PCA9685 at ``address`` on ``bus``: full off, then sleep.

    Each write is tried even if an earlier one failed, since either alone stops the
    pulses; the first failure is then raised.

    Args:
        bus: the I2C bus device.
        address: the PCA9685's 7-bit I2C address.
        opener, ioctl, write, close, sleep: the system calls, replaceable by fakes in tests.

    Raises:
        PwmOffError: the bus could not be opened or addressed, or a write failed.
    """
    where = f"PCA9685 at {address:#04x} on {bus}"
    try:
        fd = opener(bus, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(where, "cannot open the bus", exc) from exc
    try:
        try:
            ioctl(fd, I2C_SLAVE, address)
        except OSError as exc:
            raise _error(where, "cannot address the chip", exc) from exc
        _write_off(fd, where, write, sleep)
    finally:
        # The writes are done or already reported; a failed close undoes nothing.
        with contextlib.suppress(OSError):
            close(fd)


def _write_off(
    fd: int, where: str, write: Callable[[int, bytes], int], sleep: Callable[[float], None]
) -> None:
    first: PwmOffError | None = None
    for register, value in OFF_WRITES:
        try:
            _write_register(fd, register, value, write)
        except OSError as exc:
            first = first or _error(where, f"cannot write register {register:#04x}", exc)
            continue
        if register == ALL_LED_OFF_H:
            sleep(FRAME_WAIT_S)
    if first is not None:
        raise first


def _write_register(fd: int, register: int, value: int, write: Callable[[int, bytes], int]) -> None:
    data = bytes((register, value))
    written = write(fd, data)
    if written != len(data):
        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")


def _error(where: str, what: str, exc: OSError) -> PwmOffError:
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0, _CHECKS)
    error = PwmOffError(f"{where}: {what}: {reason}; {hint}")
    error.__cause__ = exc  # also when it is raised later, after the remaining writes
    return error


def _address(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an I2C address: {text!r} (e.g. 0x40)") from None
    if not 0x03 <= value <= 0x77:
        raise argparse.ArgumentTypeError(f"{text} is outside the 7-bit address range 0x03..0x77")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plend safe-off",
        description="Switch every output of the PCA9685 servo board off and put the chip to sleep.",
    )
    parser.add_argument("--bus", default="/dev/i2c-1", help="I2C bus device (default /dev/i2c-1)")
    parser.add_argument("--address", type=_address, default=0x40, help="PCA9685 address (default 0x40)")
    return parser


def cli(argv: list[str] | None = None) -> int:
    """``plend safe-off [--bus DEV] [--address ADDR]``; returns 0, or 1 after a one-line error."""
    args = _parser().parse_args(argv)
    try:
        all_off(args.bus, args.address)
    except PwmOffError as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"plend safe-off: error: {exc}", file=sys.stderr)
        return 1
    print(f"plend safe-off: PCA9685 at {args.address:#04x} on {args.bus}: all outputs off")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
