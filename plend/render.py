"""A small renderer for the simulated robot: its boxes, flat shaded, over a checkered floor.

The robot's model is 19 boxes, so drawing them with OpenCV's polygon fill (far faces
first, back faces culled) takes about a millisecond a frame at 320x240, several times
less than PyBullet's software renderer; videos of runs cost little on top of the run.
It needs numpy and OpenCV only; the boxes come from the simulation
(plend.hal.sim.SimHal.scene), the camera is a plend.hal.sim_scene.CameraView.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plend.hal.sim_scene import CameraView, SceneBox, eye

NEAR_M = 0.02
TILE_M = 0.05  # floor checker size
TILES = 24  # tiles drawn along each floor axis, around the point looked at
SKY, FLOOR, TILE = (236, 228, 220), (205, 205, 200), (178, 180, 178)  # BGR
EDGE = (70, 70, 70)
LIGHT = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
# A box's 8 corners (unit cube) and its 6 faces: corner indices and outward normal axis.
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
_FACES = (
    ((0, 1, 3, 2), 0, -1), ((4, 6, 7, 5), 0, 1), ((0, 4, 5, 1), 1, -1),
    ((2, 3, 7, 6), 1, 1), ((0, 2, 6, 4), 2, -1), ((1, 5, 7, 3), 2, 1),
)  # fmt: skip


class Camera:
    """A pinhole camera for ``view``, with no roll: world points to pixels."""

    def __init__(self, view: CameraView):
        self.view = view
        self.eye = eye(view)
        forward = np.asarray(view.target, float) - self.eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        self.axes = np.stack([right, np.cross(right, forward), forward])  # rows: x right, y up, z depth
        self.focal = (view.height / 2.0) / math.tan(math.radians(view.fov_deg) / 2.0)
        self.center = np.array([view.width / 2.0, view.height / 2.0])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, float) - self.eye) @ self.axes.T

    def to_pixels(self, camera_points: np.ndarray) -> np.ndarray:
        """Pixels of points in front of the camera (depth > 0), as float (x right, y down)."""
        z = camera_points[..., 2:3]
        xy = camera_points[..., :2] / z * self.focal
        return self.center + xy * np.array([1.0, -1.0])

    def horizon_row(self) -> float:
        """The image row of the horizon (the camera never rolls, so it is level)."""
        pitch = math.radians(self.view.pitch_deg)
        return float(self.center[1] + self.focal * math.tan(pitch))


def render(boxes: list[SceneBox], view: CameraView) -> np.ndarray:
    """The robot's boxes seen from ``view`` over the floor: BGR, (height, width, 3)."""
    import cv2

    camera = Camera(view)
    image = np.empty((view.height, view.width, 3), np.uint8)
    horizon = int(np.clip(round(camera.horizon_row()), 0, view.height))
    image[:horizon] = SKY
    image[horizon:] = FLOOR
    _floor(image, camera, cv2)
    _shadow(image, camera, boxes, cv2)
    _boxes(image, camera, boxes, cv2)
    return image


def _floor(image: np.ndarray, camera: Camera, cv2: Any) -> None:
    """The checker tiles around the point looked at (fixed to the floor, so they show motion)."""
    tx, ty, _ = camera.view.target
    i0, j0 = math.floor(tx / TILE_M) - TILES // 2, math.floor(ty / TILE_M) - TILES // 2
    xs = (i0 + np.arange(TILES + 1)) * TILE_M
    ys = (j0 + np.arange(TILES + 1)) * TILE_M
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1)
    points = camera.to_camera(np.concatenate([grid, np.zeros((*grid.shape[:2], 1))], axis=-1))
    pixels = camera.to_pixels(np.where(points[..., 2:3] > NEAR_M, points, 1.0))
    depth_ok = points[..., 2] > NEAR_M
    for i in range(TILES):
        for j in range((i + i0 + j0) % 2, TILES, 2):
            if depth_ok[i : i + 2, j : j + 2].all():
                quad = pixels[[i, i + 1, i + 1, i], [j, j, j + 1, j + 1]]
                cv2.fillConvexPoly(image, np.round(quad * 16).astype(np.int32), TILE, cv2.LINE_AA, 4)


def _shadow(image: np.ndarray, camera: Camera, boxes: list[SceneBox], cv2: Any) -> None:
    """A soft dark patch under the robot: its boxes squashed onto the floor."""
    if not boxes:
        return
    corners = np.concatenate([_box_corners(b) for b in boxes])
    corners[:, 2] = 0.0
    points = camera.to_camera(corners)
    if (points[:, 2] <= NEAR_M).any():
        return
    hull = cv2.convexHull(np.round(camera.to_pixels(points)).astype(np.int32))
    shade = image.copy()
    cv2.fillConvexPoly(shade, hull, (120, 120, 120), cv2.LINE_AA)
    cv2.addWeighted(shade, 0.35, image, 0.65, 0.0, dst=image)


def _box_corners(box: SceneBox) -> np.ndarray:
    return box.center + (_CORNERS * box.half_extents) @ box.rotation.T


def _boxes(image: np.ndarray, camera: Camera, boxes: list[SceneBox], cv2: Any) -> None:
    faces = []  # (depth, pixel polygon, colour)
    for box in boxes:
        corners = camera.to_camera(_box_corners(box))
        if (corners[:, 2] <= NEAR_M).any():
            continue  # the camera is inside or behind it: leave it out
        pixels = camera.to_pixels(corners)
        world_center = box.center
        for index, axis, sign in _FACES:
            normal = box.rotation[:, axis] * sign
            face_center = world_center + normal * box.half_extents[axis]
            if normal @ (face_center - camera.eye) >= 0.0:
                continue  # facing away
            light = 0.45 + 0.55 * max(0.0, float(normal @ LIGHT))
            colour = tuple(int(c * 255 * light) for c in box.rgba[2::-1])  # RGBA to BGR
            faces.append((float(corners[list(index), 2].mean()), pixels[list(index)], colour))
    faces.sort(key=lambda face: -face[0])  # far first: nearer faces paint over them
    for _, polygon, colour in faces:
        points = np.round(polygon * 16).astype(np.int32)
        cv2.fillConvexPoly(image, points, colour, cv2.LINE_AA, 4)
        cv2.polylines(image, [points], True, EDGE, 1, cv2.LINE_AA, 4)
