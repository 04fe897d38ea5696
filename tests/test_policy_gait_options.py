"""The gait under a residual policy: the stride exponent and heading averaging it trained
with, recorded by name, so the gait under a policy is the gait it learnt on."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gaits.sine import stand_pose
from gaits.walker import SineGait
from plend.control.behaviours import make_gait
from plend.core.config import GaitConfig
from plend.hal.base import ImuReading, Sensors
from policies.contract import PolicyError, PolicySpec
from policies.env import make_spec
from policies.runner import _session, policy_gait, read_spec

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "walk.onnx"
TODAY = make_spec(balance=True)
DT = 0.02


def _targets(gait: SineGait, seconds: float = 6.0) -> np.ndarray:
    """Joint targets of ``gait`` on a robot whose heading swings within each step and drifts."""
    rows = []
    for i in range(round(seconds / DT)):
        t = (i + 1) * DT
        yaw = 0.02 * t + 0.05 * math.sin(2.0 * math.pi * t / 0.7)
        imu = ImuReading((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, yaw), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
        rows.append(gait.update(Sensors(t, stand_pose(), imu, (True, True)), DT))
    return np.asarray(rows)


def _old(spec: PolicySpec) -> PolicySpec:
    """``spec`` as a file written before gait_options existed reads."""
    data = json.loads(spec.to_json())
    data.pop("gait_options", None)
    return PolicySpec.from_json(json.dumps(data))


def test_a_new_policy_records_the_gaits_stride_exponent_and_heading_averaging() -> None:
    config = GaitConfig()
    recorded = {"stride_exponent": config.stride_exponent, "heading_average": config.heading_average}
    assert TODAY.gait_options == recorded
    assert TODAY.gait_options["stride_exponent"] < 1.0 and TODAY.gait_options["heading_average"] is True
    assert json.loads(TODAY.to_json())["gait_options"]["heading_average"] is True
    assert PolicySpec.from_json(TODAY.to_json()) == TODAY


def test_a_new_policy_walks_on_the_sine_gait_as_the_daemon_runs_it() -> None:
    under_policy = _targets(policy_gait(TODAY, command=(0.5, 0.0, 0.0)))
    sine = _targets(make_gait(0.5, config=GaitConfig()))
    assert np.allclose(under_policy, sine), "the policy trains and runs on the gait walking alone"
    old = _targets(policy_gait(_old(TODAY), command=(0.5, 0.0, 0.0)))
    assert np.abs(old - sine).max() > 1e-3, "a policy without the options walks on the older gait"


def test_a_policy_without_recorded_options_keeps_the_gait_it_learnt_on() -> None:
    spec = _old(TODAY)
    assert spec.gait_options == {} and "gait_options" not in json.loads(spec.to_json())
    gait = policy_gait(spec, GaitConfig(stride_exponent=0.5, heading_average=True))
    assert gait.speed_map.stride_exponent == 1.0, "stride in proportion to speed, whatever [gait] says"
    assert gait.heading_average is False, "the heading sampled at step boundaries"
    assert gait.speed_map.params(0.5).stride_m == pytest.approx(0.5 * gait.speed_map.max_stride_m)


def test_recorded_options_win_over_the_config() -> None:
    gait = policy_gait(TODAY, GaitConfig(stride_exponent=1.0, heading_average=False))
    assert gait.speed_map.stride_exponent == TODAY.gait_options["stride_exponent"]
    assert gait.heading_average is True
    one = dataclasses.replace(TODAY, gait_options={"heading_average": True})
    assert policy_gait(one).speed_map.stride_exponent == 1.0, "one it does not record: as before it existed"


def test_the_shipped_policy_walks_on_the_gait_its_metadata_records() -> None:
    spec = read_spec(SHIPPED, _session(SHIPPED))
    gait = policy_gait(spec)
    assert gait.speed_map.stride_exponent == spec.gait_option("stride_exponent")
    assert gait.heading_average is spec.gait_option("heading_average")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stride_length": 1.0}, r"gait_options: unknown option\(s\) stride_length; known: stride_exponent"),
        ({"stride_exponent": 2.0}, r"gait_options: stride_exponent 2.0 is out of range \[0.5, 1.0\]"),
        ({"stride_exponent": float("nan")}, r"stride_exponent nan is out of range"),
        ({"stride_exponent": "0.75"}, r"stride_exponent '0.75' is out of range"),
        ({"stride_exponent": True}, r"stride_exponent True is out of range"),
        ({"heading_average": "yes"}, r"gait_options: heading_average must be true or false, got 'yes'"),
        ({"heading_average": 1}, r"heading_average must be true or false, got 1"),
    ],
)
def test_bad_recorded_options_are_refused_at_load(options: dict[str, object], message: str) -> None:
    data = json.loads(TODAY.to_json())
    data["gait_options"] = options
    with pytest.raises(PolicyError, match=message) as caught:
        PolicySpec.from_json(json.dumps(data))
    assert "\n" not in str(caught.value)


def test_malformed_or_misplaced_options_are_refused() -> None:
    data = json.loads(TODAY.to_json())
    for bad in ([0.75, True], "stride_exponent", None):
        data["gait_options"] = bad
        with pytest.raises(PolicyError, match="metadata is malformed"):
            PolicySpec.from_json(json.dumps(data))
    absolute = dataclasses.replace(
        TODAY, action_mode="absolute", action_offset=(0.0,) * len(TODAY.action_joints), commands={}
    )
    with pytest.raises(PolicyError, match="gait_options need a residual policy"):
        absolute.validate()
