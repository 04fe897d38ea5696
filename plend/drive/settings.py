"""The ``[drive]`` configuration: the dead-man lease, key steps and the gamepad mapping.

Imported by plend.core.config; needs nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plend.core.checks import check_bool, check_choice, check_range
from plend.core.errors import ConfigError

# Linux input event codes (linux/input-event-codes.h) that a mapping may name.
AXES = {
    "ABS_X": 0x00, "ABS_Y": 0x01, "ABS_Z": 0x02, "ABS_RX": 0x03, "ABS_RY": 0x04, "ABS_RZ": 0x05,
    "ABS_HAT0X": 0x10, "ABS_HAT0Y": 0x11,
}  # fmt: skip
BUTTONS = {
    "BTN_TRIGGER": 0x120, "BTN_THUMB": 0x121, "BTN_THUMB2": 0x122, "BTN_TOP": 0x123,
    "BTN_SOUTH": 0x130, "BTN_EAST": 0x131, "BTN_C": 0x132, "BTN_NORTH": 0x133, "BTN_WEST": 0x134,
    "BTN_Z": 0x135, "BTN_TL": 0x136, "BTN_TR": 0x137, "BTN_TL2": 0x138, "BTN_TR2": 0x139,
    "BTN_SELECT": 0x13A, "BTN_START": 0x13B, "BTN_MODE": 0x13C, "BTN_THUMBL": 0x13D, "BTN_THUMBR": 0x13E,
}  # fmt: skip


@dataclass(frozen=True)
class GamepadConfig:
    """Which stick and buttons do what (``[drive.gamepad]``).

    Attributes:
        speed_axis, turn_axis, side_axis: the axes (``ABS_*`` names) for forward speed,
            turning and side steps; an empty side_axis leaves side steps off.
        invert_speed, invert_turn, invert_side: flip an axis. By default pushing the left
            stick forward walks forward and left turns left (both axes read negative
            there), and the right stick steps sideways.
        dead_zone: stick travel (fraction of half its range) read as zero.
        stop_button, stand_button, estop_button, quit_button: ``BTN_*`` names.
        range_min, range_max: an axis's raw range when the device cannot say (a fake
            device in tests); a real gamepad reports its own.
    """

    speed_axis: str = "ABS_Y"
    turn_axis: str = "ABS_X"
    side_axis: str = "ABS_RX"
    invert_speed: bool = True
    invert_turn: bool = True
    invert_side: bool = True
    dead_zone: float = 0.12
    stop_button: str = "BTN_SOUTH"
    stand_button: str = "BTN_NORTH"
    estop_button: str = "BTN_EAST"
    quit_button: str = "BTN_SELECT"
    range_min: int = -32768
    range_max: int = 32767

    def __post_init__(self) -> None:
        for key in ("speed_axis", "turn_axis"):
            check_choice(f"drive.gamepad.{key}", getattr(self, key), tuple(AXES))
        check_choice("drive.gamepad.side_axis", self.side_axis, ("", *AXES))
        for key in ("invert_speed", "invert_turn", "invert_side"):
            check_bool(f"drive.gamepad.{key}", getattr(self, key))
        check_range("drive.gamepad.dead_zone", self.dead_zone, 0.0, 0.9)
        buttons = ("stop_button", "stand_button", "estop_button", "quit_button")
        for key in buttons:
            check_choice(f"drive.gamepad.{key}", getattr(self, key), tuple(BUTTONS))
        if len({getattr(self, key) for key in buttons}) != len(buttons):
            raise ConfigError("drive.gamepad: stop, stand, e-stop and quit need four different buttons")
        for key in ("range_min", "range_max"):
            check_range(f"drive.gamepad.{key}", getattr(self, key), -(2**31), 2**31 - 1)
        if self.range_max <= self.range_min:
            raise ConfigError("drive.gamepad.range_max must be above drive.gamepad.range_min")


@dataclass(frozen=True)
class DriveConfig:
    """``plenctl drive`` and the daemon's dead-man rule (``[drive]``).

    Attributes:
        lease_s: the daemon stops the walk (at the next step boundary) when a drive
            client has sent nothing for this long; its connection closing stops it at once.
        update_hz: how often the client repeats its command while it drives (at least
            two updates per lease, so one lost update never stops the robot).
        speed_step, turn_step, side_step: how much one key press changes each command.
        gamepad: the gamepad mapping.
    """

    lease_s: float = 0.5
    update_hz: float = 10.0
    speed_step: float = 0.1
    turn_step: float = 0.2
    side_step: float = 0.5
    gamepad: GamepadConfig = field(default_factory=GamepadConfig)

    def __post_init__(self) -> None:
        check_range("drive.lease_s", self.lease_s, 0.1, 5.0)
        check_range("drive.update_hz", self.update_hz, 2.0, 50.0)
        for key in ("speed_step", "turn_step", "side_step"):
            check_range(f"drive.{key}", getattr(self, key), 0.01, 1.0)
        if 2.0 / self.update_hz > self.lease_s:
            raise ConfigError(
                f"drive.update_hz = {self.update_hz} sends less than twice per "
                f"drive.lease_s = {self.lease_s} s; raise drive.update_hz to at least {2.0 / self.lease_s:g}"
            )
        if not isinstance(self.gamepad, GamepadConfig):
            raise ConfigError("drive.gamepad must be a table")
