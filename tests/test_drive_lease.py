"""The daemon's side of plenctl drive: sessions, the dead-man lease, what each walker takes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gaits.sine import stand_pose
from plend.control.behaviours import Trajectory
from plend.control.loop import ControlLoop, StepClock
from plend.control.safety import SafetyFilter
from plend.control.supervisor import CommandError, Supervisor
from plend.core.config import SafetyConfig
from plend.drive.lease import DriveLease, DriveRefusedError, steer
from plend.hal.base import Sensors
from plend.hal.fake import FakeHal

DT = 0.02
LEASE = 0.5
ZERO = {"speed": 0.0, "turn": 0.0, "side": 0.0}


@pytest.fixture
def rig() -> tuple[Supervisor, ControlLoop]:
    clock = StepClock()
    sup = Supervisor(SafetyConfig(), DT, wall_clock=clock.now)
    loop = ControlLoop(FakeHal(clock), sup, DT, SafetyFilter.from_config(SafetyConfig(), DT), clock)
    loop.start()
    sup.handle("stand")
    loop.run(10)
    return sup, loop


def drive(sup: Supervisor, session: str = "a", walker: str = "sine", **command: float) -> dict[str, Any]:
    return sup.handle("drive", session=session, command={**ZERO, **command}, lease_s=LEASE, walker=walker)


def stopping(sup: Supervisor) -> bool:
    return bool(sup.behaviour.report()["stopping"])  # type: ignore[attr-defined]


def test_a_command_asking_for_motion_starts_the_sine_gait_and_steers_it(rig: Any) -> None:
    sup, loop = rig
    assert drive(sup, speed=0.0) == {"mode": "stand", "walker": None, "took": []}
    reply = drive(sup, speed=0.4, turn=0.2)
    assert reply == {"mode": "sine", "walker": "sine", "took": ["speed", "turn", "side"]}
    for _ in range(10):  # past a step boundary: the new command is in effect
        drive(sup, speed=0.6, turn=-0.4, side=0.5)
        loop.run(5)
    report = sup.behaviour.report()  # type: ignore[attr-defined]
    assert (report["speed"], report["turn"], report["side"]) == (0.6, -0.4, 0.5)


def test_updates_keep_it_walking_and_silence_stops_it_after_the_lease(rig: Any) -> None:
    sup, loop = rig
    drive(sup, speed=0.5)
    for _ in range(20):  # 2 s of updates every 0.1 s
        loop.run(5)
        drive(sup, speed=0.5)
    assert sup.mode == "sine" and not stopping(sup)
    loop.run(round(LEASE / DT) - 1)  # within the lease
    assert not stopping(sup) and not sup.faults
    loop.run(2)  # the lease has passed: within one tick the dead-man rule acts
    assert stopping(sup)
    assert [f.code for f in sup.faults] == ["drive"]
    assert "no drive update for 0.5 s" in sup.faults[0].message
    loop.run(100)  # at the next step boundary it walks back to standing
    assert sup.mode == "stand"


def test_an_ended_session_is_refused_and_a_new_one_drives(rig: Any) -> None:
    sup, loop = rig
    drive(sup, speed=0.5)
    loop.run(round(LEASE / DT) + 1)
    with pytest.raises(DriveRefusedError, match="drive session ended: no drive update"):
        drive(sup, speed=0.5)
    loop.run(100)
    assert sup.mode == "stand"
    assert drive(sup, "b", speed=0.3)["mode"] == "sine"
    assert not sup.faults  # a new session clears the dead-man's note


def test_one_driver_at_a_time(rig: Any) -> None:
    sup, _ = rig
    drive(sup, "a", speed=0.5)
    with pytest.raises(DriveRefusedError, match="another plenctl drive"):
        drive(sup, "b", speed=-0.5)
    assert sup.behaviour.gait.speed == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["stop", "stand", "estop", "relax"])
def test_other_commands_take_the_robot_out_of_the_drivers_hands(rig: Any, command: str) -> None:
    sup, _ = rig
    drive(sup, speed=0.5)
    sup.handle(command)
    assert sup.drive.session is None
    if command == "estop":
        sup.handle("reset")
    with pytest.raises(DriveRefusedError, match=f"'(reset|{command})' was asked"):
        drive(sup, speed=0.5)
    assert sup.mode != "sine" or stopping(sup)


def test_the_clients_connection_closing_stops_the_walk_at_once(rig: Any) -> None:
    sup, loop = rig
    drive(sup, speed=0.5)
    sup.handle("drive_end", session="someone else", reason="their connection closed")
    assert not stopping(sup)
    sup.handle("drive_end", session="a", reason="the drive client's connection closed")
    assert stopping(sup)
    assert "connection closed" in sup.faults[0].message
    loop.run(100)
    assert sup.mode == "stand"


def test_driving_is_refused_when_the_robot_may_not_move_or_does_something_else(rig: Any) -> None:
    sup, _ = rig
    sup.handle("estop")
    with pytest.raises(CommandError, match="e-stop is latched"):
        drive(sup, speed=0.5)
    sup.handle("reset")
    trajectory = Trajectory(("r_knee_r_shin",), np.full((100, 1), stand_pose()[3]), 10.0)
    sup.handle("replay", trajectory=trajectory)
    with pytest.raises(CommandError, match="cannot drive while replay runs"):
        drive(sup, "c", speed=0.5)
    assert sup.mode == "replay"


def test_a_refused_or_idle_update_holds_no_lease_and_leaves_no_fault(rig: Any) -> None:
    sup, loop = rig
    trajectory = Trajectory(("r_knee_r_shin",), np.full((20, 1), stand_pose()[3]), 10.0)
    sup.handle("replay", trajectory=trajectory)
    with pytest.raises(CommandError, match="cannot drive while replay runs"):
        drive(sup, "refused", speed=0.5)
    loop.run(round(LEASE / DT) * 3)  # past the lease the refused update would have taken
    assert not sup.faults, "a refused drive left a dead-man fault"
    sup.handle("stand")
    loop.run(10)
    assert drive(sup, "idle") == {"mode": "stand", "walker": None, "took": []}
    loop.run(round(LEASE / DT) * 3)
    assert not sup.faults, "a driver that asked for nothing left a dead-man fault"
    assert drive(sup, "other", speed=0.5)["walker"] == "sine", "an earlier session keeps the robot"


def test_a_walk_taken_away_ends_the_session_and_is_not_restarted(rig: Any) -> None:
    sup, loop = rig
    drive(sup, speed=0.5)
    loop.run(5)
    loop.hal.tilt_rad = 1.2  # it falls: the fall monitor relaxes it
    loop.run(5)
    assert sup.mode == "relax"
    loop.hal.tilt_rad = 0.0
    sup.handle("reset")
    with pytest.raises(DriveRefusedError, match=r"the walk was interrupted \(mode relax\)"):
        drive(sup, speed=0.5)
    assert sup.mode == "relax"


def test_a_new_session_waits_for_a_stopping_walk_then_walks(rig: Any) -> None:
    sup, loop = rig
    sup.handle("gait", speed=0.5)
    loop.run(20)
    sup.behaviour.stop()  # stopping, by a command from before this session
    assert drive(sup, "new", speed=0.3) == {"mode": "sine", "walker": None, "took": []}
    for _ in range(40):
        loop.run(5)
        reply = drive(sup, "new", speed=0.3)
        if reply["walker"]:
            break
    assert reply == {"mode": "sine", "walker": "sine", "took": ["speed", "turn", "side"]}
    assert not stopping(sup) and sup.behaviour.gait.speed == 0.3  # type: ignore[attr-defined]


class Policy:
    """A loaded policy that walks; ``set_command`` only if it takes commands."""

    name = "policy"
    finished = False

    def __init__(self) -> None:
        self.stopped = False

    def start(self, measured: np.ndarray) -> None: ...

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        return stand_pose()

    def stop(self) -> None:
        self.stopped = True


class SteerablePolicy(Policy):
    def __init__(self) -> None:
        super().__init__()
        self.command: tuple[float, float] | None = None

    def set_command(self, speed: float, turn: float) -> None:
        self.command = (speed, turn)


def test_a_policy_is_started_and_given_what_it_takes(rig: Any) -> None:
    sup, loop = rig
    policy = SteerablePolicy()
    sup.handle("policy_load", behaviour=policy)
    reply = drive(sup, walker="policy", speed=0.5, turn=0.25, side=1.0)
    assert reply == {"mode": "policy", "walker": "policy", "took": ["speed", "turn"]}
    assert policy.command == (0.5, 0.25)
    loop.run(round(LEASE / DT) + 1)
    assert policy.stopped  # the dead-man rule stops a policy too


def test_a_policy_without_commands_walks_as_trained_and_still_stops(rig: Any) -> None:
    sup, loop = rig
    policy = Policy()
    sup.handle("policy_load", behaviour=policy)
    sup.handle("policy_start")  # started some other way: the driver then steers it
    assert drive(sup, speed=0.5)["took"] == []
    loop.run(round(LEASE / DT) + 1)
    assert policy.stopped


def test_the_lease_itself() -> None:
    lease = DriveLease()
    assert not lease.lapsed(1e9)
    lease.renew("a", 10.0, 0.5)
    assert not lease.lapsed(10.5) and lease.lapsed(10.51)
    assert lease.touch("a", 11.0, 0.5) and not lease.touch("b", 11.0, 0.5)
    assert not lease.lapsed(11.5)
    assert lease.end("why") and not lease.end("again")
    assert not lease.touch("a", 12.0, 0.5) and not lease.lapsed(1e9)
    for n in range(100):  # old sessions are forgotten, the newest remembered
        lease.renew(f"s{n}", 0.0, 1.0)
        lease.end(f"reason {n}")
    lease.renew("a", 0.0, 1.0)  # forgotten long ago: a token of that name may drive again
    lease.end("x")
    with pytest.raises(DriveRefusedError, match="reason 99"):
        lease.renew("s99", 0.0, 1.0)


def test_steer_passes_only_what_a_walker_takes() -> None:
    class Turner:
        def set_command(self, turn: float) -> None:
            self.turn = turn

    turner = Turner()
    assert steer(turner, {"speed": 1.0, "turn": -0.5, "side": 0.2}) == ["turn"]
    assert turner.turn == -0.5
    assert steer(object(), {"speed": 1.0, "turn": 0.0, "side": 0.0}) == []
