"""The sinewave walking gait: foot trajectories in the torso frame, solved by leg IK.

A full cycle is two steps. Each foot swings for ``1 - duty`` of the cycle and stands for
``duty`` (more than half, so there are two double-support phases per cycle); the left
foot runs half a cycle behind the right. While a foot swings, it moves forward along a
half cosine and lifts along a half sine; while it stands it moves backward at a constant
rate, which carries the torso forward. The torso sways sideways over the standing foot.
Every coordinate is continuous in phase, in the parameters and in the amplitude
``envelope``, so blending parameters or the envelope never makes a position jump.

:func:`foot_targets` and :func:`joint_targets` are pure functions of phase, parameters
and envelope. :class:`SineGait` holds the phase and handles starting, speed changes at
step boundaries and stopping back to the stand pose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from gaits.ik import IKError, leg_ik
from plend.core.errors import PlendError
from plend.model import robot
from plend.model.robot import LEG_JOINT_NAMES, NUM_JOINTS, joint_index, sole_zero_position

_RIGHT = [joint_index(n) for n in LEG_JOINT_NAMES["right"]]
_LEFT = [joint_index(n) for n in LEG_JOINT_NAMES["left"]]


class GaitError(PlendError, ValueError):
    """Gait parameters are invalid or would drive a joint past its limit."""


@dataclass(frozen=True)
class GaitParams:
    """Shape of the walk. Lengths in metres, times in seconds.

    Attributes:
        period_s: one full cycle (two steps).
        stride_m: distance each foot travels relative to the torso per step; negative
            walks backwards.
        lift_m: height the swinging foot rises.
        sway_m: sideways torso sway amplitude toward the standing foot.
        crouch_m: how much lower the torso stands than on straight legs.
        lean_m: how far the torso is carried ahead of the feet.
        width_m: extra sideways spacing of each foot beyond the zero pose.
        duty: fraction of the cycle each foot is on the ground (0.5 to 0.9).
        turn_rad: heading change per step (hip yaw); positive turns left.
        side_m: sideways distance each foot travels relative to the torso per step;
            positive steps left. While the feet would come closer than in the stand
            pose, they are spread apart by as much.
        level_m: how much higher the right sole is carried than the left (the left one
            as much lower): evens out soles of different heights or a floor tilted
            sideways.
    """

    period_s: float = 0.8
    stride_m: float = 0.012
    lift_m: float = 0.008
    sway_m: float = 0.010
    crouch_m: float = 0.008
    lean_m: float = 0.0
    width_m: float = 0.0
    duty: float = 0.6
    turn_rad: float = 0.0
    side_m: float = 0.0
    level_m: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "period_s": (0.3, 3.0),
            "stride_m": (-0.03, 0.03),
            "lift_m": (0.0, 0.015),
            "sway_m": (0.0, 0.02),
            "crouch_m": (0.002, 0.016),
            "lean_m": (-0.02, 0.02),
            "width_m": (-0.005, 0.015),
            "duty": (0.5, 0.9),
            "turn_rad": (-0.3, 0.3),
            "side_m": (-0.012, 0.012),
            "level_m": (-0.012, 0.012),
        }
        for name, (lo, hi) in checks.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                raise GaitError(f"gait parameter {name} = {value!r} is out of range [{lo}, {hi}]")


def blend(a: GaitParams, b: GaitParams, w: float) -> GaitParams:
    """Parameters a fraction ``w`` of the way from ``a`` to ``b``."""
    if w <= 0.0:
        return a
    if w >= 1.0:
        return b
    values = {f.name: (1.0 - w) * getattr(a, f.name) + w * getattr(b, f.name) for f in dataclasses.fields(a)}
    return GaitParams(**values)


def _leg_phase(phase: float, offset: float) -> float:
    return (phase + offset) % 1.0


def _travel(phase: float, p: GaitParams, side: str) -> tuple[float, float]:
    """How far along its step a foot is (-0.5 to 0.5, forward while it swings), and its
    lift (0 to 1)."""
    u = _leg_phase(phase, 0.0 if side == "right" else 0.5)
    swing = 1.0 - p.duty
    if u < swing:
        s = u / swing
        return 0.5 * math.cos(math.pi * s) * -1.0, math.sin(math.pi * s)
    return 0.5 - (u - swing) / p.duty, 0.0


def _foot(
    phase: float, p: GaitParams, side: str, envelope: float, travel: float, lift: float, apart: float
) -> tuple[np.ndarray, float]:
    x = p.stride_m * envelope * travel
    y = p.side_m * envelope * travel
    yaw = p.turn_rad * envelope * travel
    # Torso sways toward the left foot while the right one swings, and back.
    sway = p.sway_m * envelope * math.cos(2.0 * math.pi * (phase - 0.5 * (1.0 - p.duty)))
    base = sole_zero_position(side)  # type: ignore[arg-type]
    outward = -(p.width_m + apart) if side == "right" else p.width_m + apart
    level = 0.5 * p.level_m * (1.0 if side == "right" else -1.0)
    z = p.crouch_m + p.lift_m * envelope * lift + level
    return np.array([base[0] + x - p.lean_m, base[1] + outward + y - sway, base[2] + z]), yaw


def foot_targets(
    phase: float, params: GaitParams, envelope: float = 1.0
) -> dict[str, tuple[np.ndarray, float]]:
    """Sole-centre positions (torso frame, m) and headings (rad) of both feet."""
    right, left = _travel(phase, params, "right"), _travel(phase, params, "left")
    # Stepping sideways moves the feet toward each other for part of the cycle; spread
    # them by as much, so that they never come closer than in the stand pose.
    closer = params.side_m * envelope * (right[0] - left[0])
    apart = 0.5 * max(0.0, closer)
    return {
        "right": _foot(phase, params, "right", envelope, *right, apart),
        "left": _foot(phase, params, "left", envelope, *left, apart),
    }


ARM_POSE = {"r_shoulder_rs_servo": 0.1, "l_shoulder_ls_servo": -0.1}


def joint_targets(
    phase: float, params: GaitParams, envelope: float = 1.0, check_limits: bool = True
) -> np.ndarray:
    """All 18 joint targets (rad) of the gait at ``phase`` in [0, 1).

    ``check_limits=False`` returns targets past a joint limit instead of raising (see
    :func:`gaits.ik.leg_ik`); they must then pass the safety filter.
    """
    q = np.zeros(NUM_JOINTS)
    for name, angle in ARM_POSE.items():
        q[joint_index(name)] = angle
    feet = foot_targets(phase, params, envelope)
    q[_RIGHT] = leg_ik("right", feet["right"][0], feet["right"][1], check_limits)
    q[_LEFT] = leg_ik("left", feet["left"][0], feet["left"][1], check_limits)
    return q


def validate(params: GaitParams, samples: int = 64) -> None:
    """Raise :class:`GaitError` unless the whole cycle stays inside the joint limits."""
    for envelope in (0.0, 0.5, 1.0):
        for k in range(samples):
            try:
                joint_targets(k / samples, params, envelope)
            except IKError as exc:
                raise GaitError(f"gait parameters {params} cannot be walked: {exc}") from None


def stand_pose(params: GaitParams | None = None) -> np.ndarray:
    """The standing pose the gait starts from and stops at: with the default parameters
    the robot's own (:func:`plend.model.robot.stand_pose`, no IK solved)."""
    if params is None:
        return robot.stand_pose()
    return joint_targets(0.0, params, 0.0)


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper joint limits in canonical order (:func:`plend.model.robot.joint_limits`)."""
    return robot.joint_limits()


STRIDE_EXPONENT_RANGE = (0.5, 1.0)


@dataclass(frozen=True)
class SpeedMap:
    """How a walking command (speed, turn and side, each in [-1, 1]) becomes gait parameters.

    Stride grows with speed up to ``max_stride_m`` (negative speeds walk backwards):
    linearly with ``stride_exponent`` 1, and with a power below 1 the slower speeds take
    longer steps (0.75: 14.3 mm at speed 0.5 instead of 12) while speed 1 keeps
    ``max_stride_m``. The cycle shortens from ``slow_period_s`` to ``fast_period_s``. Speed 0
    marches in place. Turn 1 turns the feet ``max_turn_rad`` per step (left). Side 1
    steps ``max_side_m`` per step to the left when walking straight; a turning foot needs
    some of the hip roll range, so while turning at ``max_turn_rad`` side 1 steps only
    ``turning_side_m``. ``base`` holds the parameters that do not depend on the command.
    """

    max_stride_m: float = 0.024
    slow_period_s: float = 0.8
    fast_period_s: float = 0.6
    max_turn_rad: float = 0.2
    max_side_m: float = 0.0055
    turning_side_m: float = 0.004
    base: GaitParams = GaitParams()
    stride_exponent: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = STRIDE_EXPONENT_RANGE
        value = self.stride_exponent
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise GaitError(
                f"stride_exponent {value!r} is out of range [{lo}, {hi}] (1: stride in proportion to speed)"
            )

    def params(self, speed: float, turn_rad: float = 0.0, side: float = 0.0) -> GaitParams:
        """Validated gait parameters for ``speed`` and a ``side`` command, turning
        ``turn_rad`` per step."""
        check_speed(speed)
        period = self.slow_period_s + abs(speed) * (self.fast_period_s - self.slow_period_s)
        turning = min(1.0, abs(turn_rad) / self.max_turn_rad)
        reach = self.max_side_m + turning * (self.turning_side_m - self.max_side_m)
        side_m = check_command("side", side) * reach
        stride = math.copysign(abs(speed) ** self.stride_exponent, speed) * self.max_stride_m
        return dataclasses.replace(
            self.base, stride_m=stride, period_s=period, turn_rad=turn_rad, side_m=side_m
        )

    def turn_rad(self, turn: float) -> float:
        """Heading change per step for a turn command in [-1, 1]."""
        return check_command("turn", turn) * self.max_turn_rad


_MEANING = {"speed": "1 = fastest", "turn": "positive turns left", "side": "positive steps left"}


def check_command(name: str, value: float) -> float:
    """Return ``value`` if it is a number in [-1, 1], else raise :class:`GaitError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GaitError(f"{name} must be a number in [-1, 1], got {value!r}")
    if not -1.0 <= value <= 1.0:
        raise GaitError(f"{name} {value} is out of range; use a value in [-1, 1] ({_MEANING[name]})")
    return float(value)


def check_speed(speed: float) -> float:
    """Return ``speed`` if it is a number in [-1, 1], else raise :class:`GaitError`."""
    return check_command("speed", speed)
