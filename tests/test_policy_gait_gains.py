"""The gait under a residual policy: the balance gains it trained with, recorded by name."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from gaits.balance import GAIN_RANGES, RETUNED, SINE_GAINS, Balance, BalanceGains
from gaits.walker import SineGait
from plend.core.config import GaitConfig
from policies.contract import PolicyError, PolicySpec
from policies.env import make_spec
from policies.runner import _session, policy_gait, read_spec
from tests.test_balance import DT, reading

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "walk.onnx"
TODAY = make_spec(balance=True)


def _walk(gait: SineGait, seconds: float, roll_deg: float = 0.0, t: float = 0.0) -> float:
    for _ in range(round(seconds / DT)):
        t += DT
        gait.update(reading(t, roll=math.radians(roll_deg)), DT)
    return t


def _balance(gait: SineGait) -> Balance:
    assert gait.balance is not None
    return gait.balance


def test_a_new_policy_records_every_balance_gain_of_todays_gait_by_name() -> None:
    assert set(TODAY.gait_gains) == set(GAIN_RANGES)
    assert TODAY.gait_gains == {n: getattr(GaitConfig().sine_gains(), n) for n in GAIN_RANGES}
    assert TODAY.gait_gains["recover_deg"] > 0.0 and TODAY.gait_gains["pitch_rate_gain"] > 0.0
    assert make_spec(balance=False).gait_gains == {}, "the open-loop gait has no balance gains"
    data = json.loads(TODAY.to_json())
    assert data["gait_gains"]["recover_deg"] == GaitConfig().recover_deg
    assert PolicySpec.from_json(TODAY.to_json()) == TODAY


def test_the_gait_under_a_new_policy_is_todays_with_its_recovery() -> None:
    gait = policy_gait(TODAY)
    assert _balance(gait).gains == SINE_GAINS
    t = _walk(gait, 1.0)
    _walk(gait, 0.2, roll_deg=30.0, t=t)
    assert _balance(gait).recovering, "a tilt past 20 deg stands the robot, as the sine gait does"


def test_a_policy_without_recorded_gains_walks_on_the_gait_it_learnt_on() -> None:
    # A file written before gait_gains existed: the shipped policy's metadata without the key.
    data = json.loads(read_spec(SHIPPED, _session(SHIPPED)).to_json())
    data.pop("gait_gains", None)
    spec = PolicySpec.from_json(json.dumps(data))
    assert spec.gait_balance and spec.gait_gains == {}
    gait = policy_gait(spec)
    assert _balance(gait).gains == BalanceGains(), "the balanced gait policies first learnt on"
    t = _walk(gait, 1.0)
    _walk(gait, 0.2, roll_deg=30.0, t=t)
    assert not _balance(gait).recovering, "no recovery: it did not learn with one"
    assert "gait_gains" not in json.loads(spec.to_json()), "an old file's metadata reads back unchanged"


def test_the_shipped_policy_walks_on_the_gait_it_records() -> None:
    spec = read_spec(SHIPPED, _session(SHIPPED))
    gains = _balance(policy_gait(spec)).gains
    assert spec.gait_gains["recover_deg"] > 0.0, "it learnt on the gait with the recovery"
    assert all(getattr(gains, name) == value for name, value in spec.gait_gains.items())
    # A gain retuned after it was recorded (one it does not name) stays at its original value.
    assert all(getattr(gains, n) == getattr(BalanceGains(), n) for n in set(RETUNED) - set(spec.gait_gains))


def test_a_gain_the_policy_does_not_record_stays_at_its_original_value() -> None:
    # A policy recorded before a gain was retuned (or before it existed) does not name it.
    recorded = {n: v for n, v in TODAY.gait_gains.items() if n != "recover_deg"}
    spec = dataclasses.replace(TODAY, gait_gains=recorded)
    gains = _balance(policy_gait(spec)).gains
    assert "recover_deg" in RETUNED and gains.recover_deg == BalanceGains().recover_deg
    assert gains.pitch_rate_gain == TODAY.gait_gains["pitch_rate_gain"] > 0.0, "the recorded one is kept"


def test_recorded_gains_win_over_the_config_and_the_others_follow_it() -> None:
    config = GaitConfig(roll_rate_gain=0.08, recover_deg=30.0)
    gains = _balance(policy_gait(TODAY, config)).gains
    recorded = TODAY.gait_gains
    assert (gains.roll_rate_gain, gains.recover_deg) == (recorded["roll_rate_gain"], recorded["recover_deg"])
    partial = dataclasses.replace(TODAY, gait_gains={"recover_deg": 20.0})
    gains = _balance(policy_gait(partial, config)).gains
    assert gains.roll_rate_gain == 0.08, "a gain it does not record and was not retuned: the config's"


@pytest.mark.parametrize(
    ("gains", "message"),
    [
        ({"bogus_gain": 1.0}, r"gait_gains: unknown balance gain\(s\) bogus_gain; known: roll_rate_gain"),
        ({"recover_deg": 99.0}, r"gait_gains: balance gain recover_deg = 99.0 is out of range \[0.0, 45.0\]"),
        ({"recover_s": float("nan")}, r"recover_s = nan is out of range"),
    ],
)
def test_bad_recorded_gains_are_refused_at_load(gains: dict[str, float], message: str) -> None:
    data = json.loads(TODAY.to_json())
    data["gait_gains"] = gains
    with pytest.raises(PolicyError, match=message):
        PolicySpec.from_json(json.dumps(data))


def test_malformed_or_misplaced_gains_are_refused() -> None:
    data = json.loads(TODAY.to_json())
    data["gait_gains"] = [0.05, 0.05]
    with pytest.raises(PolicyError, match="metadata is malformed"):
        PolicySpec.from_json(json.dumps(data))
    data["gait_gains"] = {"recover_deg": "twenty"}
    with pytest.raises(PolicyError, match="metadata is malformed"):
        PolicySpec.from_json(json.dumps(data))
    with pytest.raises(PolicyError, match="gait_gains need gait_balance"):
        dataclasses.replace(TODAY, gait_balance=False).validate()
