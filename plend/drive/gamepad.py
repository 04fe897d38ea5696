"""A gamepad read through Linux evdev (``/dev/input/event*``), with the standard library.

Each read returns ``struct input_event`` records (time, type, code, value). Axes are
scaled to [-1, 1] from the range the device reports (``EVIOCGABS``), or from
``drive.gamepad.range_min/max`` when it cannot say (a fake device: a FIFO that a test
writes events into). A device that goes away (unplugged: ``ENODEV``; a FIFO whose
writer closed: end of file) raises :class:`GamepadGoneError`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plend.core.errors import PlendError
from plend.drive.settings import AXES, BUTTONS, GamepadConfig

EVENT = struct.Struct("llHHi")  # struct input_event: timeval, type, code, value
EV_KEY, EV_ABS = 0x01, 0x03
_ABSINFO = struct.Struct("6i")  # value, minimum, maximum, fuzz, flat, resolution
_JOYSTICK_BUTTONS = (0x120, 0x130)  # BTN_JOYSTICK, BTN_GAMEPAD: a device with either is one


def _eviocgabs(axis: int) -> int:
    # _IOR('E', 0x40 + axis, struct input_absinfo)
    return (2 << 30) | (_ABSINFO.size << 16) | (ord("E") << 8) | (0x40 + axis)


class GamepadError(PlendError, OSError):
    """No gamepad, or one that cannot be read; the message says what to do."""


class GamepadGoneError(GamepadError):
    """The gamepad went away while driving."""


def find_gamepad(root: Path = Path("/")) -> Path:
    """The first joystick or gamepad: udev's ``by-id/*-event-joystick`` link, else the first
    event device whose buttons include a joystick's or a gamepad's."""
    by_id = sorted((root / "dev/input/by-id").glob("*-event-joystick"))
    if by_id:
        return by_id[0]
    for device in sorted((root / "sys/class/input").glob("event*"), key=lambda p: int(p.name[5:] or 0)):
        if _has_joystick_buttons(device / "device/capabilities/key"):
            return root / "dev/input" / device.name
    raise GamepadError(
        "no gamepad found under /dev/input; plug one in (and join the 'input' group to read it), "
        "or name its device: plenctl drive --gamepad /dev/input/eventN"
    )


def _has_joystick_buttons(capabilities: Path) -> bool:
    try:
        words = capabilities.read_text().split()
    except OSError:
        return False
    # The bitmap is printed as hex words, most significant first.
    bits = int("".join(word.zfill(16) for word in words) or "0", 16)
    return any(bits >> code & 1 for code in _JOYSTICK_BUTTONS)


@dataclass(frozen=True)
class PadEvent:
    """One thing the gamepad did: an axis moved to ``value`` (in [-1, 1], mapped and dead
    zone applied), or a mapped button was pressed (``value`` 1)."""

    kind: str  # "speed", "turn", "side", "stop", "stand", "estop", "quit"
    value: float


class Gamepad:
    """An open evdev device and its mapping. ``fileno`` is for select()."""

    def __init__(self, path: Path, mapping: GamepadConfig):
        self.path, self.mapping = path, mapping
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            hint = "join the 'input' group" if exc.errno == errno.EACCES else "check the device name"
            raise GamepadError(f"cannot open the gamepad {path}: {exc.strerror}; {hint}") from None
        self._buffer = b""
        self._axes = {
            AXES[getattr(mapping, f"{kind}_axis")]: kind
            for kind in ("speed", "turn", "side")
            if getattr(mapping, f"{kind}_axis")
        }
        self._buttons = {
            BUTTONS[getattr(mapping, f"{kind}_button")]: kind for kind in ("stop", "stand", "estop", "quit")
        }
        self._ranges = {axis: self._range(axis) for axis in self._axes}

    def fileno(self) -> int:
        return self._fd

    def _range(self, axis: int) -> tuple[int, int]:
        buffer = bytearray(_ABSINFO.size)
        try:
            fcntl.ioctl(self._fd, _eviocgabs(axis), buffer)
        except OSError:  # not an evdev device (a FIFO in tests): the configured range
            return self.mapping.range_min, self.mapping.range_max
        _, low, high, *_ = _ABSINFO.unpack(buffer)
        return (low, high) if high > low else (self.mapping.range_min, self.mapping.range_max)

    def read(self) -> list[PadEvent]:
        """The mapped events waiting now (none if nothing came)."""
        try:
            data = os.read(self._fd, EVENT.size * 64)
        except BlockingIOError:
            return []
        except OSError as exc:  # ENODEV once unplugged
            raise GamepadGoneError(f"the gamepad {self.path} went away ({exc.strerror})") from None
        if not data:
            raise GamepadGoneError(f"the gamepad {self.path} went away (its device closed)")
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % EVENT.size
        records, self._buffer = self._buffer[:whole], self._buffer[whole:]
        return list(self._events(records))

    def _events(self, records: bytes) -> Iterator[PadEvent]:
        for _, _, kind, code, value in EVENT.iter_unpack(records):
            if kind == EV_ABS and code in self._axes:
                name = self._axes[code]
                yield PadEvent(name, self._scaled(name, value, self._ranges[code]))
            elif kind == EV_KEY and code in self._buttons and value == 1:
                yield PadEvent(self._buttons[code], 1.0)

    def _scaled(self, name: str, raw: int, span: tuple[int, int]) -> float:
        low, high = span
        x = (2.0 * (raw - low) / (high - low)) - 1.0
        zone = self.mapping.dead_zone
        x = 0.0 if abs(x) <= zone else (abs(x) - zone) / (1.0 - zone) * (1 if x > 0 else -1)
        if getattr(self.mapping, f"invert_{name}"):
            x = -x
        return round(max(-1.0, min(1.0, x)), 2) + 0.0  # + 0.0: never -0.0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def event_bytes(kind: int, code: int, value: int) -> bytes:
    """One input_event record (what a device or a test's fake device writes)."""
    return EVENT.pack(0, 0, kind, code, value)
