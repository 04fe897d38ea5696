"""What the robot senses, in SI units: one tick's readings and a simulation's ground truth.

These are plain data shared by every layer (the HAL fills them, the gaits, the
supervisor and the policies read them), so they live below all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class TorsoTruth:
    """Ground-truth torso pose for evaluation: world position (m), roll/pitch/yaw (rad)
    and world linear velocity (m/s)."""

    position: tuple[float, float, float]
    euler: tuple[float, float, float]
    velocity: tuple[float, float, float]

    @property
    def tilt(self) -> float:
        """Angle between the torso's up axis and the world's up axis, rad."""
        roll, pitch, _ = self.euler
        return math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch))))
