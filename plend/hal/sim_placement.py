"""Putting a simulated robot down as a person does: on both feet.

A model whose soles differ in height (a printed foot, a worn pad) cannot stand upright
with both soles on the floor. Set upright with its lowest point on the floor, the
shorter leg's sole hangs in the air and the robot drops onto it; with soles 8-10 mm
apart that drop threw it over within 0.7 s, even holding the stand pose. A person puts
it down on both feet, tilted: :func:`rest_on_both_feet` tilts it sideways about the
point between its feet until both soles are equally low (13 degrees for soles 10 mm
apart), and the caller then lowers it onto the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

REST_STEPS = 8  # the tilt is found in at most this many steps...
REST_TOLERANCE_M = 2e-5  # ...once the soles are this close to equally low

Pose = tuple[Any, Any]  # PyBullet's base (position, orientation quaternion x, y, z, w)


def rest_on_both_feet(pb: Any, robot: int, feet: Sequence[int], c: dict[str, Any]) -> None:
    """Tilt ``robot`` (PyBullet module ``pb``, client keywords ``c``) about its heading
    until the soles of its ``feet`` links (right, left) are equally low. Secant steps on
    the tilt: the soles' edges and crowns move their lowest points as the robot tilts,
    so a tilt from the feet's spacing alone is off."""
    upright = pb.getBasePositionAndOrientation(robot, **c)
    places = [np.asarray(s[4]) for s in pb.getLinkStates(robot, list(feet), **c)]

    def excess(angle: float) -> float:
        return _tilted_excess(pb, robot, feet, c, upright, places, angle)

    before = (0.0, excess(0.0))
    angle = -float(np.arctan2(before[1], max(_across(pb, upright, places), 1e-3)))
    for _ in range(REST_STEPS):
        now = (angle, excess(angle))
        if abs(now[1]) < REST_TOLERANCE_M or now[1] == before[1]:
            return
        angle = now[0] - now[1] * (now[0] - before[0]) / (now[1] - before[1])
        before = now


def _across(pb: Any, upright: Pose, places: list[np.ndarray]) -> float:
    """The right foot's distance to the left one, across the robot's heading."""
    yaw = pb.getEulerFromQuaternion(upright[1])[2]
    return float(np.array([-np.sin(yaw), np.cos(yaw), 0.0]) @ (places[1] - places[0]))


def _tilted_excess(
    pb: Any, robot: int, feet: Sequence[int], c: dict[str, Any], upright: Pose, places: list[np.ndarray],
    angle: float,
) -> float:  # fmt: skip
    """Tilt the robot from ``upright`` by ``angle`` about its heading, through the point
    between its feet (positive lifts the left foot); how much higher the left sole is."""
    yaw = pb.getEulerFromQuaternion(upright[1])[2]
    turn = pb.getQuaternionFromAxisAngle([np.cos(yaw), np.sin(yaw), 0.0], angle)
    rot = np.asarray(pb.getMatrixFromQuaternion(turn)).reshape(3, 3)
    middle = (places[0] + places[1]) / 2.0
    position = middle + rot @ (np.asarray(upright[0]) - middle)
    orientation = pb.multiplyTransforms([0.0] * 3, turn, [0.0] * 3, upright[1])[1]
    pb.resetBasePositionAndOrientation(robot, position, orientation, **c)
    right, left = (pb.getAABB(robot, link, **c)[0][2] for link in feet)
    return float(left - right)
