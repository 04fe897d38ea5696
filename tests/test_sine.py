"""The sine gait: bounds, continuity, validation, start/stop and speed changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gaits.sine import GaitError, GaitParams, SpeedMap, foot_targets, joint_limits, joint_targets, stand_pose
from gaits.walker import SineGait

LOWER, UPPER = joint_limits()
SERVO_SPEED = 9.5  # rad/s, the servo's no-load speed
DT = 0.02

speeds = st.floats(-1.0, 1.0, allow_nan=False)
phases = st.floats(0.0, 1.0, allow_nan=False, exclude_max=True)
turns = st.floats(-0.12, 0.12, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(speed=speeds, phase=phases, envelope=st.floats(0.0, 1.0), turn=turns)
def test_targets_stay_inside_joint_limits(speed: float, phase: float, envelope: float, turn: float) -> None:
    q = joint_targets(phase, SpeedMap().params(speed, turn), envelope)
    assert np.all(q >= LOWER) and np.all(q <= UPPER)


@settings(max_examples=300, deadline=None)
@given(speed=speeds, phase=phases)
def test_trajectories_are_continuous_in_phase(speed: float, phase: float) -> None:
    params = SpeedMap().params(speed)
    a = joint_targets(phase, params)
    b = joint_targets((phase + 1e-4) % 1.0, params)
    assert np.max(np.abs(a - b)) < 0.01


def test_wraps_around_without_a_jump() -> None:
    params = SpeedMap().params(0.7)
    assert np.allclose(joint_targets(0.0, params), joint_targets(1.0 - 1e-9, params), atol=1e-6)


def test_phases_have_double_and_single_support() -> None:
    params = SpeedMap().params(0.5)
    lifted: dict[str, list[float]] = {"right": [], "left": []}
    for k in range(200):
        feet = foot_targets(k / 200, params)
        base = foot_targets(k / 200, params, envelope=0.0)
        for side in lifted:
            lifted[side].append(feet[side][0][2] > base[side][0][2] + 1e-6)
    right, left = np.array(lifted["right"]), np.array(lifted["left"])
    assert not np.any(right & left), "both feet in the air at once"
    both_down = ~right & ~left
    assert 0.1 < both_down.mean() < 0.4, "double support should be a real part of the cycle"
    assert right.any() and left.any()


def test_torso_sways_over_the_standing_foot() -> None:
    params = SpeedMap().params(0.5)
    swing_mid = (1.0 - params.duty) / 4  # right foot mid-swing
    feet = foot_targets(swing_mid, params)
    # Right foot swinging: the torso is over the left foot, so both feet shift to -y.
    assert feet["left"][0][1] < foot_targets(swing_mid, params, 0.0)["left"][0][1]


@pytest.mark.parametrize(
    ("field", "value"),
    [("period_s", 0.1), ("lift_m", -0.01), ("duty", 0.4), ("stride_m", float("nan")), ("crouch_m", 0.05)],
)
def test_bad_parameters_are_refused_with_the_name(field: str, value: float) -> None:
    with pytest.raises(GaitError, match=field):
        GaitParams(**{field: value})


@pytest.mark.parametrize("speed", [1.5, -2.0, float("nan"), "fast", True])
def test_bad_speed_is_refused(speed: object) -> None:
    with pytest.raises(GaitError, match="speed"):
        SineGait(speed)  # type: ignore[arg-type]
    gait = SineGait(0.5)
    with pytest.raises(GaitError, match="speed"):
        gait.set_speed(speed)  # type: ignore[arg-type]
    assert gait.speed == 0.5


def _run(gait: SineGait, ticks: int) -> np.ndarray:
    return np.array([gait.update(None, DT) for _ in range(ticks)])


def test_starts_from_and_stops_at_the_stand_pose() -> None:
    gait = SineGait(0.8)
    first = gait.update(None, DT)
    assert np.max(np.abs(first - stand_pose())) < 0.05
    walking = _run(gait, 200)
    assert np.ptp(walking, axis=0).max() > 0.3, "the gait should actually move the legs"
    gait.stop()
    for _ in range(500):
        q = gait.update(None, DT)
        if gait.standing:
            break
    assert gait.standing
    assert np.allclose(q, stand_pose(), atol=1e-9)
    assert np.allclose(gait.update(None, DT), stand_pose(), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    changes=st.lists(st.tuples(st.integers(1, 60), speeds), min_size=1, max_size=6),
    first=speeds,
    stop=st.booleans(),
)
def test_speed_changes_stay_within_limits_and_servo_speed(
    changes: list[tuple[int, float]], first: float, stop: bool
) -> None:
    gait = SineGait(first)
    previous = stand_pose()
    for ticks, speed in changes:
        gait.set_speed(speed)
        for _ in range(ticks):
            q = gait.update(None, DT)
            assert np.all(q >= LOWER) and np.all(q <= UPPER)
            assert np.max(np.abs(q - previous)) <= SERVO_SPEED * DT
            previous = q
    if stop:
        gait.stop()
        for _ in range(200):
            q = gait.update(None, DT)
            assert np.max(np.abs(q - previous)) <= SERVO_SPEED * DT
            previous = q
        assert gait.standing


def test_new_speed_waits_for_the_next_step() -> None:
    gait = SineGait(0.2)
    _run(gait, 120)
    before = gait.params.stride_m
    gait.set_speed(1.0)
    gait.update(None, DT)
    assert gait.params.stride_m == pytest.approx(before), "speed must not change mid-step"
    _run(gait, 60)
    assert gait.params.stride_m == pytest.approx(SpeedMap().params(1.0).stride_m)


def test_heading_hold_turns_back_toward_the_start_heading() -> None:
    from plend.hal.base import ImuReading, Sensors

    def sensors(yaw: float) -> Sensors:
        imu = ImuReading((1, 0, 0, 0), (0.0, 0.0, yaw), (0, 0, 0), (0, 0, 9.81))
        return Sensors(0.0, stand_pose(), imu, (True, True))

    gait = SineGait(0.5, heading_gain=0.5)
    gait.update(sensors(0.0), DT)
    for _ in range(100):
        gait.update(sensors(-0.2), DT)  # drifted right
    assert gait.params.turn_rad > 0.0, "should steer left"


sides = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(speed=speeds, turn=st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]), side=sides, phase=phases)
def test_any_command_stays_inside_the_limits_and_keeps_the_feet_apart(
    speed: float, turn: float, side: float, phase: float
) -> None:
    speed_map = SpeedMap()
    params = speed_map.params(speed, speed_map.turn_rad(turn), side)
    q = joint_targets(phase, params)
    assert np.all(q >= LOWER) and np.all(q <= UPPER)
    feet = foot_targets(phase, params)
    stand = foot_targets(phase, params, envelope=0.0)
    spacing = feet["left"][0][1] - feet["right"][0][1]
    assert spacing >= stand["left"][0][1] - stand["right"][0][1] - 1e-9, "the soles would touch"


def test_side_steps_move_the_standing_foot_the_other_way() -> None:
    params = dataclasses.replace(SpeedMap().params(0.0, 0.0, 1.0), sway_m=0.0)  # to the left
    # Late in its stance the right foot has been carried right of where it landed.
    early, late = (foot_targets(u, params)["right"][0][1] for u in (0.45, 0.95))
    assert late < early - 0.002


@pytest.mark.parametrize("name", ["turn", "side"])
@pytest.mark.parametrize("value", [1.5, -1.01, float("nan"), float("inf"), "left", True])
def test_bad_turn_or_side_is_refused_with_the_range(name: str, value: object) -> None:
    with pytest.raises(GaitError, match=rf"{name}.*\[-1, 1\]"):
        SineGait(0.5, **{name: value})  # type: ignore[arg-type]
    gait = SineGait(0.5, turn=0.5)
    command = {"speed": 0.5, "turn": 0.5, "side": 0.0, name: value}
    with pytest.raises(GaitError, match=name):
        gait.set_command(**command)  # type: ignore[arg-type]
    _run(gait, 60)
    assert (gait.speed, gait.turn, gait.side) == (0.5, 0.5, 0.0), "a refused command changes nothing"


def test_turn_and_side_wait_for_the_next_step() -> None:
    gait = SineGait(0.5)
    _run(gait, 120)
    gait.set_command(0.5, turn=1.0, side=-1.0)
    gait.update(None, DT)
    assert gait.params.turn_rad == 0.0 and gait.params.side_m == 0.0, "no change mid-step"
    _run(gait, 60)
    assert gait.params.turn_rad == pytest.approx(SpeedMap().max_turn_rad)
    assert gait.params.side_m == pytest.approx(-SpeedMap().turning_side_m)


def _sensors(yaw: float):  # type: ignore[no-untyped-def]
    from plend.hal.base import ImuReading, Sensors

    imu = ImuReading((1, 0, 0, 0), (0.0, 0.0, yaw), (0, 0, 0), (0, 0, 9.81))
    return Sensors(0.0, stand_pose(), imu, (True, True))


def test_heading_hold_keeps_the_heading_a_turn_ended_on() -> None:
    gait = SineGait(0.5, turn=1.0)
    gait.update(_sensors(0.0), DT)
    for _ in range(100):
        gait.update(_sensors(0.0), DT)
    assert gait.params.turn_rad == pytest.approx(SpeedMap().max_turn_rad), "a commanded turn is not held back"
    for _ in range(100):
        gait.update(_sensors(1.0), DT)  # turned left by a radian
    gait.set_command(0.5, turn=0.0)
    for _ in range(100):
        gait.update(_sensors(1.0), DT)
    assert gait.params.turn_rad == pytest.approx(0.0), "holds the new heading, does not turn back"
    for _ in range(100):
        gait.update(_sensors(0.9), DT)  # drifted right of it
    assert gait.params.turn_rad > 0.0
