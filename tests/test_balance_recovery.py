"""The balance layer's recovery, its pitch feedback on the suite, and the gains a policy's
gait keeps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gaits.balance import RETUNED, SINE_GAINS, Balance, BalanceError, BalanceGains, trained_gains
from gaits.ik import IKError, leg_ik
from gaits.sine import joint_targets
from gaits.walker import HALT_S, SineGait
from plend.core.config import Config, ConfigError, GaitConfig, from_dict
from plend.daemon.headless import RunOptions, run
from plend.model.worlds import draw_world
from tests.test_balance import DT, reading

RECOVERING = BalanceGains(recover_deg=12.0, recover_s=0.5, settle_max_s=0.0)


def walk(gait: SineGait, seconds: float, start: float = 0.0, **imu: object) -> float:
    t = start
    for _ in range(round(seconds / DT)):
        t += DT
        gait.update(reading(t, **imu), DT)  # type: ignore[arg-type]
    return t


def test_a_dangerous_tilt_stops_the_steps_and_stands_until_it_has_passed() -> None:
    gait = SineGait(0.5, balance=Balance(RECOVERING))
    t = walk(gait, 2.0)
    assert gait.envelope == pytest.approx(1.0), "walking at full amplitude"
    t = walk(gait, 0.1, t, pitch=math.radians(-15.0))
    balance = gait.balance
    assert balance is not None and balance.recovering
    phase = gait.phase
    t = walk(gait, HALT_S, t, pitch=math.radians(-15.0))
    assert gait.phase == phase, "no step while the tilt is dangerous"
    assert gait.envelope == 0.0, "both feet down: the stand pose"
    q = gait.update(reading(t + DT, pitch=math.radians(-15.0)), DT) - balance.offsets
    standing = joint_targets(0.0, balance.shape(gait.params), 0.0, check_limits=False)
    assert np.allclose(q, standing), "the stand pose, levelled and leant as the balance says"
    # Half the threshold is not calm enough; below it, recover_s of calm resumes the walk.
    t = walk(gait, 1.0, t, pitch=math.radians(-8.0))
    assert balance.recovering
    t = walk(gait, 0.6, t, pitch=math.radians(-2.0))
    assert not balance.recovering
    t = walk(gait, 1.0, t)
    assert gait.phase != phase and gait.envelope > 0.5, "stepping again"
    report = gait.report()["balance"]
    assert report["recoveries"] == 1 and report["recovering"] is False


def test_recovery_off_never_stops_the_steps() -> None:
    gait = SineGait(0.5, balance=Balance(dataclasses.replace(RECOVERING, recover_deg=0.0)))
    t = walk(gait, 1.0)
    phase = gait.phase
    walk(gait, 0.5, t, roll=math.radians(30.0))
    assert gait.phase != phase and not gait.balance.recovering  # type: ignore[union-attr]


def test_stop_during_a_recovery_ends_standing() -> None:
    gait = SineGait(0.5, balance=Balance(RECOVERING))
    t = walk(gait, 1.0)
    gait.stop()
    walk(gait, 1.0, t, roll=math.radians(20.0))
    assert gait.standing


def test_the_sine_gait_gets_the_new_gains_and_a_policy_the_ones_it_learnt_on() -> None:
    config = GaitConfig()
    assert config.sine_gains() == SINE_GAINS
    retuned = {"pitch_rate_gain", "recover_deg", "recover_back_deg", "max_lean_back_m", "lean_ahead_m"}
    assert set(RETUNED) == retuned
    # A policy whose metadata names no gains walks on the balanced gait it trained on.
    assert config.balance_gains() == BalanceGains()
    assert config.balance_gains().recover_deg == 0.0, "no recovery under an old policy"
    # A key the user sets applies where it is not retuned; a recorded one wins.
    tuned = GaitConfig(roll_rate_gain=0.08, pitch_rate_gain=0.1)
    assert tuned.balance_gains().roll_rate_gain == 0.08
    assert tuned.balance_gains().pitch_rate_gain == BalanceGains().pitch_rate_gain
    assert tuned.balance_gains({"pitch_rate_gain": 0.07}).pitch_rate_gain == 0.07
    assert tuned.sine_gains().pitch_rate_gain == 0.1


def test_recorded_gains_are_checked() -> None:
    with pytest.raises(BalanceError, match=r"unknown balance gain.*bogus_gain; known: roll_rate_gain"):
        trained_gains(SINE_GAINS, {"bogus_gain": 1.0})
    with pytest.raises(BalanceError, match=r"recover_deg = 99.* out of range \[0.0, 45.0\]"):
        trained_gains(SINE_GAINS, {"recover_deg": 99.0})


@pytest.mark.parametrize(("key", "value"), [("recover_deg", 50.0), ("recover_s", 0.0), ("recover_deg", "x")])
def test_bad_recovery_keys_are_refused_with_the_range(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"gait\.{key} "):
        from_dict({"gait": {key: value}})


def test_feedback_past_the_legs_span_straightens_the_leg_instead_of_stopping_the_walk() -> None:
    far = np.array([-0.0192, -0.0254, -0.1541])  # a stride, a lean and a levelled sole
    with pytest.raises(IKError, match="out of reach"):
        leg_ik("left", far)
    q = leg_ik("left", far, check_limits=False)
    assert np.all(np.isfinite(q))
    with pytest.raises(IKError, match="above the hip"):
        leg_ik("left", np.array([0.0, 0.03, 0.01]), check_limits=False)


def _walk_world(seed: int, gait: GaitConfig, seconds: float) -> dict[str, object]:
    config = dataclasses.replace(Config(), sim=draw_world(seed), gait=gait)
    return run(config, RunOptions(speed=0.5, duration_s=seconds, fast=True))


def test_a_world_that_fell_now_walks() -> None:
    """World 65 of the suite (soles 5.6 mm apart with 5.4 mm rounded edges, the torso's
    mass 3.5 mm behind) fell at 3 s on the gains policies learnt on; on the sine gait's
    (ankle pitch damping, the backward recovery) it stands twice, pitched back, and walks on."""
    before = _walk_world(65, dataclasses.replace(GaitConfig(), **dataclasses.asdict(BalanceGains())), 4.0)
    assert before["fell"] and before["time_to_fall_s"] < 4.0  # type: ignore[operator]
    after = _walk_world(65, GaitConfig(), 8.0)
    assert not after["fell"] and after["distance_m"] > 0.05  # type: ignore[operator]


def test_status_says_when_the_gait_stands_to_recover() -> None:
    from plend.cli.status_text import gait_lines

    gait = SineGait(0.5, balance=Balance(RECOVERING))
    t = walk(gait, 1.0)
    assert not any(line.startswith("recovery") for line in gait_lines(gait.report()))
    walk(gait, 0.2, t, roll=math.radians(25.0))
    lines = gait_lines(gait.report())
    assert "recovery  standing until the tilt passes  (1 so far)" in lines
