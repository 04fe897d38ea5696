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
    """One tick's readings. ``stamp`` is the backend's time (s) when they were taken."""

    stamp: float
    joint_pos: np.ndarray
    imu: ImuReading
    contacts: tuple[bool, bool]  # right, left sole touching the ground
    faults: tuple[str, ...] = field(default=())


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

    def relax(self) -> None:
        """Unpower every servo."""

    def close(self) -> None:
        """Relax and release the robot; safe to call more than once."""
