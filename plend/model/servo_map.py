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
from datetime import datetime

from plend.core.errors import ConfigError
from plend.model.robot import JOINTS

ADC_VOLTS_PER_CODE = 4.096 / 32768  # ADS1115 at gain 1
MAX_OFFSET_DEG = 45.0  # further off than this, the horn sits on the wrong spline tooth
MIN_CODES_PER_RAD = 300.0  # about 5 ADC codes per degree: below, the feedback is useless
# The ADC's whole range over less than 0.66 rad: no potentiometer on these servos is that steep
# (about 5 000 codes/rad is typical), so a larger slope is a corrupt or hand-made file.
MAX_CODES_PER_RAD = 100_000.0
MIN_PULSE_SPAN_US = 1000.0
MAX_ERROR_DEG = 10.0  # fit error or hysteresis beyond this cannot come from a real fit
SERVO_FIELDS = ("offset_deg", "direction", "pulse_min_us", "pulse_max_us", "code_at_zero", "codes_per_rad")
"""The fields the conversions use; the others say how well the joint was measured."""


class CalibrationError(ConfigError):
    """The calibration file or a calibration value cannot be trusted.

    A :class:`~plend.core.errors.ConfigError`, hence also a ``PlendError`` and a ``ValueError``.
    """


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalibrationError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise CalibrationError(f"{name} is {value!r}, not a finite number")
    return float(value)


def _timestamp(name: str, value: object) -> None:
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CalibrationError(f"{name} must be an ISO 8601 time, got {value!r}") from None


@dataclass(frozen=True)
class JointCalibration:
    """One servo's calibration: what the calibration file stores for a joint and what the
    hardware backend drives and reads it through.

    ``servo_deg = 90 + offset_deg + direction * joint_deg``; the pulse maps 0-180 servo
    degrees onto ``pulse_min_us``-``pulse_max_us``; the feedback fit gives
    ``joint_rad = (code - code_at_zero) / codes_per_rad``. The built-in default (no
    arguments) is the original robot's servo convention with no horn offset.

    Attributes:
        offset_deg, direction, pulse_min_us, pulse_max_us, code_at_zero, codes_per_rad:
            The servo's numbers, as above (:data:`SERVO_FIELDS`).
        fit_error_deg: Worst difference between fitted and commanded angle in the sweep.
        hysteresis_deg: Worst difference between the up and the down sweep.
        range_rad: The (low, high) joint angles the sweep covered; None when the joint was
            never measured (the built-in default).
        calibrated_at: When this joint was calibrated, ISO 8601; None when never.

    Raises:
        CalibrationError: a value no real servo or fit could have, naming it.
    """

    offset_deg: float = 0.0
    direction: int = 1
    pulse_min_us: float = 600.0
    pulse_max_us: float = 2800.0
    code_at_zero: float = 12000.0
    codes_per_rad: float = 16000.0 / math.pi
    fit_error_deg: float = 0.0
    hysteresis_deg: float = 0.0
    range_rad: tuple[float, float] | None = None
    calibrated_at: str | None = None

    def __post_init__(self) -> None:
        self._check_servo()
        for name in ("fit_error_deg", "hysteresis_deg"):
            if not 0.0 <= _number(name, getattr(self, name)) <= MAX_ERROR_DEG:
                raise CalibrationError(f"{name} {getattr(self, name)} is outside 0..{MAX_ERROR_DEG:g}")
        if self.range_rad is not None:
            if not isinstance(self.range_rad, tuple | list) or len(self.range_rad) != 2:
                raise CalibrationError(f"range_rad must be [low, high], got {self.range_rad!r}")
            r_lo, r_hi = (_number("range_rad", v) for v in self.range_rad)
            if not -math.pi <= r_lo < r_hi <= math.pi:
                raise CalibrationError(f"range_rad {list(self.range_rad)} is not a range within +-pi")
            object.__setattr__(self, "range_rad", (self.range_rad[0], self.range_rad[1]))
        if self.calibrated_at is not None:
            _timestamp("calibrated_at", self.calibrated_at)

    def _check_servo(self) -> None:
        if abs(_number("offset_deg", self.offset_deg)) > MAX_OFFSET_DEG:
            raise CalibrationError(f"offset_deg {self.offset_deg} is beyond +-{MAX_OFFSET_DEG:.0f} deg")
        if isinstance(self.direction, bool) or self.direction not in (1, -1):
            raise CalibrationError(f"direction must be 1 or -1, got {self.direction!r}")
        lo, hi = _number("pulse_min_us", self.pulse_min_us), _number("pulse_max_us", self.pulse_max_us)
        if not (400.0 <= lo < hi <= 3000.0 and hi - lo >= MIN_PULSE_SPAN_US):
            raise CalibrationError(f"pulse range {lo:g}-{hi:g} us is not plausible")
        if not -32768 <= _number("code_at_zero", self.code_at_zero) <= 32767:
            raise CalibrationError(f"code_at_zero {self.code_at_zero} is outside the ADC's range")
        if abs(_number("codes_per_rad", self.codes_per_rad)) < MIN_CODES_PER_RAD:
            raise CalibrationError(f"codes_per_rad {self.codes_per_rad} is too close to zero")
        if abs(self.codes_per_rad) > MAX_CODES_PER_RAD:
            raise CalibrationError(
                f"codes_per_rad {self.codes_per_rad:g} is implausibly steep (at most {MAX_CODES_PER_RAD:g})"
            )

    def servo(self) -> dict[str, float]:
        """The servo's numbers (:data:`SERVO_FIELDS`) by name, without the measurement's."""
        return {name: getattr(self, name) for name in SERVO_FIELDS}

    @property
    def measured(self) -> bool:
        """True when this joint was calibrated (its sweep's range and time are known)."""
        return self.range_rad is not None and self.calibrated_at is not None


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
