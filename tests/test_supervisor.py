"""The supervisor and loop together on a fake robot: switching, e-stop, faults, safety."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gaits.sine import stand_pose
from plend.control.behaviours import Trajectory
from plend.control.loop import ControlLoop, StepClock
from plend.control.safety import SafetyFilter
from plend.control.supervisor import CommandError, Supervisor
from plend.core.config import SafetyConfig
from plend.hal.fake import FakeHal
from plend.model.robot import JOINT_NAMES, NUM_JOINTS, joint_limits

DT = 0.02
LOWER, UPPER = joint_limits()
SLEW = 9.0 * DT


def make(pose: np.ndarray | None = None, **safety: object) -> tuple[ControlLoop, Supervisor, FakeHal]:
    clock = StepClock()
    robot = FakeHal(clock, pose)
    config = SafetyConfig(**safety)  # type: ignore[arg-type]
    supervisor = Supervisor(config, DT)
    loop = ControlLoop(robot, supervisor, DT, SafetyFilter.from_config(config, DT), clock)
    loop.start()
    return loop, supervisor, robot


def hostile_trajectory(values: np.ndarray) -> Trajectory:
    return Trajectory(JOINT_NAMES, values, 50.0)


commands: st.SearchStrategy[tuple[str, dict[str, Any]]] = st.one_of(
    st.sampled_from(["stand", "relax", "stop", "estop", "reset", "policy_start"]).map(lambda n: (n, {})),
    st.floats(-1, 1).map(lambda s: ("gait", {"speed": s})),
    arrays(float, (5, NUM_JOINTS), elements=st.floats(-10, 10)).map(
        lambda a: ("replay", {"trajectory": hostile_trajectory(a)})
    ),
)


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.tuples(commands, st.integers(0, 40)), min_size=1, max_size=8))
def test_any_command_sequence_keeps_targets_inside_limits_and_slew(steps: list[Any]) -> None:
    loop, supervisor, robot = make()
    for (name, args), ticks in steps:
        with contextlib.suppress(CommandError):  # refusals are part of the test
            supervisor.handle(name, **args)
        loop.run(ticks + 1)
    last = None
    for written in robot.writes:
        if written is None:
            last = None
            continue
        assert np.all(written >= LOWER) and np.all(written <= UPPER)
        if last is not None:
            assert np.all(np.abs(written - last) <= SLEW + 1e-9)
        last = written


def test_switches_start_from_the_measured_pose() -> None:
    sagged = stand_pose() * 0.3  # where a relaxed robot might have sagged to
    loop, supervisor, robot = make(pose=sagged)
    supervisor.handle("gait", speed=0.5)
    loop.tick()
    assert np.max(np.abs(robot.last() - sagged)) < 0.05, "no jump toward a stale target"
    loop.run(200)
    assert supervisor.mode == "sine"


def test_stop_ends_walking_at_a_safe_point_and_stands() -> None:
    loop, supervisor, robot = make()
    supervisor.handle("gait", speed=1.0)
    loop.run(150)
    supervisor.handle("stop")
    assert supervisor.mode == "sine", "stop waits for the next step boundary"
    loop.run(150)
    assert supervisor.mode == "stand"
    assert np.allclose(robot.last(), stand_pose(), atol=1e-6)


def test_estop_relaxes_at_once_and_latches_until_reset() -> None:
    loop, supervisor, robot = make()
    supervisor.handle("gait", speed=0.5)
    loop.run(50)
    supervisor.handle("estop")
    loop.tick()
    assert robot.writes[-1] is None and supervisor.mode == "estop"
    for name, args in (("stand", {}), ("gait", {"speed": 0.2})):
        with pytest.raises(CommandError, match="e-stop is latched"):
            supervisor.handle(name, **args)
    loop.run(10)
    assert all(w is None for w in robot.writes[-10:])
    supervisor.handle("reset")
    assert supervisor.mode == "relax"
    supervisor.handle("stand")
    loop.run(60)
    assert supervisor.mode == "stand" and robot.writes[-1] is not None


def test_reset_with_nothing_latched_leaves_a_standing_robot_standing() -> None:
    loop, supervisor, robot = make()
    supervisor.handle("stand")
    loop.run(60)
    supervisor.handle("reset")
    loop.run(5)
    assert supervisor.mode == "stand" and robot.writes[-1] is not None, "reset dropped a standing robot"


def test_a_fall_goes_limp_latches_and_is_counted() -> None:
    loop, supervisor, robot = make(fall_ticks=3)
    supervisor.handle("gait", speed=0.5)
    loop.run(20)
    robot.tilt_rad = math.radians(70)
    loop.run(2)
    assert supervisor.mode == "sine", "a single tilted reading is not a fall"
    loop.run(1)
    assert supervisor.mode == "relax" and robot.writes[-1] is None
    assert supervisor.counts.falls == 1 and supervisor.faults[0].code == "fall"
    robot.tilt_rad = 0.0
    with pytest.raises(CommandError, match="fall"):
        supervisor.handle("gait", speed=0.5)
    supervisor.handle("reset")
    assert supervisor.faults == []


def test_a_fall_can_crouch_instead() -> None:
    loop, supervisor, robot = make(fall_action="crouch")
    supervisor.handle("stand")
    loop.run(10)
    robot.tilt_rad = math.radians(80)
    loop.run(5)
    assert supervisor.mode == "crouch" and robot.writes[-1] is not None


@pytest.mark.parametrize(("action", "mode"), [("relax", "relax"), ("stand", "stand")])
def test_stale_sensors_make_the_robot_safe_and_are_reported(action: str, mode: str) -> None:
    loop, supervisor, robot = make(stale_timeout_s=0.1, stale_action=action)
    supervisor.handle("gait", speed=0.5)
    loop.run(20)
    robot.joint_age = 0.5
    loop.tick()
    assert supervisor.mode == mode
    assert [f.code for f in supervisor.faults] == ["stale_sensors"]
    assert "joint readings" in supervisor.faults[0].message
    robot.joint_age = 0.0
    loop.tick()
    assert supervisor.faults == [] and supervisor.counts.stale == 1
    assert [f.code for f in supervisor.history] == ["stale_sensors"], "cleared faults stay in the history"
    assert supervisor.mode == mode, "walking does not resume by itself"


def test_a_servo_that_cannot_follow_is_a_latched_fault() -> None:
    loop, supervisor, robot = make(tracking_error_rad=0.3, tracking_time_s=0.2)
    supervisor.handle("stand")
    loop.run(10)
    robot.offset[3] = 0.5  # the right knee is blocked half a radian away
    loop.run(5)
    assert supervisor.mode == "stand", "brief errors are tolerated"
    loop.run(10)
    assert supervisor.mode == "relax"
    fault = supervisor.faults[0]
    assert fault.code == "tracking" and "r_knee_r_shin" in fault.message
    assert supervisor.counts.tracking == 1


def test_replay_plays_then_stands() -> None:
    loop, supervisor, robot = make()
    pose = stand_pose()
    column = JOINT_NAMES.index("torso_r_shoulder")
    positions = np.array([[0.0], [0.1], [0.2], [0.3]])
    supervisor.handle("replay", trajectory=Trajectory(("torso_r_shoulder",), positions, 10.0))
    loop.run(15)  # blend
    assert supervisor.mode == "replay"
    seen: list[float] = []
    for _ in range(20):
        loop.tick()
        seen.append(robot.last()[column])
    assert max(seen) == pytest.approx(0.3, abs=1e-6)
    loop.run(60)
    assert supervisor.mode == "stand"
    assert robot.last()[column] == pytest.approx(pose[column], abs=1e-6)


def test_policy_start_without_a_policy_is_refused() -> None:
    _, supervisor, _ = make()
    with pytest.raises(CommandError, match="no policy is loaded"):
        supervisor.handle("policy_start")
