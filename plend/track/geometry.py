"""Rigid poses and angles, numpy only (the daemon and the tracker share it).

A :class:`Pose` is frame B in frame A: ``p_A = R @ p_B + t``. Euler angles are roll,
pitch, yaw about x, y, z with ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, as PyBullet and the
IMU report them. Camera frames follow OpenCV: x right, y down, z along the view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def euler_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation matrix of roll, pitch, yaw (rad)."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])  # fmt: skip


def matrix_to_euler(r: np.ndarray) -> tuple[float, float, float]:
    """Roll, pitch, yaw (rad) of a rotation matrix."""
    pitch = math.asin(max(-1.0, min(1.0, -float(r[2, 0]))))
    roll = math.atan2(float(r[2, 1]), float(r[2, 2]))
    yaw = math.atan2(float(r[1, 0]), float(r[0, 0]))
    return roll, pitch, yaw


def wrap_angle(angle: float) -> float:
    """``angle`` in (-pi, pi]."""
    return math.atan2(math.sin(angle), math.cos(angle))


@dataclass(frozen=True)
class Pose:
    """Frame B in frame A: rotation ``r`` (3x3) and translation ``t`` (3,), metres."""

    r: np.ndarray
    t: np.ndarray

    @classmethod
    def from_euler(cls, position: Sequence[float], euler: Sequence[float]) -> Pose:
        return cls(euler_to_matrix(*euler), np.asarray(position, float))

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    def __matmul__(self, other: Pose) -> Pose:
        """Composition: (A<-B) @ (B<-C) = (A<-C)."""
        return Pose(self.r @ other.r, self.r @ other.t + self.t)

    def inverse(self) -> Pose:
        return Pose(self.r.T, -self.r.T @ self.t)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) of frame B in frame A."""
        return np.asarray(points, float) @ self.r.T + self.t

    def euler(self) -> tuple[float, float, float]:
        return matrix_to_euler(self.r)


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (1.0, 0.0, 0.0)) -> Pose:
    """An OpenCV camera at ``eye`` looking at ``target``; ``up`` (world) points to the
    top of the image. Returns the camera frame in the world."""
    eye_v, target_v = np.asarray(eye, float), np.asarray(target, float)
    z = target_v - eye_v
    z /= np.linalg.norm(z)
    y = -np.asarray(up, float)
    y = y - z * float(y @ z)
    if np.linalg.norm(y) < 1e-9:
        raise ValueError("the camera's up direction is parallel to its view")
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return Pose(np.column_stack([x, y, z]), eye_v)


def tilt_deg(r: np.ndarray) -> float:
    """Angle between a frame's z axis and the world's z axis, degrees."""
    return math.degrees(math.acos(max(-1.0, min(1.0, float(r[2, 2])))))
