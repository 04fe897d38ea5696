"""Pure maths of the calibration wizard: horn offset, direction and the feedback fit.

The wizard measures in this order, because each step commands the servo through the
ones before: the direction (a small move the person judges), the horn offset (the person
jogs the servo until the link matches the reference pose), then a slow sweep up and down
across the joint's safe range that fits the feedback potentiometer. The sweep's angles are
commanded joint angles under the direction and offset just found, so the fit maps ADC
codes straight to the angles the daemon commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from calibration.store import MAX_OFFSET_DEG, MIN_CODES_PER_RAD, CalibrationError
from plend.core.errors import PlendError

MIN_SWEEP_POINTS = 5
# Where a joint's load turns over inside the sweep its link crosses the gears' play: the
# mid-line steps by the play (1-3 deg), so it may stray by half of it.
MAX_FIT_ERROR_DEG = 2.0
# Hysteresis is the servo's dead band and its gears' play (1-3 deg with plastic gears,
# HARDWARE.md): it does not count as fit error, but more than this is a loose horn or a
# stripped gear.
MAX_HYSTERESIS_DEG = 5.0
MAX_NOISE_DEG = 0.3
MONOTONIC_SLACK_DEG = 0.5  # a backward step smaller than this is backlash, not a fault


class FeedbackError(PlendError, ValueError):
    """A joint's feedback cannot be calibrated; the message says what to check."""


@dataclass(frozen=True)
class FeedbackFit:
    """The linear fit ``code = code_at_zero + codes_per_rad * angle`` and its quality.

    Attributes:
        codes_per_rad: ADC codes per joint radian (signed).
        code_at_zero: ADC code at joint angle 0.
        fit_error_deg: Worst |fitted angle - commanded angle| of the mid-line between the
            two passes (the hysteresis between them is reported on its own).
        hysteresis_deg: Worst |up pass - down pass| at one commanded angle.
        residual_std_deg: Standard deviation of the fitted minus commanded angles.
        noise_deg: Point-to-point noise of the feedback (robust estimate, rms).
        range_rad: The (low, high) commanded angles of the sweep.
    """

    codes_per_rad: float
    code_at_zero: float
    fit_error_deg: float
    hysteresis_deg: float
    residual_std_deg: float
    noise_deg: float
    range_rad: tuple[float, float]


def _sweep(
    angles_rad: npt.ArrayLike, codes_up: npt.ArrayLike, codes_down: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angles, up, down = (np.asarray(v, dtype=float) for v in (angles_rad, codes_up, codes_down))
    if angles.ndim != 1 or up.shape != angles.shape or down.shape != angles.shape:
        raise FeedbackError(
            f"sweep data must be three flat lists of equal length, got shapes {angles.shape}, "
            f"{up.shape}, {down.shape}"
        )
    if len(angles) < MIN_SWEEP_POINTS:
        raise FeedbackError(f"sweep has {len(angles)} points, at least {MIN_SWEEP_POINTS} are needed")
    if not (np.isfinite(angles).all() and np.isfinite(up).all() and np.isfinite(down).all()):
        raise FeedbackError("sweep data holds a non-finite value: a failed ADC read?")
    if not (np.diff(angles) > 0).all():
        raise FeedbackError("sweep angles must rise strictly (codes_down in the same order as the angles)")
    return angles, up, down


def _noise_codes(angles: np.ndarray, up: np.ndarray, down: np.ndarray, slope: float) -> float:
    """Robust rms noise from second differences of the detrended passes.

    Second differences cancel each pass's offset (hysteresis) and the median ignores the
    few large ones at a kink, so this measures noise, not shape.
    """
    d2 = np.concatenate([np.diff(codes - slope * angles, n=2) for codes in (up, down)])
    return float(np.median(np.abs(d2)) / (0.6745 * math.sqrt(6.0)))


def _check_monotonic(angles: np.ndarray, passes: dict[str, np.ndarray], slope: float, slack: float) -> None:
    for way, codes in passes.items():
        along = math.copysign(1.0, slope) * codes
        drawdown = np.maximum.accumulate(along) - along
        worst = int(np.argmax(drawdown))
        if drawdown[worst] > slack:
            back = math.degrees(drawdown[worst] / abs(slope))
            raise FeedbackError(
                f"non-monotonic: the feedback goes back {back:.1f} deg near "
                f"{math.degrees(angles[worst]):+.0f} deg on the way {way}: "
                "a stripped gear or a slipping horn? check the servo before calibrating it"
            )


def _refuse_constant(angles: np.ndarray, codes: np.ndarray, min_codes_per_rad: float) -> None:
    span, sweep = float(np.ptp(codes)), angles[-1] - angles[0]
    if span < min_codes_per_rad * sweep:
        raise FeedbackError(
            f"feedback reads a constant {float(np.median(codes)):.0f} (it changed {span:.0f} codes over "
            f"a {math.degrees(sweep):.0f} deg sweep): the wire is loose or disconnected, "
            "or the servo is not powered; check the feedback wire and the servo supply"
        )


def _refuse_noisy(noise_deg: float, max_noise_deg: float) -> None:
    if noise_deg > max_noise_deg:
        raise FeedbackError(
            f"feedback is noisy: {noise_deg:.2f} deg rms from point to point (limit {max_noise_deg:g}): "
            "check the feedback wire's contact and ground, and the servo supply"
        )


def _refuse_backwards(slope: float, expected_sign: int | None) -> None:
    if expected_sign is not None and math.copysign(1.0, slope) != expected_sign:
        rises, falls = ("fall", "rise") if expected_sign > 0 else ("rise", "fall")
        raise FeedbackError(
            f"feedback runs backwards: codes {rises} as the joint angle rises (expected them to {falls}): "
            "check the joint's direction, or whether this servo's potentiometer is reversed"
        )


def _refuse_fit_error(fit_error: float, hysteresis: float, max_fit_error_deg: float) -> None:
    if fit_error >= max_fit_error_deg:
        raise FeedbackError(
            f"fit error {fit_error:.2f} deg is over {max_fit_error_deg:g} deg "
            f"(hysteresis {hysteresis:.2f} deg): the joint may hit a stop inside the sweep, "
            "or the gears are worn; sweep a narrower range or replace the servo"
        )
    if hysteresis > MAX_HYSTERESIS_DEG:
        raise FeedbackError(
            f"hysteresis {hysteresis:.2f} deg is over {MAX_HYSTERESIS_DEG:g} deg, more play than a servo of "
            "this kind has: check the horn's screw and whether the horn or a gear is cracked or stripped"
        )


def fit_feedback(
    angles_rad: npt.ArrayLike,
    codes_up: npt.ArrayLike,
    codes_down: npt.ArrayLike,
    *,
    expected_sign: int | None = None,
    max_fit_error_deg: float = MAX_FIT_ERROR_DEG,
    max_noise_deg: float = MAX_NOISE_DEG,
    min_codes_per_rad: float = MIN_CODES_PER_RAD,
) -> FeedbackFit:
    """Fit the feedback of one joint from a sweep up and down its safe range.

    Args:
        angles_rad: The commanded joint angles, strictly rising.
        codes_up: The settled ADC code at each angle on the way up.
        codes_down: The settled ADC code at each angle on the way down, in the same
            order as ``angles_rad`` (the down pass reversed).
        expected_sign: +1 or -1 when the sign of ``codes_per_rad`` is known (the servo's
            potentiometer polarity times the joint's direction); None not to check it.
        max_fit_error_deg: Refuse a fit at least this far off anywhere.
        max_noise_deg: Refuse feedback noisier than this (rms, point to point).
        min_codes_per_rad: Below this slope the feedback counts as constant.

    Returns:
        The fit; both passes weigh equally, so the line runs mid-way through the hysteresis.

    Raises:
        FeedbackError: For malformed data, a dead wire, noisy feedback, a non-monotonic or
            backwards response, or a fit error of ``max_fit_error_deg`` or more.
    """
    angles, up, down = _sweep(angles_rad, codes_up, codes_down)
    both, codes = np.concatenate([angles, angles]), np.concatenate([up, down])
    _refuse_constant(angles, codes, min_codes_per_rad)
    slope, intercept = (float(v) for v in np.polyfit(both, codes, 1))
    if abs(slope) < min_codes_per_rad:
        raise FeedbackError(
            f"non-monotonic: the feedback changes {float(np.ptp(codes)):.0f} codes but not steadily with "
            "the angle: a stripped gear or a slipping horn? check the servo before calibrating it"
        )
    noise = _noise_codes(angles, up, down, slope)
    _refuse_noisy(math.degrees(noise / abs(slope)), max_noise_deg)
    slack = max(6.0 * noise, math.radians(MONOTONIC_SLACK_DEG) * abs(slope))
    _check_monotonic(angles, {"up": up, "down": down}, slope, slack)
    _refuse_backwards(slope, expected_sign)
    error = np.degrees(((up + down) / 2 - intercept) / slope - angles)
    hysteresis = math.degrees(float(np.max(np.abs(up - down))) / abs(slope))
    _refuse_fit_error(float(np.max(np.abs(error))), hysteresis, max_fit_error_deg)
    return FeedbackFit(
        codes_per_rad=slope,
        code_at_zero=intercept,
        fit_error_deg=float(np.max(np.abs(error))),
        hysteresis_deg=hysteresis,
        residual_std_deg=float(np.std(error)),
        noise_deg=math.degrees(noise / abs(slope)),
        range_rad=(float(angles[0]), float(angles[-1])),
    )


def fit_sweep(
    angles_rad: npt.ArrayLike,
    codes_up: npt.ArrayLike,
    codes_down: npt.ArrayLike,
    *,
    expected_sign: int | None = None,
) -> FeedbackFit:
    """Fit a sweep as the daemon's calibration mode plays it, turning points left out.

    The daemon reads the up pass from ``low`` to ``high`` and the down pass back, so at
    ``high`` both readings come from below (the down pass starts where the up pass
    stopped) and at ``low`` both from above (the joint came down to it before the sweep
    and the down pass ends there). There the mid-line of the two passes is off by half
    the hysteresis, at both ends inwards: a line through them is too shallow by about
    the hysteresis over the sweep's span (3 deg of play over 60 deg: 5 %), which grows to
    degrees where the joint works far from the sweep. Inside, each angle is reached once
    from each side, so the fit uses the inside points only.

    Args:
        angles_rad: The commanded joint angles, strictly rising, turning points included.
        codes_up: The settled codes on the way up.
        codes_down: The settled codes on the way down, in the order of ``angles_rad``.
        expected_sign: As for :func:`fit_feedback`.

    Returns:
        The fit of the inside points (its ``range_rad`` is theirs).

    Raises:
        FeedbackError: As :func:`fit_feedback`, and for a sweep with fewer than
            ``MIN_SWEEP_POINTS + 2`` points.
    """
    angles, up, down = _sweep(angles_rad, codes_up, codes_down)
    if len(angles) < MIN_SWEEP_POINTS + 2:
        raise FeedbackError(
            f"sweep has {len(angles)} points, at least {MIN_SWEEP_POINTS + 2} are needed "
            "(its two turning points are not fitted)"
        )
    return fit_feedback(angles[1:-1], up[1:-1], down[1:-1], expected_sign=expected_sign)


def _check_direction(direction: int) -> None:
    if isinstance(direction, bool) or direction not in (1, -1):
        raise CalibrationError(f"direction must be 1 or -1, got {direction!r}")


def horn_offset_from_zero(
    pulse_us_at_reference: float,
    joint_angle_at_reference_rad: float,
    pulse_min_us: float,
    pulse_max_us: float,
    direction: int,
) -> float:
    """The horn offset that makes the servo convention hold at a reference pose.

    A person jogged the servo until the link matched the reference pose, where the joint
    angle is known (usually 0). Solves ``servo_deg = 90 + offset + direction * joint_deg``
    with ``servo_deg`` from the pulse (0-180 deg over ``pulse_min_us``-``pulse_max_us``).

    Returns:
        The offset in servo degrees.

    Raises:
        CalibrationError: The direction or pulse range is invalid, or the offset is beyond
            +-45 deg (the horn sits on the wrong spline tooth).
    """
    _check_direction(direction)
    if not pulse_max_us > pulse_min_us:
        raise CalibrationError(f"pulse range {pulse_min_us:g}-{pulse_max_us:g} us is empty")
    servo_deg = 180.0 * (pulse_us_at_reference - pulse_min_us) / (pulse_max_us - pulse_min_us)
    offset = servo_deg - 90.0 - direction * math.degrees(joint_angle_at_reference_rad)
    if abs(offset) > MAX_OFFSET_DEG:
        raise CalibrationError(
            f"horn offset {offset:+.1f} deg is beyond +-{MAX_OFFSET_DEG:.0f} deg: re-seat the horn "
            "a spline tooth nearer the reference pose and jog again"
        )
    return offset


def direction_from_check(assumed_direction: int, moved_as_expected: bool) -> int:
    """The joint's direction from a small positive move the person watched.

    The wizard commanded a small positive joint move under ``assumed_direction`` and
    showed which way a positive move goes; the person says whether the link went that way.
    """
    _check_direction(assumed_direction)
    return assumed_direction if moved_as_expected else -assumed_direction


def direction_from_feedback(
    commanded_code_change: float,
    hand_code_change: float,
    *,
    assumed_direction: int,
    min_change_codes: float = 20.0,
) -> int:
    """The joint's direction from the feedback, without watching the servo move.

    The potentiometer sits on the servo shaft, so a commanded move alone only shows the
    potentiometer's polarity, never how the servo is mounted. Two readings are needed:
    the code change when a small positive joint move is commanded under
    ``assumed_direction``, and the code change when the person, with the servo relaxed,
    moves the link by hand in the positive joint direction.

    Raises:
        FeedbackError: Either change is too small to have a sign.
    """
    _check_direction(assumed_direction)
    readings = {"the servo moved": commanded_code_change, "the link was moved by hand": hand_code_change}
    for what, change in readings.items():
        if not abs(change) >= min_change_codes:
            raise FeedbackError(
                f"feedback changed only {change:+.0f} codes when {what}: the wire is loose, "
                "or the move was too small"
            )
    polarity = math.copysign(1.0, commanded_code_change) * assumed_direction
    return int(math.copysign(1.0, hand_code_change) * polarity)
