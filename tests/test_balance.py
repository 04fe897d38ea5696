"""The balance layer: what each feedback does with the IMU, its limits and its config."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gaits.balance import GAIN_RANGES, SINE_GAINS, Balance, BalanceError, BalanceGains
from gaits.sine import SpeedMap, foot_targets, joint_limits, joint_targets, stand_pose
from gaits.walker import SineGait
from plend.control.safety import SafetyFilter
from plend.core.config import ConfigError, GaitConfig, from_dict
from plend.hal.base import ImuReading, Sensors
from plend.model.robot import JOINT_NAMES, joint_index

DT = 0.02
ANKLE_ROLL = [joint_index("r_ankle_r_foot"), joint_index("l_ankle_l_foot")]
ANKLE_PITCH = [joint_index("r_shin_r_ankle"), joint_index("l_shin_l_ankle")]


def reading(t: float, roll: float = 0.0, pitch: float = 0.0, gyro: tuple[float, float] = (0, 0)) -> Sensors:
    imu = ImuReading((1.0, 0.0, 0.0, 0.0), (roll, pitch, 0.0), (gyro[0], gyro[1], 0.0), (0.0, 0.0, 9.81))
    return Sensors(t, stand_pose(), imu, (True, True))


def hold(balance: Balance, seconds: float, start: float = 0.0, **imu: object) -> float:
    """Feed ``balance`` the same IMU reading for ``seconds``; return the time reached."""
    t = start
    for _ in range(round(seconds / DT)):
        t += DT
        balance.observe(reading(t, **imu))  # type: ignore[arg-type]
    return t


def test_config_defaults_are_the_balance_defaults() -> None:
    assert GaitConfig().balance_gains() == BalanceGains(), "what policies trained on"
    assert GaitConfig().sine_gains() == SINE_GAINS
    assert set(GAIN_RANGES) <= {f.name for f in dataclasses.fields(GaitConfig)}


@pytest.mark.parametrize(("key", "value"), [("roll_rate_gain", 5.0), ("max_level_m", -0.001),
                                            ("max_duty", 0.95), ("mean_tau_s", float("nan"))])  # fmt: skip
def test_bad_gains_are_refused_with_the_key_and_range(key: str, value: float) -> None:
    expected = rf"gait\.{key} .*(out of range; use a value in \[|must be a number)"
    with pytest.raises(ConfigError, match=expected):
        from_dict({"gait": {key: value}})
    with pytest.raises(BalanceError, match=rf"{key} = .* is out of range \["):
        BalanceGains(**{key: value})


def test_balance_false_in_the_config_walks_open_loop() -> None:
    from plend.control.behaviours import Walk

    assert Walk(0.5, config=from_dict({"gait": {"balance": False}}).gait).gait.balance is None
    assert Walk(0.5).gait.balance is not None, "on by default"
    with pytest.raises(ConfigError, match=r"gait\.balance must be true or false"):
        from_dict({"gait": {"balance": "yes"}})


def test_ankles_turn_against_the_roll_and_pitch_rates() -> None:
    balance = Balance(BalanceGains(roll_rate_gain=0.1, pitch_rate_gain=0.05))
    hold(balance, 0.1, gyro=(1.0, 0.0))
    moved = np.flatnonzero(balance.offsets)
    assert set(moved) == set(ANKLE_ROLL), "only the ankle roll joints move"
    # Both ankle roll axes point along -x: the same rotation is the same joint angle.
    assert balance.offsets[ANKLE_ROLL] == pytest.approx([-0.1, -0.1])
    hold(balance, 0.1, start=1.0, gyro=(0.0, -2.0))
    # The ankle pitch axes are mirrored (+y right, -y left): opposite joint angles.
    assert balance.offsets[ANKLE_PITCH] == pytest.approx([-0.1, 0.1])
    assert balance.report()["ankle_pitch_deg"] == pytest.approx(math.degrees(-0.1), abs=0.01)


def test_ankle_offsets_stop_at_the_largest_correction() -> None:
    balance = Balance(BalanceGains(roll_rate_gain=0.3, max_correction_rad=0.1))
    hold(balance, 0.1, gyro=(50.0, 0.0))
    assert np.max(np.abs(balance.offsets)) == pytest.approx(0.1)


def test_a_torso_rolled_left_shortens_the_right_leg_until_level() -> None:
    balance = Balance()
    t = hold(balance, 1.0, roll=math.radians(-5.0))
    assert balance.level > 0.001, "right sole carried higher"
    hold(balance, 20.0, start=t, roll=math.radians(-5.0))
    assert balance.level == pytest.approx(BalanceGains().max_level_m), "and no further than its limit"
    params = balance.shape(SpeedMap().params(0.5))
    feet = foot_targets(0.3, params)
    plain = foot_targets(0.3, dataclasses.replace(params, level_m=0.0))
    assert feet["right"][0][2] - plain["right"][0][2] == pytest.approx(params.level_m / 2)
    assert feet["left"][0][2] - plain["left"][0][2] == pytest.approx(-params.level_m / 2)


def test_lean_follows_a_pitch_beyond_the_dead_band_only() -> None:
    small = Balance()
    hold(small, 5.0, pitch=math.radians(-1.5))  # a walk pitches this much by itself
    assert small.lean == 0.0
    tipping = Balance()
    hold(tipping, 1.0, pitch=math.radians(-6.0))  # tipping backwards
    assert tipping.lean > 0.001
    shaped = tipping.shape(SpeedMap().params(0.5))
    assert shaped.lean_m == pytest.approx(tipping.lean), "torso carried ahead of the feet"


def test_rocking_lengthens_double_support_and_steady_walking_gives_it_back() -> None:
    rocking = Balance()
    t = 0.0
    for _ in range(200):  # 4 s of +-8 degrees at 1.4 Hz
        t += DT
        rocking.observe(reading(t, roll=math.radians(8.0) * math.sin(2 * math.pi * 1.4 * t)))
    assert rocking.extra_duty > BalanceGains().start_duty
    steady = Balance()
    hold(steady, 1.0)
    assert 0.0 < steady.extra_duty < BalanceGains().start_duty
    params = SpeedMap().params(0.5)
    assert rocking.shape(params).duty > steady.shape(params).duty > params.duty
    hold(steady, 10.0, start=1.0)
    back = steady.shape(params)
    assert steady.extra_duty == 0.0 and back.duty == params.duty, "all given back"
    assert back.period_s == pytest.approx(params.period_s)


@pytest.mark.parametrize("speed", [0.0, 1.0])
def test_a_longer_double_support_slows_the_steps_but_not_the_swing(speed: float) -> None:
    plain = SpeedMap().params(speed)
    params = Balance(BalanceGains(start_duty=0.2, max_duty=0.85)).shape(plain)
    assert params.duty == pytest.approx(plain.duty + 0.2)
    assert (1.0 - params.duty) * params.period_s == pytest.approx((1.0 - plain.duty) * plain.period_s)
    assert params.period_s > plain.period_s


def test_the_first_step_waits_until_the_robot_stands_level() -> None:
    gait = SineGait(0.5, balance=Balance())
    t = 0.0
    for _ in range(30):  # standing tilted 6 degrees: levelling, not stepping
        t += DT
        gait.update(reading(t, roll=math.radians(-6.0)), DT)
    assert gait.phase == 0.0 and not gait.balance.ready  # type: ignore[union-attr]
    for _ in range(30):
        t += DT
        gait.update(reading(t), DT)
    assert gait.balance.ready and gait.phase > 0.0  # type: ignore[union-attr]


def test_a_robot_that_never_levels_still_walks_after_settle_max_s() -> None:
    gait = SineGait(0.5, balance=Balance(BalanceGains(settle_max_s=1.0)))
    t = 0.0
    for _ in range(80):
        t += DT
        gait.update(reading(t, roll=math.radians(-15.0)), DT)
    assert gait.phase > 0.0


def test_time_comes_from_the_readings_stamps() -> None:
    balance = Balance()
    for _ in range(50):  # the same reading again and again: no time passes
        balance.observe(reading(1.0, roll=math.radians(-5.0)))
    assert balance.level == 0.0
    balance.observe(reading(100.0, roll=math.radians(-5.0)))  # after a stall
    assert 0.0 < balance.level < 0.001, "a long gap counts as at most 0.1 s"


def test_without_sensors_nothing_changes() -> None:
    gait = SineGait(0.5, balance=Balance(BalanceGains(settle_max_s=0.0)))
    q = gait.update(None, DT)
    assert np.all(np.isfinite(q))


def test_targets_past_a_limit_are_left_to_the_safety_filter() -> None:
    lower, upper = joint_limits()
    params = dataclasses.replace(SpeedMap().params(1.0), level_m=0.012, crouch_m=0.012)
    q = joint_targets(0.2, params, check_limits=False)
    outside = (q < lower) | (q > upper)
    assert outside.any(), "this much levelling asks a knee for more than it has"
    safety = SafetyFilter(DT)
    safety.reset(q)
    safe = safety.apply(q)
    assert np.all(safe >= lower) and np.all(safe <= upper)
    assert safety.counts.limit == int(outside.sum())
    names = [JOINT_NAMES[i] for i in np.flatnonzero(outside)]
    assert all("knee" in n or "thigh" in n for n in names), names
