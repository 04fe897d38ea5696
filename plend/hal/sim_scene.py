"""What the simulated world looks like, for pictures: the robot's boxes in the world frame,
and PyBullet's own offscreen renderer.

Both only read the simulation (link frames as of the last physics step); neither steps
nor changes it, so a run that is filmed walks exactly as one that is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SceneBox:
    """One box of the robot's model: centre (m) and axes (columns of ``rotation``) in the
    world frame, half its size along each axis (m), and its colour (RGBA in [0, 1])."""

    center: np.ndarray
    rotation: np.ndarray
    half_extents: np.ndarray
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class CameraView:
    """A camera looking at ``target`` (world, m) from ``distance_m``, turned ``yaw_deg``
    about the vertical (0 looks along +x) and ``pitch_deg`` down (negative) or up."""

    target: tuple[float, float, float]
    distance_m: float = 0.6
    yaw_deg: float = 0.0
    pitch_deg: float = -20.0
    fov_deg: float = 45.0
    width: int = 320
    height: int = 240


def _matrix(pb: Any, quaternion: Any) -> np.ndarray:
    return np.asarray(pb.getMatrixFromQuaternion(quaternion), float).reshape(3, 3)


class SceneReader:
    """Reads the boxes of one robot body; its visual shapes are read once."""

    def __init__(self, pb: Any, robot: int, client: dict[str, Any]):
        self._pb, self._robot, self._c = pb, robot, client
        self._shapes = []
        for shape in pb.getVisualShapeData(robot, **client):
            link, geometry, size, position, orientation, rgba = (
                shape[1], shape[2], shape[3], shape[5], shape[6], shape[7]
            )  # fmt: skip
            box = geometry == pb.GEOM_BOX
            self._shapes.append((link, box, np.asarray(size, float) / 2.0, position, orientation, rgba))
        links = sorted({s[0] for s in self._shapes if s[0] >= 0})
        self._links = links

    def boxes(self) -> list[SceneBox]:
        """Every visual box in the world frame (other shapes: their link's bounding box)."""
        pb, c = self._pb, self._c
        frames = {-1: self._base_frame()}
        if self._links:
            for link, state in zip(self._links, pb.getLinkStates(self._robot, self._links, **c), strict=True):
                frames[link] = (np.asarray(state[4], float), _matrix(pb, state[5]))
        out = []
        for link, box, half, position, orientation, rgba in self._shapes:
            origin, rot = frames[link]
            if box:
                center = origin + rot @ np.asarray(position, float)
                out.append(SceneBox(center, rot @ _matrix(pb, orientation), half, tuple(rgba)))
            else:
                low, high = (np.asarray(v, float) for v in pb.getAABB(self._robot, link, **c))
                out.append(SceneBox((low + high) / 2, np.eye(3), (high - low) / 2, tuple(rgba)))
        return out

    def _base_frame(self) -> tuple[np.ndarray, np.ndarray]:
        # The base's pose is its centre of mass's; its URDF frame is the inertial offset back.
        pb, c = self._pb, self._c
        com, orientation = pb.getBasePositionAndOrientation(self._robot, **c)
        local_com = pb.getDynamicsInfo(self._robot, -1, **c)[3]
        rot = _matrix(pb, orientation)
        return np.asarray(com, float) - rot @ np.asarray(local_com, float), rot


def eye(view: CameraView) -> np.ndarray:
    """Where the camera of ``view`` is, in the world frame."""
    yaw, pitch = np.radians(view.yaw_deg), np.radians(view.pitch_deg)
    forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    return np.asarray(view.target, float) - view.distance_m * forward


def tiny_render(pb: Any, client: dict[str, Any], view: CameraView) -> np.ndarray:
    """PyBullet's software renderer (no display needed): an RGB image, (height, width, 3)."""
    matrix = pb.computeViewMatrix(eye(view).tolist(), list(view.target), [0.0, 0.0, 1.0])
    projection = pb.computeProjectionMatrixFOV(view.fov_deg, view.width / view.height, 0.01, 20.0)
    _, _, rgba, _, _ = pb.getCameraImage(
        view.width, view.height, matrix, projection,
        renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK, **client,
    )  # fmt: skip
    return np.asarray(rgba, np.uint8).reshape(view.height, view.width, 4)[:, :, :3].copy()
