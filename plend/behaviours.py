"""Behaviours: what the robot does. Each proposes joint targets; ``None`` means relaxed.

A behaviour is started with the measured pose and then asked once a tick for targets.
The supervisor blends every switch from the measured pose, so a behaviour may start
from its own idea of where the joints are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gaits.balance import Balance
from gaits.sine import stand_pose
from gaits.walker import SineGait
from plend.config import GaitConfig
from plend.errors import PlendError
from plend.hal.base import Sensors
from plend.robot import JOINT_NAMES


class Behaviour(Protocol):
    """One thing the robot can do."""

    name: str

    def start(self, measured: np.ndarray) -> None:
        """Begin from the measured pose (finite everywhere)."""

    def update(self, sensors: Sensors, dt: float) -> np.ndarray | None:
        """Targets for this tick, or None to relax the servos."""

    def stop(self) -> None:
        """Finish at the next safe point."""

    @property
    def finished(self) -> bool:
        """True once the behaviour has nothing more to do (the supervisor then stands)."""


def min_jerk(s: float) -> float:
    """Minimum-jerk progress for ``s`` in [0, 1]: zero speed and acceleration at both ends."""
    s = min(1.0, max(0.0, s))
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


class Relax:
    """Servos unpowered."""

    name = "relax"
    finished = False

    def start(self, measured: np.ndarray) -> None:
        pass

    def update(self, sensors: Sensors, dt: float) -> np.ndarray | None:
        return None

    def stop(self) -> None:
        pass


class Stand:
    """Moves to a pose (the stand pose by default) over ``duration_s`` and holds it."""

    def __init__(self, pose: np.ndarray | None = None, duration_s: float = 1.0, name: str = "stand"):
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
    balance = Balance(config.balance_gains()) if config.balance else None
    return SineGait(speed, heading_gain=config.heading_gain, turn=turn, side=side, balance=balance)


class Walk:
    """The sine gait; ``stop`` comes back to the stand pose at the next step boundary."""

    name = "sine"

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


class TrajectoryError(PlendError, ValueError):
    """A trajectory file is unreadable or would drive a joint unsafely."""


@dataclass(frozen=True)
class Trajectory:
    """Joint positions sampled at ``rate_hz``; columns are ``joints`` (a subset of the
    robot's joints, the others hold the stand pose)."""

    joints: tuple[str, ...]
    positions: np.ndarray  # (samples, len(joints)), rad
    rate_hz: float

    @property
    def duration_s(self) -> float:
        return (len(self.positions) - 1) / self.rate_hz

    def full_pose(self, index: int) -> np.ndarray:
        q = stand_pose()
        q[[JOINT_NAMES.index(n) for n in self.joints]] = self.positions[index]
        return q


class Replay:
    """Plays a trajectory, interpolating linearly between its samples."""

    name = "replay"

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


def load_trajectory(
    path: Path, rate_hz: float | None, lower: np.ndarray, upper: np.ndarray, max_speed: float
) -> Trajectory:
    """Read a CSV or NPY trajectory and check it is safe to play.

    CSV: a header row of joint names, then one row of angles (rad) per sample; a first
    line ``# rate_hz: 50`` gives the rate. NPY: a structured array whose field names are
    joint names. ``rate_hz`` (if given) overrides the file's rate; one is required.
    """
    joints, positions, file_rate = _read_trajectory(path)
    rate = rate_hz if rate_hz is not None else file_rate
    if rate is None:
        raise TrajectoryError(f"{path}: no rate given; add '# rate_hz: 50' as its first line or pass --rate")
    if not (math.isfinite(rate) and 1.0 <= rate <= 1000.0):
        raise TrajectoryError(f"{path}: rate {rate} Hz is out of range [1, 1000]")
    traj = Trajectory(joints, positions, float(rate))
    _check_trajectory(path, traj, lower, upper, max_speed)
    return traj


def _read_trajectory(path: Path) -> tuple[tuple[str, ...], np.ndarray, float | None]:
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
            if data.dtype.names is None:
                raise TrajectoryError(f"{path}: expected a structured array with joint names as fields")
            names = tuple(data.dtype.names)
            return names, np.column_stack([data[n].astype(float) for n in names]), None
        return _read_csv(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, TrajectoryError):
            raise
        raise TrajectoryError(f"{path}: cannot read trajectory: {exc}") from None


def _read_csv(path: Path) -> tuple[tuple[str, ...], np.ndarray, float | None]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rate = None
    if lines and lines[0].startswith("#"):
        key, _, value = lines.pop(0).lstrip("# ").partition(":")
        if key.strip() != "rate_hz":
            raise TrajectoryError(f"{path}: first line must be '# rate_hz: <Hz>'")
        rate = float(value)
    if len(lines) < 2:
        raise TrajectoryError(f"{path}: needs a header row of joint names and at least one sample")
    names = tuple(n.strip() for n in lines[0].split(","))
    rows = [[float(v) for v in line.split(",")] for line in lines[1:] if line.strip()]
    if any(len(r) != len(names) for r in rows):
        raise TrajectoryError(f"{path}: every row needs {len(names)} values, one per joint in the header")
    return names, np.asarray(rows, dtype=float), rate


def _check_trajectory(
    path: Path, traj: Trajectory, lower: np.ndarray, upper: np.ndarray, max_speed: float
) -> None:
    unknown = [n for n in traj.joints if n not in JOINT_NAMES]
    if unknown or len(set(traj.joints)) != len(traj.joints):
        raise TrajectoryError(f"{path}: unknown or repeated joints {unknown or traj.joints}")
    if traj.positions.ndim != 2 or len(traj.positions) == 0:
        raise TrajectoryError(f"{path}: no samples")
    if not np.all(np.isfinite(traj.positions)):
        row = int(np.argwhere(~np.isfinite(traj.positions))[0][0])
        raise TrajectoryError(f"{path}: sample {row} is not a finite number")
    cols = [JOINT_NAMES.index(n) for n in traj.joints]
    lo, hi = lower[cols], upper[cols]
    bad = np.argwhere((traj.positions < lo) | (traj.positions > hi))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise TrajectoryError(
            f"{path}: sample {row} puts {traj.joints[col]} at {traj.positions[row, col]:+.3f} rad, "
            f"outside its limits [{lo[col]:+.2f}, {hi[col]:+.2f}]"
        )
    speed = np.abs(np.diff(traj.positions, axis=0)) * traj.rate_hz
    if speed.size and speed.max() > max_speed:
        row, col = (int(v) for v in np.unravel_index(int(np.argmax(speed)), speed.shape))
        raise TrajectoryError(
            f"{path}: {traj.joints[col]} moves at {speed[row, col]:.1f} rad/s between samples {row} and "
            f"{row + 1}, faster than the {max_speed} rad/s slew limit"
        )
