"""Behaviours: what the robot does. Each proposes joint targets; ``None`` means relaxed.

A behaviour is started with the measured pose and then asked once a tick for targets.
The supervisor blends every switch from the measured pose, so a behaviour may start
from its own idea of where the joints are. Its ``name`` is the daemon's mode while it
runs (:class:`Mode`). What some behaviours can do besides (take walking commands,
report figures, read the camera's pose) is a small protocol below, asked for with
``isinstance``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gaits.balance import Balance
from gaits.sine import SpeedMap
from gaits.walker import SineGait
from plend.control.trajectory import Trajectory, TrajectoryError, load_trajectory
from plend.core.config import GaitConfig
from plend.hal.base import Sensors
from plend.model.robot import JOINT_NAMES, stand_pose

# The trajectory file reader lives in plend.control.trajectory; these names stay importable here.
__all__ = [
    "Behaviour", "Mode", "ReadsPose", "Relax", "Replay", "Reporting", "RunsPolicy", "Stand", "Steerable",
    "Stepping", "Trajectory",
    "TrajectoryError", "Walk", "load_trajectory", "min_jerk",
]  # fmt: skip


class Mode(StrEnum):
    """What the daemon is doing: the running behaviour's name, or the e-stop."""

    RELAX = "relax"
    STAND = "stand"
    CROUCH = "crouch"  # standing low after a fall ([safety] fall_action = "crouch")
    SINE = "sine"
    REPLAY = "replay"
    POLICY = "policy"
    CALIBRATE = "calibrate"
    ESTOP = "estop"


class Behaviour(Protocol):
    """One thing the robot can do."""

    @property
    def name(self) -> str:
        """What it is called: the daemon's mode while it runs (a :class:`Mode` value)."""

    def start(self, measured: np.ndarray) -> None:
        """Begin from the measured pose (finite everywhere)."""

    def update(self, sensors: Sensors, dt: float) -> np.ndarray | None:
        """Targets for this tick, or None to relax the servos."""

    def stop(self) -> None:
        """Finish at the next safe point."""

    @property
    def finished(self) -> bool:
        """True once the behaviour has nothing more to do (the supervisor then stands)."""


@runtime_checkable
class Steerable(Protocol):
    """A walk that takes walking commands as it goes (the sine gait, a policy trained on
    commands); it takes the keywords its ``set_command`` names, of speed, turn and side."""

    def set_command(self, speed: float, turn: float = 0.0, side: float = 0.0) -> None:
        """Walk at this command from the next step on."""


@runtime_checkable
class Reporting(Protocol):
    """A behaviour with figures of its own for status (walking: the command in effect and
    the balance layer)."""

    def report(self) -> dict[str, Any]:
        """JSON-ready figures."""


@runtime_checkable
class Stepping(Protocol):
    """A walk told to stop finishes its step first."""

    @property
    def stopping(self) -> bool:
        """True from ``stop`` until the walk stands."""


@runtime_checkable
class ReadsPose(Protocol):
    """A behaviour that reads the camera's torso pose (a policy on the robot): the
    supervisor stands the robot when the pose goes stale."""

    needs_pose: bool
    needs_orientation: bool


@runtime_checkable
class RunsPolicy(Protocol):
    """A behaviour that runs an ONNX policy (policies.runner.PolicyBehaviour); status
    shows its ``runner``'s file, engine and timings."""

    runner: Any


def min_jerk(s: float) -> float:
    """Minimum-jerk progress for ``s`` in [0, 1]: zero speed and acceleration at both ends."""
    s = min(1.0, max(0.0, s))
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


class Relax:
    """Servos unpowered."""

    name = Mode.RELAX
    finished = False

    def start(self, measured: np.ndarray) -> None:
        pass

    def update(self, sensors: Sensors, dt: float) -> np.ndarray | None:
        return None

    def stop(self) -> None:
        pass


class Stand:
    """Moves to a pose (the stand pose by default) over ``duration_s`` and holds it."""

    def __init__(self, pose: np.ndarray | None = None, duration_s: float = 1.0, name: str = Mode.STAND):
        self.name = name
        self.pose = stand_pose() if pose is None else np.asarray(pose, float)
        self.duration_s = duration_s
        self._from = self.pose
        self._t = 0.0

    def start(self, measured: np.ndarray) -> None:
        self._from = np.asarray(measured, float).copy()
        self._t = 0.0

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        self._t += dt
        w = min_jerk(self._t / self.duration_s)
        return self._from + w * (self.pose - self._from)

    def stop(self) -> None:
        pass

    @property
    def finished(self) -> bool:
        return False


def make_gait(
    speed: float, turn: float = 0.0, side: float = 0.0, config: GaitConfig | None = None
) -> SineGait:
    """The sine gait as ``config`` (``[gait]``) says: heading hold, balance layer."""
    config = config or GaitConfig()
    balance = Balance(config.sine_gains()) if config.balance else None
    speed_map = SpeedMap(stride_exponent=config.stride_exponent)
    hold = speed_map.max_turn_rad  # steer back as fast as the gait can turn
    return SineGait(
        speed, heading_gain=config.heading_gain, max_turn_rad=hold, turn=turn, side=side, balance=balance,
        heading_bias_gain=config.heading_bias_gain, heading_average=config.heading_average,
        speed_map=speed_map,
    )  # fmt: skip


class Walk:
    """The sine gait; ``stop`` comes back to the stand pose at the next step boundary."""

    name = Mode.SINE

    def __init__(self, speed: float, turn: float = 0.0, side: float = 0.0, config: GaitConfig | None = None):
        self.gait = make_gait(speed, turn, side, config)

    def start(self, measured: np.ndarray) -> None:
        pass  # the gait starts from the stand pose; the supervisor blends to it

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        return self.gait.update(sensors, dt)

    def set_speed(self, speed: float) -> None:
        self.gait.set_speed(speed)

    def set_command(self, speed: float, turn: float = 0.0, side: float = 0.0) -> None:
        self.gait.set_command(speed, turn, side)

    def stop(self) -> None:
        self.gait.stop()

    @property
    def finished(self) -> bool:
        return self.gait.standing

    @property
    def stopping(self) -> bool:
        return self.gait.stopping

    def report(self) -> dict[str, Any]:
        """The command in effect and what the balance layer is doing, for status."""
        return self.gait.report()


class Replay:
    """Plays a trajectory, interpolating linearly between its samples."""

    name = Mode.REPLAY

    def __init__(self, trajectory: Trajectory):
        self.trajectory = trajectory
        self._columns = [JOINT_NAMES.index(n) for n in trajectory.joints]
        self._base = stand_pose()
        self._t = 0.0
        self._stopping = False

    def start(self, measured: np.ndarray) -> None:
        self._t = 0.0

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        positions = self.trajectory.positions
        last = len(positions) - 1
        x = min(self._t * self.trajectory.rate_hz, last)
        i = min(int(x), max(last - 1, 0))
        row = positions[i] if last == 0 else positions[i] + (x - i) * (positions[i + 1] - positions[i])
        q = self._base.copy()
        q[self._columns] = row
        self._t += dt
        return q

    def stop(self) -> None:
        self._stopping = True

    @property
    def finished(self) -> bool:
        return self._stopping or self._t > self.trajectory.duration_s
