"""Leg inverse kinematics: round trips, refusals and agreement with the URDF model.

Sign conventions (HARDWARE.md, plend.model.robot): the right knee flexes to negative angles
and the left one to positive angles. The sole stays level when the pitch rotations about
the three parallel pitch axes cancel and the two roll rotations cancel; the helper below
derives the ankle angles for that from the joint axes, not from the IK.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaits.ik import IKError, leg_fk, leg_ik
from plend.core.errors import PlendError
from plend.model.robot import (
    FOOT_LINKS,
    LEG_JOINT_NAMES,
    Side,
    joint,
    sole_offset,
    sole_zero_position,
    urdf_path,
)

SIDES: tuple[Side, Side] = ("right", "left")
TOL_M = 1e-4  # 0.1 mm
KNEE_MARGIN = 0.05  # keep away from the straight-knee singularity


def _leg(side: Side):  # type: ignore[no-untyped-def]
    return [joint(n) for n in LEG_JOINT_NAMES[side]]


def _interval_from(u: float, lo: float, hi: float) -> float:
    return lo + u * (hi - lo)


def flat_leg_angles(side: Side, u: tuple[float, float, float, float]) -> np.ndarray | None:
    """Six in-limit leg angles with a flexed knee and a level sole, from four numbers in
    [0, 1] (hip yaw, hip roll, knee, hip pitch). None when no such pose exists."""
    yaw_j, roll_j, hp_j, kn_j, ap_j, ar_j = _leg(side)
    yaw = _interval_from(u[0], yaw_j.lower, yaw_j.upper)
    # Ankle roll cancels hip roll: roll_j.axis.x * r + ar_j.axis.x * a = 0.
    k_roll = -roll_j.axis[0] / ar_j.axis[0]
    lo, hi = sorted((ar_j.lower / k_roll, ar_j.upper / k_roll))
    lo, hi = max(lo, roll_j.lower), min(hi, roll_j.upper)
    if lo > hi:
        return None
    roll = _interval_from(u[1], lo, hi)
    # Knee flexed: away from zero in the flexing direction of that side.
    flex = -1.0 if side == "right" else 1.0
    if flex < 0:
        knee = _interval_from(u[2], kn_j.lower, -KNEE_MARGIN)
    else:
        knee = _interval_from(u[2], KNEE_MARGIN, kn_j.upper)
    # Ankle pitch cancels hip pitch and knee: a_hp * hp + a_kn * kn + a_ap * ap = 0.
    a_hp, a_kn, a_ap = hp_j.axis[1], kn_j.axis[1], ap_j.axis[1]
    alpha, beta = -a_hp / a_ap, -a_kn / a_ap  # ap = alpha * hp + beta * kn
    lo, hi = sorted(((ap_j.lower - beta * knee) / alpha, (ap_j.upper - beta * knee) / alpha))
    lo, hi = max(lo, hp_j.lower), min(hi, hp_j.upper)
    if lo > hi:
        return None
    hip = _interval_from(u[3], lo, hi)
    q = np.array([yaw, roll, hip, knee, alpha * hip + beta * knee, k_roll * roll])
    assert all(j.within(float(a), 1e-12) for j, a in zip(_leg(side), q, strict=True))
    return q


def _yaw_of(side: Side, q: np.ndarray) -> float:
    return float(q[0]) * _leg(side)[0].axis[2]


def _sole_is_level(side: Side, q: np.ndarray, tol: float = 1e-6) -> bool:
    """Level sole: net pitch and net roll about the parallel axes are zero."""
    js = _leg(side)
    pitch = sum(j.axis[1] * a for j, a in zip(js[2:5], q[2:5], strict=True))
    roll = js[1].axis[0] * q[1] + js[5].axis[0] * q[5]
    return abs(pitch) < tol and abs(roll) < tol


def _within_limits(side: Side, q: np.ndarray) -> bool:
    return all(j.within(float(a), 1e-9) for j, a in zip(_leg(side), q, strict=True))


# -- round trips -------------------------------------------------------------------------

unit = st.floats(0.0, 1.0, allow_nan=False)


@pytest.mark.parametrize("side", SIDES)
@settings(max_examples=400, deadline=None)
@given(u=st.tuples(unit, unit, unit, unit))
def test_fk_ik_round_trip_property(side: Side, u: tuple[float, float, float, float]) -> None:
    q = flat_leg_angles(side, u)
    assert q is not None
    p = leg_fk(side, q)
    yaw = _yaw_of(side, q)
    solved = leg_ik(side, p, yaw)
    assert solved.shape == (6,)
    assert np.linalg.norm(leg_fk(side, solved) - p) < TOL_M
    assert _within_limits(side, solved)
    assert _sole_is_level(side, solved)
    # The flexed-knee, level-sole solution with this yaw is unique: the same angles.
    np.testing.assert_allclose(solved, q, atol=1e-6)


@pytest.mark.parametrize("side", SIDES)
def test_round_trip_thousands_of_targets(side: Side) -> None:
    rng = np.random.default_rng(1234 if side == "right" else 4321)
    worst = 0.0
    for _ in range(3000):
        q = flat_leg_angles(side, tuple(rng.uniform(0.0, 1.0, 4)))  # type: ignore[arg-type]
        assert q is not None
        p = leg_fk(side, q)
        solved = leg_ik(side, p, _yaw_of(side, q))
        worst = max(worst, float(np.linalg.norm(leg_fk(side, solved) - p)))
        assert _within_limits(side, solved)
        assert _sole_is_level(side, solved)
    assert worst < TOL_M


@pytest.mark.parametrize("side", SIDES)
def test_random_targets_are_solved_exactly_or_refused(side: Side) -> None:
    """Never a silent clamp: a returned solution is inside the limits and reaches the
    target; anything else is an IKError."""
    rng = np.random.default_rng(7 if side == "right" else 8)
    centre = np.array(sole_zero_position(side))
    solved = refused = 0
    for _ in range(3000):
        target = centre + rng.uniform([-0.03, -0.02, -0.005], [0.03, 0.02, 0.04])
        yaw = float(rng.uniform(-1.8, 1.8))
        try:
            q = leg_ik(side, target, yaw)
        except IKError:
            refused += 1
            continue
        solved += 1
        assert _within_limits(side, q), (target, yaw, q)
        assert np.linalg.norm(leg_fk(side, q) - target) < TOL_M, (target, yaw, q)
        assert _sole_is_level(side, q)
        assert q[0] == pytest.approx(yaw * _leg(side)[0].axis[2])
    # Both outcomes occur, so the check above was exercised.
    assert solved > 300 and refused > 300


def test_zero_pose_target_gives_zero_angles() -> None:
    # At the zero pose the knee is straight; leg_ik must reach it without a domain error.
    for side in SIDES:
        q = leg_ik(side, sole_zero_position(side))
        assert np.linalg.norm(leg_fk(side, q) - np.array(sole_zero_position(side))) < TOL_M
        np.testing.assert_allclose(leg_fk(side, np.zeros(6)), sole_zero_position(side), atol=1e-12)


def test_knee_flexes_the_documented_way() -> None:
    # Crouching 10 mm flexes the right knee negative and the left knee positive.
    sides: tuple[tuple[Side, float], ...] = (("right", -1.0), ("left", 1.0))
    for side, sign in sides:
        target = np.array(sole_zero_position(side)) + np.array([0.0, 0.0, 0.010])
        q = leg_ik(side, target)
        assert sign * q[3] > 0.2
        assert np.linalg.norm(leg_fk(side, q) - target) < TOL_M


def test_legs_mirror_each_other() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        q = flat_leg_angles("right", tuple(rng.uniform(0.0, 1.0, 4)))  # type: ignore[arg-type]
        assert q is not None
        p = leg_fk("right", q)
        mirrored = np.array([p[0], -p[1], p[2]])
        try:
            ql = leg_ik("left", mirrored, -_yaw_of("right", q))
        except IKError:
            continue  # the limits are not exactly mirrored (ankle pitch)
        assert np.linalg.norm(leg_fk("left", ql) - mirrored) < TOL_M


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "target", "mm"),
    [
        ("right", (0.3, 0.0, -0.1), "(300.0, 0.0, -100.0) mm"),
        ("left", (0.0, 0.2, -0.15), "(0.0, 200.0, -150.0) mm"),
        ("right", (0.0025, -0.0216, 0.010), "(2.5, -21.6, 10.0) mm"),  # above the hip
        ("left", (0.0, 0.02, -0.03), "(0.0, 20.0, -30.0) mm"),  # above the hip roll axis
        ("right", (0.0025, -0.0216, -0.40), "(2.5, -21.6, -400.0) mm"),  # far below
    ],
)
def test_unreachable_target_names_the_target_in_mm(side: Side, target: tuple, mm: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(IKError) as info:
        leg_ik(side, target)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PlendError)
    assert mm in str(info.value)
    assert side in str(info.value)


def _offset(side: Side, dx: float, dy_out: float, dz: float) -> np.ndarray:
    out = -1.0 if side == "right" else 1.0
    return np.array(sole_zero_position(side)) + np.array([dx, out * dy_out, dz])


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("case", "joint_pos", "dx", "dy_out", "dz", "yaw"),
    [
        ("hip yaw", 0, 0.0, 0.0, 0.01, 2.0),
        ("hip roll outward", 1, 0.0, 0.03, 0.01, 0.0),
        ("hip pitch lifting the foot high", 2, 0.0, 0.0, 0.05, 0.0),
        ("ankle roll inward", 5, 0.0, -0.04, 0.02, 0.0),
    ],
)
def test_target_past_a_limit_names_the_joint(
    side: Side, case: str, joint_pos: int, dx: float, dy_out: float, dz: float, yaw: float
) -> None:
    target = _offset(side, dx, dy_out, dz)
    with pytest.raises(IKError) as info:
        leg_ik(side, target, yaw)
    name = LEG_JOINT_NAMES[side][joint_pos]
    message = str(info.value)
    assert name in message, (case, message)
    assert f"({', '.join(f'{1000 * v:.1f}' for v in target)}) mm" in message


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("target", "yaw"),
    [
        ((math.nan, 0.0, -0.15), 0.0),
        ((0.0, math.nan, -0.15), 0.0),
        ((0.0, 0.0, math.nan), 0.0),
        ((0.0, 0.0, math.inf), 0.0),
        ((0.0, -math.inf, -0.15), 0.0),
        ((0.0025, 0.0, -0.15), math.nan),
        ((0.0025, 0.0, -0.15), math.inf),
    ],
)
def test_non_finite_input_raises_ikerror(side: Side, target: tuple, yaw: float) -> None:  # type: ignore[type-arg]
    # Must be the IKError, not a math domain error (also a ValueError).
    with pytest.raises(IKError, match="not finite"):
        leg_ik(side, target, yaw)


def test_bad_side_is_refused() -> None:
    with pytest.raises(ValueError, match="side"):
        leg_ik("middle", (0.0, 0.0, -0.15))  # type: ignore[arg-type]


# -- agreement with the URDF model -----------------------------------------------------------


def _quat_matrix(q: tuple[float, float, float, float]) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@contextmanager
def _fixed_model() -> Iterator[tuple[Any, int, int, dict[str, int], dict[str, int]]]:
    import pybullet as pb

    c = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(urdf_path()), [0, 0, 0], [0, 0, 0, 1], useFixedBase=True, physicsClientId=c)
        joints, links = {}, {}
        for i in range(pb.getNumJoints(body, physicsClientId=c)):
            info = pb.getJointInfo(body, i, physicsClientId=c)
            joints[info[1].decode()] = i
            links[info[12].decode()] = i
        yield pb, c, body, joints, links
    finally:
        pb.disconnect(physicsClientId=c)


@pytest.mark.parametrize("side", SIDES)
def test_ik_agrees_with_the_urdf_model(side: Side) -> None:
    rng = np.random.default_rng(99 if side == "right" else 98)
    centre = np.array(sole_zero_position(side))
    offset = np.array(sole_offset(side))
    with _fixed_model() as (pb, c, body, joints, links):
        indices = [joints[n] for n in LEG_JOINT_NAMES[side]]
        foot = links[FOOT_LINKS[side]]
        checked, worst, worst_tilt = 0, 0.0, 0.0
        for _ in range(20000):
            target = centre + rng.uniform([-0.035, -0.02, 0.0], [0.035, 0.02, 0.035])
            yaw = float(rng.uniform(-0.6, 0.6))
            try:
                q = leg_ik(side, target, yaw)
            except IKError:
                continue
            for i, a in zip(indices, q, strict=True):
                pb.resetJointState(body, i, float(a), physicsClientId=c)
            state = pb.getLinkState(body, foot, computeForwardKinematics=True, physicsClientId=c)
            rot = _quat_matrix(state[5])
            sole = np.asarray(state[4]) + rot @ offset
            worst = max(worst, float(np.linalg.norm(sole - target)))
            # The sole is level and turned by the asked yaw.
            cy, sy = math.cos(yaw), math.sin(yaw)
            want = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
            worst_tilt = max(worst_tilt, float(np.abs(rot - want).max()))
            checked += 1
            if checked >= 1000:
                break
    assert checked >= 1000
    assert worst < TOL_M
    assert worst_tilt < 1e-5
