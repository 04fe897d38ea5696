"""The frames of a simulated world: a tilted floor, the IMU's mounting error, a push.

The physics runs in the floor's frame (the ground plane is z = 0), so a tilted floor is
gravity turned the other way; the IMU reports against true gravity, so it sees the tilt
as a real one would. Its mounting error turns everything it reports by a fixed rotation.
"""

from __future__ import annotations

import math

import numpy as np

from plend.model.sim_world import SimWorld

GRAVITY = 9.81


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` (rad) about the unit vector ``axis``."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation matrix of roll, pitch, yaw (rad), applied x then y then z (URDF, PyBullet)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))  # fmt: skip
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])  # fmt: skip


def matrix_quaternion(m: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w, PyBullet's order) of a rotation matrix."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        return ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    i = int(np.argmax(np.diag(m)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * math.sqrt(max(1e-12, 1.0 + m[i, i] - m[j, j] - m[k, k]))
    q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
    q[i] = s / 4
    q[j] = (m[j, i] + m[i, j]) / s
    q[k] = (m[k, i] + m[i, k]) / s
    return (q[0], q[1], q[2], q[3])


class WorldFrames:
    """Gravity, the floor and the IMU's mounting of one world."""

    def __init__(self, world: SimWorld):
        direction = math.radians(world.floor_tilt_direction_deg)
        uphill = np.array([math.cos(direction), math.sin(direction), 0.0])
        # The floor rises towards ``uphill``: turning it about z x uphill by -tilt lifts it.
        self.floor_to_true = axis_angle(
            np.cross([0.0, 0.0, 1.0], uphill), -math.radians(world.floor_tilt_deg)
        )
        self.gravity = self.floor_to_true.T @ np.array([0.0, 0.0, -GRAVITY])
        self.mounting = rpy_matrix(*(math.radians(v) for v in world.imu_bias_deg))
        push = math.radians(world.push_direction_deg)
        self.push_direction = np.array([math.cos(push), math.sin(push), 0.0])
        self.level = not world.floor_tilt_deg and not any(world.imu_bias_deg)

    def imu_in_floor(self, torso: np.ndarray) -> np.ndarray:
        """The IMU's axes in the floor's frame, given the torso's."""
        return torso @ self.mounting

    def imu_quaternion(self, torso: np.ndarray) -> tuple[float, float, float, float]:
        """The IMU's orientation against true gravity (x, y, z, w)."""
        return matrix_quaternion(self.floor_to_true @ torso @ self.mounting)
