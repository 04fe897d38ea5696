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
SHADOW = (150, 152, 150)
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
    image = _background(view.width, view.height, int(np.clip(round(camera.horizon_row()), 0, view.height)))
    _floor(image, camera, cv2)
    corners = _all_corners(boxes)
    _shadow(image, camera, corners, cv2)
    _boxes(image, camera, boxes, corners, cv2)
    return image


_BACKGROUNDS: dict[tuple[int, int, int], np.ndarray] = {}


def _background(width: int, height: int, horizon: int) -> np.ndarray:
    """Sky above the horizon, floor below: a copy of one made once per size and horizon."""
    key = (width, height, horizon)
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 16:
            _BACKGROUNDS.clear()
        made = np.empty((height, width, 3), np.uint8)
        made[:horizon], made[horizon:] = SKY, FLOOR
        _BACKGROUNDS[key] = made
    return _BACKGROUNDS[key].copy()


def _floor(image: np.ndarray, camera: Camera, cv2: Any) -> None:
    """The checker tiles around the point looked at (fixed to the floor, so they show motion)."""
    tx, ty, _ = camera.view.target
    i0, j0 = math.floor(tx / TILE_M) - TILES // 2, math.floor(ty / TILE_M) - TILES // 2
    xs = (i0 + np.arange(TILES + 1)) * TILE_M
    ys = (j0 + np.arange(TILES + 1)) * TILE_M
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1)
    points = camera.to_camera(np.concatenate([grid, np.zeros((*grid.shape[:2], 1))], axis=-1))
    in_front = points[..., 2] > NEAR_M
    pixels = camera.to_pixels(np.where(in_front[..., None], points, 1.0))
    i, j = np.meshgrid(np.arange(TILES), np.arange(TILES), indexing="ij")
    dark = (i + j + i0 + j0) % 2 == 1
    ok = dark & in_front[:-1, :-1] & in_front[1:, :-1] & in_front[1:, 1:] & in_front[:-1, 1:]
    i, j = i[ok], j[ok]
    quads = np.stack([pixels[i, j], pixels[i + 1, j], pixels[i + 1, j + 1], pixels[i, j + 1]], axis=1)
    cv2.fillPoly(image, list(np.round(quads * 16).astype(np.int32)), TILE, cv2.LINE_AA, 4)


def _shadow(image: np.ndarray, camera: Camera, corners: np.ndarray, cv2: Any) -> None:
    """A dark patch under the robot: its boxes squashed onto the floor."""
    if corners.size == 0:
        return
    flat = corners.reshape(-1, 3) * np.array([1.0, 1.0, 0.0])
    points = camera.to_camera(flat)
    if (points[:, 2] <= NEAR_M).any():
        return
    hull = cv2.convexHull(np.round(camera.to_pixels(points) * 16).astype(np.int32))
    cv2.fillConvexPoly(image, hull, SHADOW, cv2.LINE_AA, 4)


def _all_corners(boxes: list[SceneBox]) -> np.ndarray:
    """The 8 corners of every box in the world frame, (boxes, 8, 3)."""
    if not boxes:
        return np.zeros((0, 8, 3))
    rotations = np.stack([b.rotation for b in boxes])
    halves = np.stack([b.half_extents for b in boxes])
    centers = np.stack([b.center for b in boxes])
    return centers[:, None] + np.einsum("nij,nkj->nki", rotations, _CORNERS[None] * halves[:, None])


_FACE_CORNERS = np.array([face for face, _, _ in _FACES])  # (6, 4)
_FACE_AXES = np.array([axis for _, axis, _ in _FACES])
_FACE_SIGNS = np.array([sign for _, _, sign in _FACES], float)


def _boxes(image: np.ndarray, camera: Camera, boxes: list[SceneBox], corners: np.ndarray, cv2: Any) -> None:
    """Every face that looks at the camera, far ones first, flat shaded."""
    if not boxes:
        return
    rotations = np.stack([b.rotation for b in boxes])  # (n, 3, 3)
    halves = np.stack([b.half_extents for b in boxes])  # (n, 3)
    centers = np.stack([b.center for b in boxes])  # (n, 3)
    colours = np.array([b.rgba[:3] for b in boxes], float)  # (n, 3) RGB
    cam = camera.to_camera(corners.reshape(-1, 3)).reshape(corners.shape)
    keep: np.ndarray = np.all(cam[:, :, 2] > NEAR_M, axis=1)  # a box the camera is in or behind: left out
    normals = rotations[:, :, _FACE_AXES].transpose(0, 2, 1) * _FACE_SIGNS[None, :, None]  # (n, 6, 3)
    face_centers = centers[:, None] + normals * halves[:, _FACE_AXES][..., None]
    facing = np.einsum("nfk,nfk->nf", normals, face_centers - camera.eye) < 0.0
    visible = facing & keep[:, None]
    n, f = np.nonzero(visible)
    if n.size == 0:
        return
    depth = cam[n[:, None], _FACE_CORNERS[f], 2].mean(axis=1)
    light = 0.45 + 0.55 * np.clip(normals[n, f] @ LIGHT, 0.0, None)
    shade = np.round(colours[n][:, ::-1] * 255.0 * light[:, None]).astype(int).tolist()  # BGR
    polygons = np.round(camera.to_pixels(cam[n[:, None], _FACE_CORNERS[f]]) * 16).astype(np.int32)
    for k in np.argsort(-depth).tolist():  # far first: nearer faces paint over them
        cv2.fillConvexPoly(image, polygons[k], shade[k], cv2.LINE_AA, 4)
        cv2.polylines(image, [polygons[k]], True, EDGE, 1, cv2.LINE_AA, 4)
