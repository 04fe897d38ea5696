"""The hardware boundary: what every backend reads and writes, in SI units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ImuReading:
    """Orientation, angular rate and specific force of the torso, in its own frame.

    ``quat`` is (w, x, y, z) from the torso frame to the world; ``euler`` is roll, pitch,
    yaw (rad); ``gyro`` is rad/s; ``accel`` is m/s^2 as an accelerometer measures it
    (about +9.81 on z when standing still and upright).
    """

    quat: tuple[float, float, float, float]
    euler: tuple[float, float, float]
    gyro: tuple[float, float, float]
    accel: tuple[float, float, float]


@dataclass(frozen=True)
class Sensors:
    """One tick's readings.

    ``stamp`` is the backend's time (s) of this read; ``joint_stamp`` and ``imu_stamp``
    are when the joint angles and the IMU data were last read successfully (the same as
    ``stamp`` when they are fresh). Joint angles without feedback are NaN.
    """

    stamp: float
    joint_pos: np.ndarray
    imu: ImuReading
    contacts: tuple[bool, bool]  # right, left sole touching the ground
    faults: tuple[str, ...] = field(default=())
    joint_stamp: float | None = None
    imu_stamp: float | None = None

    def joint_age(self) -> float:
        """Seconds since the joint angles were last read."""
        return 0.0 if self.joint_stamp is None else self.stamp - self.joint_stamp

    def imu_age(self) -> float:
        """Seconds since the IMU was last read."""
        return 0.0 if self.imu_stamp is None else self.stamp - self.imu_stamp


class Hal(Protocol):
    """A robot backend. The control loop calls ``write`` or ``relax`` exactly once a tick.

    Constructors do no I/O; ``open`` does. ``close`` is idempotent and leaves the servos
    relaxed.
    """

    name: str

    def open(self, tick_period_s: float) -> None:
        """Acquire the robot; the loop will run every ``tick_period_s`` seconds."""

    def read(self) -> Sensors:
        """Read every sensor once."""

    def write(self, targets: np.ndarray) -> None:
        """Command all 18 joint targets (rad, canonical order); servos powered."""

    def write_some(self, targets: np.ndarray, powered: np.ndarray) -> None:
        """Command the joints where ``powered`` is True; unpower the others."""

    def relax(self) -> None:
        """Unpower every servo."""

    def close(self) -> None:
        """Relax and release the robot; safe to call more than once."""
