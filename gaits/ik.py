"""Closed-form leg inverse kinematics and the forward kinematics that checks it.

Each leg is hip yaw, hip roll, hip pitch, knee, ankle pitch, ankle roll. The IK keeps the
sole parallel to the torso's horizontal plane (turned by the hip yaw when one is asked
for), which makes the chain separable:

1. hip yaw turns the problem into the yawed hip frame;
2. the two roll axes are parallel and the pitch joints cannot move the foot across them,
   so hip roll follows from the ankle roll axis position in the y-z plane, and ankle roll
   undoes it;
3. hip pitch and knee are a planar two-link chain from the hip pitch axis to the ankle
   pitch axis, and ankle pitch undoes their sum.

All lengths and offsets come from the joint table in :mod:`plend.model.robot`, the same
numbers the URDF is built from. Of the two knee solutions the flexed one is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from plend.core.errors import PlendError
from plend.model.robot import LEG_JOINT_NAMES, Joint, Side, joint, sole_offset


class IKError(PlendError, ValueError):
    """A foot target cannot be reached within the joint limits."""


@dataclass(frozen=True)
class LegGeometry:
    """The numbers the closed-form IK needs for one leg, derived from the joint table."""

    side: Side
    joints: tuple[Joint, ...]
    yaw_xy: tuple[float, float]
    hip_roll_yz: tuple[float, float]
    roll_offset: float  # ankle roll axis y minus hip roll axis y, at zero pose
    hip_pitch_xz: tuple[float, float]  # x, and z relative to the hip roll axis
    thigh: tuple[float, float, float]  # length, angle in the x-z plane
    shin: tuple[float, float, float]
    ankle_pitch_above_roll: float
    sole: tuple[float, float, float]  # sole centre minus ankle roll point (x from pitch)


def _link(a: Joint, b: Joint) -> tuple[float, float, float]:
    dx, dz = b.point[0] - a.point[0], b.point[2] - a.point[2]
    return (math.hypot(dx, dz), math.atan2(dz, dx), 0.0)


@cache
def leg_geometry(side: Side) -> LegGeometry:
    """Geometry of the ``side`` leg ("right" or "left")."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    yaw, hroll, hpitch, knee, apitch, aroll = (joint(n) for n in LEG_JOINT_NAMES[side])
    off = sole_offset(side)
    return LegGeometry(
        side=side,
        joints=(yaw, hroll, hpitch, knee, apitch, aroll),
        yaw_xy=(yaw.point[0], yaw.point[1]),
        hip_roll_yz=(hroll.point[1], hroll.point[2]),
        roll_offset=aroll.point[1] - hroll.point[1],
        hip_pitch_xz=(hpitch.point[0], hpitch.point[2] - hroll.point[2]),
        thigh=_link(hpitch, knee),
        shin=_link(knee, apitch),
        ankle_pitch_above_roll=apitch.point[2] - aroll.point[2],
        sole=(off[0] + aroll.point[0] - apitch.point[0], off[1], off[2]),
    )


def _fmt_mm(p: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{1000 * v:.1f}" for v in p) + ") mm"


def leg_ik(side: Side, foot_xyz_m: object, yaw: float = 0.0, check_limits: bool = True) -> np.ndarray:
    """Joint angles that put the ``side`` sole centre at ``foot_xyz_m``, sole level.

    Args:
        side: "right" or "left".
        foot_xyz_m: sole centre in the torso frame, metres.
        yaw: foot heading about the torso z axis, radians (drives the hip yaw joint).
        check_limits: raise if a joint would pass its limit; False leaves that to the
            safety filter downstream (feedback corrections that cannot be validated in
            advance), and a target just past the leg's span gets the leg pointing at it,
            stretched or folded as far as it goes; only a target above the hip raises.

    Returns:
        Six angles (rad) in joint-table order: hip yaw, hip roll, hip pitch, knee,
        ankle pitch, ankle roll.

    Raises:
        IKError: the target is out of reach or needs a joint past its limit (with
            ``check_limits=False``: only a target above the hip).
    """
    g = leg_geometry(side)
    px, py, pz = (float(v) for v in foot_xyz_m)  # type: ignore[attr-defined]
    target = (px, py, pz)
    if not all(math.isfinite(v) for v in (px, py, pz, yaw)):
        raise IKError(f"{side} foot target {target} / yaw {yaw} is not finite")
    # 1. Into the yawed hip frame.
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx, ry = px - g.yaw_xy[0], py - g.yaw_xy[1]
    px, py = g.yaw_xy[0] + cy * rx + sy * ry, g.yaw_xy[1] - sy * rx + cy * ry
    # 2. Hip roll from the ankle roll axis position across the roll axes.
    dy = py - g.sole[1] - g.hip_roll_yz[0]
    dz = pz - g.sole[2] - g.hip_roll_yz[1]
    d2 = dy * dy + dz * dz - g.roll_offset**2
    if d2 <= 1e-12 or dz >= 0.0:
        raise IKError(f"{side} foot target {_fmt_mm(target)} is out of reach (above the hip)")
    depth = math.sqrt(d2)
    roll = math.atan2(dz, dy) - math.atan2(-depth, g.roll_offset)
    roll = math.atan2(math.sin(roll), math.cos(roll))
    # 3. Planar hip pitch and knee, from the hip pitch axis to the ankle pitch axis.
    vx = px - g.sole[0] - g.hip_pitch_xz[0]
    vz = -depth + g.ankle_pitch_above_roll - g.hip_pitch_xz[1]
    l1, a1, _ = g.thigh
    l2, a2, _ = g.shin
    c = (vx * vx + vz * vz - l1 * l1 - l2 * l2) / (2.0 * l1 * l2)
    if not check_limits:
        # Feedback may ask a leg for a little more (or less) than it spans: the leg
        # points at the target, as straight (or as folded) as it goes.
        c = max(-1.0, min(1.0, c))
    if not -1.0 <= c <= 1.0:
        reach = math.hypot(vx, vz) * 1000
        raise IKError(
            f"{side} foot target {_fmt_mm(target)} is out of reach "
            f"(hip-to-ankle distance {reach:.1f} mm, leg spans "
            f"{1000 * abs(l1 - l2):.1f}-{1000 * (l1 + l2):.1f} mm)"
        )
    knee = -math.acos(c) - (a2 - a1)
    wx = l1 * math.cos(a1) + l2 * math.cos(a2 + knee)
    wz = l1 * math.sin(a1) + l2 * math.sin(a2 + knee)
    hip = math.atan2(vz, vx) - math.atan2(wz, wx)
    hip = math.atan2(math.sin(hip), math.cos(hip))
    # Rotations about +x (roll) and -y (pitch) into each joint's own axis sign.
    yj, hr, hp, kn, ap, ar = g.joints
    angles = np.array(
        [
            yaw * yj.axis[2],
            roll * hr.axis[0],
            -hip * hp.axis[1],
            -knee * kn.axis[1],
            (hip + knee) * ap.axis[1],
            -roll * ar.axis[0],
        ]
    )
    if check_limits:
        _check_limits(g, angles, target)
    return angles


def _check_limits(g: LegGeometry, angles: np.ndarray, target: tuple[float, float, float]) -> None:
    for j, a in zip(g.joints, angles, strict=True):
        if not j.within(float(a), 1e-9):
            raise IKError(
                f"{g.side} foot target {_fmt_mm(target)} needs {j.name} ({j.role}) at "
                f"{a:+.3f} rad, past its limit [{j.lower:+.2f}, {j.upper:+.2f}]"
            )


def _rotate_about(
    p: np.ndarray, axis: tuple[float, ...], point: tuple[float, ...], angle: float
) -> np.ndarray:
    k = np.asarray(axis, dtype=float)
    v = p - np.asarray(point)
    c, s = math.cos(angle), math.sin(angle)
    v = v * c + np.cross(k, v) * s + k * np.dot(k, v) * (1.0 - c)
    return v + np.asarray(point)


def leg_fk(side: Side, angles: object) -> np.ndarray:
    """Sole centre (torso frame, metres) for six leg angles in joint-table order."""
    g = leg_geometry(side)
    q = np.asarray(angles, dtype=float).reshape(6)
    aroll = g.joints[5].point
    off = sole_offset(side)
    p = np.array([aroll[0] + off[0], aroll[1] + off[1], aroll[2] + off[2]])
    # Product of exponentials: apply the distal joint first, all in zero-pose coordinates.
    for j, a in zip(reversed(g.joints), reversed(q), strict=True):
        p = _rotate_about(p, j.axis, j.point, float(a))
    return p
