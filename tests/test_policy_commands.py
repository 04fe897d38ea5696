"""Policies that take walking commands: ranges in the metadata, refusals with the range,
the command reaching the gait and the observation, and a fair inference-time check."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("pybullet")

from plend.core.config import Config
from plend.core.errors import PlendError
from plend.daemon.headless import RunOptions, run
from plend.main import main as plend_main
from policies.commands import CommandSampler, command_at, parse_range, sine_reference
from policies.contract import PolicyError, PolicySpec
from policies.runner import PolicyBehaviour, load_runner
from policies.timing import time_inference
from tests.test_policy import COMMAND_SPEC, SPEC, save_model


@pytest.fixture
def steer(tmp_path: Path) -> Path:
    return save_model(tmp_path / "steer.onnx", COMMAND_SPEC, COMMAND_SPEC.observation_size, 12)


def test_command_ranges_round_trip_and_a_policy_without_them_takes_its_own_speed_only() -> None:
    assert PolicySpec.from_json(COMMAND_SPEC.to_json()) == COMMAND_SPEC
    assert json.loads(COMMAND_SPEC.to_json())["commands"] == {"speed": [0.0, 1.0], "turn": [-0.5, 0.5]}
    assert COMMAND_SPEC.check_command(1, -0.5, 0.0) == (1.0, -0.5, 0.0)
    assert SPEC.default_command() == (0.5, 0.0, 0.0)
    with pytest.raises(
        PolicyError, match=r"^speed 0.7 is outside what this policy was trained for: only 0.5$"
    ):
        SPEC.check_command(0.7, 0.0, 0.0)


@pytest.mark.parametrize(
    ("command", "message"),
    [((1.2, 0.0, 0.0), r"speed 1.2 .*: \[0, 1\]"), ((0.5, -0.6, 0.0), r"turn -0.6 .*: \[-0.5, 0.5\]"),
     ((0.5, 0.0, 0.2), "side 0.2 .*: only 0"), ((math.nan, 0.0, 0.0), r"speed nan .*: \[0, 1\]"),
     ((0.5, math.inf, 0.0), "turn inf")],
)  # fmt: skip
def test_a_command_outside_the_trained_ranges_is_refused_with_the_range(command: tuple, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        COMMAND_SPEC.check_command(*command)


@pytest.mark.parametrize(
    ("commands", "message"),
    [({"speed": (0.0, 2.0)}, "must lie within"), ({"speed": (0.5, 0.2)}, "low first"),
     ({"jump": (0.0, 1.0)}, "unknown command 'jump'")],
)  # fmt: skip
def test_bad_command_ranges_in_metadata_are_refused(commands: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        dataclasses.replace(COMMAND_SPEC, commands=commands).validate()


def test_a_policy_runs_on_the_heading_hold_it_trained_on() -> None:
    from policies.runner import policy_gait

    trained = dataclasses.replace(COMMAND_SPEC, gait_heading=(0.5, 0.05, 0.2))
    assert PolicySpec.from_json(trained.to_json()) == trained
    gait = policy_gait(trained)
    assert (gait.heading_gain, gait.heading_bias_gain, gait.max_turn_rad) == (0.5, 0.05, 0.2)
    old = policy_gait(SPEC)  # no record: the gait's original hold, which older policies learnt on
    assert (old.heading_gain, old.heading_bias_gain, old.max_turn_rad) == (0.5, 0.0, 0.12)
    with pytest.raises(PolicyError, match="gait_heading"):
        dataclasses.replace(COMMAND_SPEC, gait_heading=(0.5, 0.05)).validate()


def test_the_command_reaches_the_observation_and_the_gait_at_its_next_step(steer: Path) -> None:
    from gaits.sine import stand_pose
    from plend.core.config import SimWorld
    from plend.hal.sim import SimHal

    behaviour = PolicyBehaviour(load_runner(steer, 50.0, "sim", None))
    seen = []
    behaviour.runner.act = lambda obs: (seen.append(obs[0, -3:].copy()), np.zeros(12))[1]  # type: ignore[method-assign,assignment,func-returns-value]
    with SimHal(SimWorld(), initial_pose=stand_pose()) as hal:
        hal.open(0.02)
        behaviour.start(stand_pose())
        for tick in range(120):
            if tick == 40:
                behaviour.set_command(0.9, 0.3, 0.0)
            hal.write(behaviour.update(hal.read(), 0.02))
            if tick == 40:
                assert behaviour.report()["turn"] == 0.0, "the gait takes it at its next step"
    assert np.allclose(seen[0], [0.5, 0.0, 0.0]) and np.allclose(seen[-1], [0.9, 0.3, 0.0])
    assert behaviour.report()["speed"] == 0.9 and behaviour.report()["turn"] == 0.3
    with pytest.raises(PolicyError, match=r"speed -0\.1"):
        behaviour.set_command(-0.1, 0.0, 0.0)
    assert behaviour.command == (0.9, 0.3, 0.0), "a refused command changes nothing"


def test_a_driver_steers_a_policy_within_the_ranges_it_trained_for(steer: Path, tmp_path: Path) -> None:
    from plend.drive.lease import steer as drive_steer

    behaviour = PolicyBehaviour(load_runner(steer, 50.0, "sim", None))
    # A stick pushed past the ranges walks at their edges instead of being refused each update.
    assert drive_steer(behaviour, {"speed": 1.0, "turn": -1.0, "side": 0.7}) == ["speed", "turn"]
    assert behaviour.command == (1.0, -0.5, 0.0)
    assert drive_steer(behaviour, {"speed": -0.4, "turn": 0.2, "side": 0.0}) == ["speed", "turn"]
    assert behaviour.command == (0.0, 0.2, 0.0)
    one_speed = save_model(tmp_path / "one.onnx", SPEC, SPEC.observation_size, 12)
    fixed = PolicyBehaviour(load_runner(one_speed, 50.0, "sim", None))
    assert drive_steer(fixed, {"speed": 1.0, "turn": 0.5, "side": 0.0}) == []  # it walks as trained
    assert fixed.command == (0.5, 0.0, 0.0)


def test_plend_run_gives_the_policy_its_command_or_refuses_it(steer: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    summary = run(Config(), RunOptions(speed=0.25, turn=0.5, duration_s=4.0, fast=True, policy=steer))
    assert summary["yaw_deg"] > 5 and summary["walked_m"] > 0.02 and not summary["fell"]
    code = plend_main(["run", "--fast", "--policy", str(steer), "--speed", "0.5", "--turn", "0.9"])
    assert code != 0
    assert "turn 0.9 is outside what this policy was trained for: [-0.5, 0.5]" in capsys.readouterr().err


def ticks(*durations: float) -> Callable[[], float]:
    """A clock whose successive pairs of readings are ``durations`` apart, forever."""
    readings = itertools.cycle([v for d in durations for v in (0.0, d)])
    return lambda: next(readings)


def test_inference_is_measured_again_when_the_machine_is_busy_and_judged_by_its_cpu_time() -> None:
    waits: list[float] = []
    busy_then_calm = ticks(*([0.010] * 200 + [0.00002] * 200))
    timing = time_inference(
        lambda: None, 5.0, 200, clock=busy_then_calm, cpu_clock=ticks(2e-5), pause=waits.append
    )
    assert timing.attempts == 2 and len(waits) == 1 and timing.p99 == pytest.approx(0.02)
    assert timing.fits and not timing.tail_over


def test_a_busy_machine_alone_does_not_refuse_a_policy_that_fits() -> None:
    busy = ticks(0.008)  # every wall sample over the 5 ms budget: the machine, not the policy
    timing = time_inference(lambda: None, 5.0, 200, clock=busy, cpu_clock=ticks(2e-5), pause=lambda s: None)
    assert timing.attempts == 3 and timing.tail_over and timing.fits
    slow = time_inference(lambda: None, 5.0, 200, clock=busy, cpu_clock=ticks(0.006), pause=lambda s: None)
    assert not slow.fits


def test_the_load_reply_has_the_timing_figures(steer: Path) -> None:
    figures = load_runner(steer, 50.0, "sim", None).inference_ms
    assert 10 <= figures["runs"] <= 200, "stops once the verdict is clear"
    assert 0 < figures["cpu_p50"] <= figures["budget"] == 5.0
    assert figures["p50"] <= figures["p99"]


def test_command_schedules_stay_in_their_ranges_and_hold_for_seconds() -> None:
    sampler = CommandSampler({"speed": (0.0, 1.0), "turn": (-0.5, 0.5)})
    rng = np.random.default_rng(0)
    schedules = [sampler.draw(rng, 12.0) for _ in range(200)]
    commands = [c for s in schedules for _, c in s]
    assert all(0 <= s <= 1 and -0.5 <= t <= 0.5 and d == 0.0 for s, t, d in commands)
    assert 0.3 < np.mean([t == 0.0 for _, t, _ in commands]) < 0.7, "half go straight"
    for schedule in schedules:
        times = [t for t, _ in schedule]
        assert (
            times[0] == 0.0
            and times[-1] < 12.0
            and all(3.0 <= b - a <= 6.0 for a, b in itertools.pairwise(times))
        )
    schedule = ((0.0, (0.5, 0.0, 0.0)), (4.0, (1.0, 0.2, 0.0)))
    assert command_at(schedule, 3.99) == (0.5, 0.0, 0.0) and command_at(schedule, 4.0) == (1.0, 0.2, 0.0)


def test_the_reference_is_what_the_gait_does() -> None:
    assert sine_reference(0.5, 0.0, 0.0).forward_m_s == pytest.approx(0.031, abs=0.003)  # 0.62 m in 20 s
    assert sine_reference(-0.5, 0.0, 0.0).forward_m_s == -sine_reference(0.5, 0.0, 0.0).forward_m_s
    left, right = sine_reference(0.5, 0.5, 0.0).yaw_rate, sine_reference(0.5, -0.5, 0.0).yaw_rate
    assert left > 0.1 and right < -0.1
    assert sine_reference(0.5, 0.0, 1.0).side_m_s == pytest.approx(0.005)
    assert parse_range("turn", "-0.5,0.5") == (-0.5, 0.5) and parse_range("side", "0") == (0.0, 0.0)
    for bad in ("1,0", "0,2", "x", "0,1,2"):
        with pytest.raises(PlendError, match="--turn-range"):
            parse_range("turn", bad)
