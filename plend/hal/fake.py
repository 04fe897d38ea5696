"""A robot in memory, for testing behaviours and controllers without a simulation.

Like gpiozero's mock pins, :class:`FakeHal` implements the whole HAL interface with no
hardware and no physics: every joint goes exactly where it was last sent, and what a
test needs to provoke is a plain attribute (the torso's tilt, how old the readings are,
a joint that is held away from its target). Every command is recorded. Run it with a
:class:`~plend.core.clock.StepClock`, shared with the loop, and a test runs as fast as the
machine allows::

    from plend.control.loop import ControlLoop
    from plend.control.safety import SafetyFilter
    from plend.control.supervisor import Supervisor
    from plend.core.clock import StepClock
    from plend.core.config import SafetyConfig
    from plend.hal.fake import FakeHal

    clock = StepClock()
    robot = FakeHal(clock)
    supervisor = Supervisor(SafetyConfig(), 0.02)
    loop = ControlLoop(robot, supervisor, 0.02, SafetyFilter(0.02), clock)
    loop.start()
    supervisor.handle("stand")
    loop.run(50)
    assert robot.writes[-1] is not None
"""

from __future__ import annotations

import numpy as np

from plend.core.clock import StepClock
from plend.hal.base import Hal, ImuReading, Sensors
from plend.model.robot import NUM_JOINTS, stand_pose


class FakeHal(Hal):
    """Joints follow the last command exactly; tilt, sensor ages and a joint's offset are settable.

    Args:
        clock: the time reads are stamped with (share it with the loop); a new one by default.
        pose: where the joints start (default: the stand pose).
        write_cost_s: fake time each write takes (advances ``clock``), to make ticks late.

    Attributes:
        q: the joints' angles now (rad, canonical order).
        tilt_rad: the torso's roll; past the fall threshold the supervisor sees a fall.
        joint_age, imu_age: how old the readings are (s); past the stale timeout they are stale.
        offset: measured minus commanded per joint (a blocked or miscalibrated servo).
        writes: every command in order: the targets written, None for a relax.
        powered: for each command, which joints it powered (all, some, or none).
        times: the clock's time at each write.
    """

    name = "fake"

    def __init__(
        self, clock: StepClock | None = None, pose: np.ndarray | None = None, write_cost_s: float = 0.0
    ):
        self.clock = clock or StepClock()
        self.q = stand_pose() if pose is None else np.array(pose, float)
        self.write_cost_s = write_cost_s
        self.tilt_rad = 0.0
        self.joint_age = 0.0
        self.imu_age = 0.0
        self.offset = np.zeros(NUM_JOINTS)
        self.writes: list[np.ndarray | None] = []
        self.powered: list[np.ndarray] = []
        self.times: list[float] = []
        self.opened = self.closed = False

    def open(self, tick_period_s: float) -> None:
        self.opened = True

    def read(self) -> Sensors:
        t = self.clock.now()
        imu = ImuReading((1.0, 0.0, 0.0, 0.0), (self.tilt_rad, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
        return Sensors(
            t,
            self.q + self.offset,
            imu,
            (True, True),
            joint_stamp=t - self.joint_age,
            imu_stamp=t - self.imu_age,
        )

    def write(self, targets: np.ndarray) -> None:
        self.write_some(targets, np.ones(NUM_JOINTS, bool))

    def write_some(self, targets: np.ndarray, powered: np.ndarray) -> None:
        self._record(np.array(targets, float), np.array(powered, bool))
        self.q = np.where(powered, targets, self.q)
        self.clock.t += self.write_cost_s

    def relax(self) -> None:
        self._record(None, np.zeros(NUM_JOINTS, bool))

    def close(self) -> None:
        self.closed = True

    def last(self) -> np.ndarray:
        """The targets of the last write (raises AssertionError when the last command relaxed)."""
        targets = self.writes[-1]
        assert targets is not None, "the last command relaxed the servos"
        return targets

    def _record(self, targets: np.ndarray | None, powered: np.ndarray) -> None:
        self.times.append(self.clock.now())
        self.writes.append(targets)
        self.powered.append(powered)
