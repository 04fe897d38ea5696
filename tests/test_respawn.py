"""In simulation a fallen robot is stood up again: by reset after a fall, by stand, or by
'sim respawn'; then it stands and walks as before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gaits.sine import stand_pose
from plend.control.behaviours import Stand
from plend.control.loop import ControlLoop, Request, StepClock
from plend.control.safety import SafetyFilter
from plend.control.supervisor import CommandError, Supervisor
from plend.core.config import Config
from plend.hal import make_hal
from plend.hal.base import GroundTruth

pytest.importorskip("pybullet")
PERIOD = 0.02


class World:
    def __init__(self) -> None:
        config = Config()
        hal = make_hal("sim", config, initial_pose=stand_pose())
        assert isinstance(hal, GroundTruth)
        self.hal = hal
        self.supervisor = Supervisor(config.safety, PERIOD, hal=self.hal)
        self.hal.open(PERIOD)
        safety = SafetyFilter.from_config(config.safety, PERIOD)
        self.loop = ControlLoop(self.hal, self.supervisor, PERIOD, safety, StepClock())
        self.loop.start()

    def ticks(self, seconds: float) -> None:
        for _ in range(round(seconds / PERIOD)):
            self.loop.tick()

    def command(self, name: str, **args: Any) -> dict[str, Any]:
        request = self.loop.submit(Request(name, **args))
        self.loop.tick()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def height(self) -> float:
        return self.hal.truth().position[2]

    def stands_then_walks(self, falls: int) -> None:
        """Stood up: on its feet 2 s later with no fault, then it walks 4 s (``falls``: the
        falls counted since the world began)."""
        self.ticks(2.0)
        assert self.supervisor.mode == "stand" and self.supervisor.fault_list() == []
        assert self.height() > 0.14  # on its feet: the torso stands about 0.15 m up
        self.command("gait", speed=0.5)
        self.ticks(4.0)
        assert self.supervisor.mode == "sine" and self.supervisor.counts.falls == falls

    def knock_over(self) -> None:
        pb, c, robot = self.hal._pb, self.hal._c, self.hal._robot  # type: ignore[attr-defined]
        position, _ = pb.getBasePositionAndOrientation(robot, **c)
        pb.resetBasePositionAndOrientation(robot, position, pb.getQuaternionFromEuler([1.6, 0.0, 0.0]), **c)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.hal.close()


def test_reset_after_a_fall_stands_the_robot_up_and_it_walks(world: World) -> None:
    world.command("gait", speed=0.5)
    world.ticks(4.0)
    world.knock_over()
    world.ticks(2.0)
    assert world.supervisor.mode == "relax" and world.height() < 0.06
    assert [f["code"] for f in world.supervisor.fault_list()] == ["fall"]
    assert world.command("reset") == {"mode": "stand", "respawned": True}
    world.stands_then_walks(falls=1)


def test_after_estop_and_reset_stand_gets_a_crumpled_robot_up(world: World) -> None:
    # The README's demo: estop drops the robot, reset leaves it limp, stand must not fault.
    world.command("stand")
    world.ticks(1.0)
    world.command("estop")
    world.ticks(3.0)
    assert world.height() < 0.06
    world.command("reset")
    world.ticks(1.0)
    assert world.command("stand")["mode"] == "stand"
    world.ticks(3.0)
    assert world.supervisor.mode == "stand" and world.supervisor.fault_list() == []
    assert world.height() > 0.14


def test_reset_right_after_an_estop_stands_the_robot_where_it_was(world: World) -> None:
    # Its servos off, a simulated robot starts to fall at once; reset catches it in place.
    world.command("stand")
    world.ticks(1.0)
    before = world.hal.truth().position
    world.command("estop")
    assert world.command("reset") == {"mode": "stand", "respawned": True}
    assert world.hal.truth().position == pytest.approx(before, abs=0.01)
    world.ticks(2.0)
    assert world.supervisor.mode == "stand" and world.height() > 0.14


def test_reset_while_the_robot_topples_after_an_estop_stands_it_up(world: World) -> None:
    # plenctl answers within a tick or two: the reset can come while the robot is still
    # on its way down, not yet tilted past the fall threshold. It must not stay limp.
    world.command("gait", speed=0.5)
    world.ticks(1.0)
    world.command("estop")
    world.ticks(0.1)
    tilt = world.supervisor._tilt_deg
    assert 5.0 < tilt < Config().safety.fall_tilt_deg
    assert world.command("reset") == {"mode": "stand", "respawned": True}
    world.stands_then_walks(falls=0)


def test_a_robot_lying_down_is_not_set_walking(world: World) -> None:
    world.command("stand")
    world.ticks(1.0)
    world.command("relax")  # no fault: it simply folds up on the floor
    world.ticks(2.0)
    assert world.height() < 0.06
    world.command("policy_load", behaviour=Stand())
    for name, args in (("gait", {"speed": 0.5}), ("policy_start", {})):
        down = r"the robot is down \(torso tilted \d+ degrees\); stand it up first \('plenctl stand' stands a"
        with pytest.raises(CommandError, match=down):
            world.command(name, **args)
        assert world.supervisor.mode == "relax"
    assert world.command("stand") == {"mode": "stand", "respawned": True}
    world.ticks(1.0)
    assert world.height() > 0.14
    assert world.command("gait", speed=0.5)["mode"] == "sine"


def test_respawn_is_refused_while_the_estop_is_latched(world: World) -> None:
    world.command("estop")
    with pytest.raises(Exception, match=r"cannot respawn the robot: the e-stop is latched"):
        world.command("sim_respawn")
