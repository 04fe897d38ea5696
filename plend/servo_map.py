"""Joint angles to servo pulses and feedback counts to joint angles, through calibration.

The conversions are paired pure functions and the only place where degrees, pulse
microseconds and ADC codes appear; everything above the HAL is radians. The default
calibration is the servo convention of the original robot with no horn offset and a
0.5-2.5 V potentiometer read at the ADS1115's +-4.096 V range: close enough to move a
robot gently, never good enough to walk it, which is why the HAL warns loudly about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from plend.errors import ConfigError
from plend.robot import JOINTS

ADC_VOLTS_PER_CODE = 4.096 / 32768  # ADS1115 at gain 1


@dataclass(frozen=True)
class JointCalibration:
    """One servo: ``servo_deg = 90 + offset_deg + direction * joint_deg``; the pulse maps
    0-180 servo degrees onto ``pulse_min_us``-``pulse_max_us``; the feedback fit gives
    ``joint_rad = (code - code_at_zero) / codes_per_rad``."""

    offset_deg: float = 0.0
    direction: int = 1
    pulse_min_us: float = 600.0
    pulse_max_us: float = 2800.0
    code_at_zero: float = 12000.0
    codes_per_rad: float = 16000.0 / math.pi

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ConfigError(f"calibration direction must be 1 or -1, got {self.direction!r}")
        if not 400.0 <= self.pulse_min_us < self.pulse_max_us <= 3000.0:
            raise ConfigError(
                f"calibration pulse range {self.pulse_min_us}-{self.pulse_max_us} us is not plausible"
            )
        if not math.isfinite(self.codes_per_rad) or abs(self.codes_per_rad) < 1.0:
            raise ConfigError(f"calibration feedback slope {self.codes_per_rad!r} codes/rad is not usable")


@dataclass(frozen=True)
class Calibration:
    """Per-joint calibration of the wired joints; ``measured`` is False for the default."""

    joints: dict[str, JointCalibration] = field(
        default_factory=lambda: {j.name: JointCalibration() for j in JOINTS if j.wired}
    )
    measured: bool = False
    source: str = "built-in default"
    imu_offsets: tuple[int, ...] | None = None  # the BNO055's 22 offset bytes, if stored
    problem: str | None = None  # why the stored calibration could not be used


def angle_to_pulse_us(angle_rad: float, cal: JointCalibration) -> float:
    """Pulse width that puts the joint at ``angle_rad``."""
    servo_deg = 90.0 + cal.offset_deg + cal.direction * math.degrees(angle_rad)
    return cal.pulse_min_us + (cal.pulse_max_us - cal.pulse_min_us) * servo_deg / 180.0


def pulse_us_to_angle(pulse_us: float, cal: JointCalibration) -> float:
    """Joint angle that a pulse width commands (inverse of :func:`angle_to_pulse_us`)."""
    servo_deg = 180.0 * (pulse_us - cal.pulse_min_us) / (cal.pulse_max_us - cal.pulse_min_us)
    return math.radians((servo_deg - 90.0 - cal.offset_deg) * cal.direction)


def code_to_angle(code: float, cal: JointCalibration) -> float:
    """Joint angle from a feedback ADC code."""
    return (code - cal.code_at_zero) / cal.codes_per_rad


def angle_to_code(angle_rad: float, cal: JointCalibration) -> float:
    """Feedback ADC code at a joint angle (inverse of :func:`code_to_angle`)."""
    return cal.code_at_zero + cal.codes_per_rad * angle_rad


def load_calibration(path: Path) -> Calibration | None:
    """The calibration stored at ``path``, or None if there is none; raises a
    ConfigError for a file that exists but is corrupt or belongs to another robot."""
    from calibration.store import load_servo_calibration  # imports this module

    return load_servo_calibration(path)
