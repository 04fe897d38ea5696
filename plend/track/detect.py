"""Finding the robot in a frame: the torso's ArUco marker (6-DoF) or a coloured ball
(position only), turned into the torso's pose in the floor frame.

Corners of a small marker found by OpenCV's corner refinement sit a fraction of a
pixel inside a blurred square, which reads as centimetres of depth at a metre; here each
edge is instead located where the image crosses halfway between black and white, along
many profiles across it, a straight line is fitted to each edge and the corners are the
lines' intersections. Of the two poses a planar square allows, the one that fits clearly
better wins; when both fit alike, the one nearer upright (the marker lies on the torso).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from plend.track.geometry import Pose, tilt_deg
from plend.track.markers import cv2_module, dictionary, marker_bits, marker_corners
from plend.track.settings import TrackConfig

PROFILE_POINTS = 12  # profiles across each edge
REFINE_PASSES = 2  # the second pass is centred on the edge the first one found
MIN_CONTRAST = 25.0  # grey levels between the black square and the white margin
AMBIGUITY_RATIO = 1.6  # a pose whose error is within this factor of the best is a rival


@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera: intrinsics, lens distortion, image size, and where the floor
    frame is (camera <- floor), once it has been set."""

    matrix: np.ndarray
    distortion: np.ndarray
    size: tuple[int, int]
    floor: Pose | None = None


@dataclass(frozen=True)
class Measurement:
    """The torso's pose in the floor frame, seen in a frame captured at ``stamp``."""

    stamp: float
    position: tuple[float, float, float]
    euler: tuple[float, float, float] | None  # None: position only (the ball)
    reprojection_px: float
    detect_s: float
    source: str


@dataclass(frozen=True)
class Lost:
    """No pose in the frame captured at ``stamp``; ``reason`` says why."""

    stamp: float
    reason: str
    detect_s: float = 0.0


Observation = Measurement | Lost


def refine_corners(gray: np.ndarray, corners: np.ndarray, bits: int) -> np.ndarray:
    """Corners (4, 2) of a dark square on a light margin, from fitted edge lines."""
    c = corners.reshape(4, 2).astype(np.float64)
    for _ in range(REFINE_PASSES):
        refined = _refine_once(gray, c, bits)
        if refined is None:
            return c
        c = refined
    return c


def _refine_once(gray: np.ndarray, c: np.ndarray, bits: int) -> np.ndarray | None:
    cv2 = cv2_module()
    ends = np.roll(c, -1, axis=0)
    length = np.linalg.norm(ends - c, axis=1)
    if np.any(length < 4.0):
        return None
    u = (ends - c) / length[:, None]
    normal = np.stack([u[:, 1], -u[:, 0]], axis=1)  # outward for OpenCV's clockwise order
    half = float(np.clip(0.6 * length.mean() / bits, 1.5, 6.0))
    offsets = np.arange(-half, half + 1e-9, 0.25)
    along = np.linspace(0.15, 0.85, PROFILE_POINTS)
    base = c[:, None, :] + along[None, :, None] * (ends - c)[:, None, :]  # (4, P, 2)
    samples = base[:, :, None, :] + offsets[None, None, :, None] * normal[:, None, None, :]
    flat = samples.reshape(-1, len(offsets), 2).astype(np.float32)
    profiles = cv2.remap(gray, flat[..., 0], flat[..., 1], cv2.INTER_LINEAR).astype(np.float64)
    third = max(1, len(offsets) // 4)
    dark, light = profiles[:, :third].mean(axis=1), profiles[:, -third:].mean(axis=1)
    crossing = _crossings(profiles, (dark + light) / 2, offsets)
    good = np.isfinite(crossing) & (light - dark > MIN_CONTRAST)
    points = base.reshape(-1, 2) + np.nan_to_num(crossing)[:, None] * np.repeat(
        normal, PROFILE_POINTS, axis=0
    )
    lines = []
    for edge in range(4):
        rows = slice(edge * PROFILE_POINTS, (edge + 1) * PROFILE_POINTS)
        pts = points[rows][good[rows]]
        if len(pts) < 4:
            return None
        centre = pts.mean(axis=0)
        direction = np.linalg.svd(pts - centre)[2][0]
        lines.append((centre, direction))
    return np.array([_intersect(lines[i - 1], lines[i]) for i in range(4)])


def _crossings(profiles: np.ndarray, mid: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Where each profile rises through its mid level (the rise nearest the centre)."""
    above = profiles >= mid[:, None]
    rising = ~above[:, :-1] & above[:, 1:]
    distance = np.where(
        rising, np.abs(np.arange(rising.shape[1]) - len(offsets) // 2), np.iinfo(np.int32).max
    )
    j = np.argmin(distance, axis=1)
    rows = np.arange(len(profiles))
    p0, p1 = profiles[rows, j], profiles[rows, j + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = offsets[j] + (mid - p0) / (p1 - p0) * (offsets[j + 1] - offsets[j])
    return np.where(rising.any(axis=1), out, np.nan)


def _intersect(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (p1, d1), (p2, d2) = a, b
    s = np.linalg.solve(np.column_stack([d1, -d2]), p2 - p1)
    return p1 + s[0] * d1


class MarkerDetector:
    """Finds one marker id in a greyscale frame and gives its pose in the camera."""

    def __init__(self, dictionary_name: str, size_m: float, camera: CameraModel, max_reprojection_px: float):
        cv2 = cv2_module()
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE  # edges are fitted here instead
        # Three threshold windows (5, 15, 25 px) find markers of 20-150 px at a fraction of
        # the default sweep's cost (3 to 23 px in steps of 10).
        params.adaptiveThreshWinSizeMin = 5
        params.adaptiveThreshWinSizeMax = 25
        params.adaptiveThreshWinSizeStep = 10
        params.perspectiveRemovePixelPerCell = 8  # bits of a 30 px marker read reliably
        self._detector = cv2.aruco.ArucoDetector(dictionary(dictionary_name), params)
        # When those windows miss (noise and blur can break the square's outline in all
        # three), OpenCV's own sweep gets a second look at the whole frame.
        thorough = cv2.aruco.DetectorParameters()
        thorough.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE
        thorough.perspectiveRemovePixelPerCell = 8
        self._thorough = cv2.aruco.ArucoDetector(dictionary(dictionary_name), thorough)
        self._bits = marker_bits(dictionary_name)
        self._object = marker_corners(size_m).astype(np.float32)
        self.camera = camera
        self.max_reprojection_px = max_reprojection_px
        self._roi: tuple[int, int, int, int] | None = None

    def find(
        self, gray: np.ndarray, marker_id: int, up: np.ndarray | None = None
    ) -> tuple[Pose, float] | str:
        """The marker's pose in the camera frame and its reprojection error (px), or why
        there is none. ``up`` (camera frame) is the way the marker should face when two
        poses fit alike."""
        corners = self._corners(gray, marker_id)
        if isinstance(corners, str):
            return corners
        refined = refine_corners(gray, corners, self._bits)
        return self._solve(refined, up)

    def _corners(self, gray: np.ndarray, marker_id: int) -> np.ndarray | str:
        if self._roi is not None:
            x0, y0, x1, y1 = self._roi
            found = self._detect(gray[y0:y1, x0:x1], marker_id)
            if isinstance(found, np.ndarray):
                self._remember(found + np.array([x0, y0], np.float32), gray.shape)
                return found + np.array([x0, y0], np.float32)
        found = self._detect(gray, marker_id)
        if isinstance(found, str) and found.endswith("not found"):
            found = self._detect(gray, marker_id, self._thorough)
        if isinstance(found, np.ndarray):
            self._remember(found, gray.shape)
        else:
            self._roi = None
        return found

    def _detect(self, gray: np.ndarray, marker_id: int, detector: Any = None) -> np.ndarray | str:
        corners, ids, _ = (detector or self._detector).detectMarkers(gray)
        matches = (
            [] if ids is None else [c for c, i in zip(corners, ids.ravel(), strict=True) if i == marker_id]
        )
        if len(matches) > 1:
            return f"{len(matches)} markers with id {marker_id} in view; cover or remove the copies"
        if not matches:
            return f"marker {marker_id} not found"
        return np.asarray(matches[0], np.float32).reshape(4, 2)

    def _remember(self, corners: np.ndarray, shape: tuple[int, ...]) -> None:
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        margin = float(np.max(hi - lo))
        h, w = shape[:2]
        x0, y0 = (max(0, int(v - margin)) for v in lo)
        x1, y1 = min(w, int(hi[0] + margin) + 1), min(h, int(hi[1] + margin) + 1)
        self._roi = (x0, y0, x1, y1)

    def _solve(self, corners: np.ndarray, up: np.ndarray | None) -> tuple[Pose, float] | str:
        cv2 = cv2_module()
        image_points = corners.astype(np.float32)
        _, rvecs, tvecs, errors = cv2.solvePnPGeneric(
            self._object,
            image_points,
            self.camera.matrix,
            self.camera.distortion,
            flags=cv2.SOLVEPNP_IPPE_SQUARE,
        )
        poses = [Pose(cv2.Rodrigues(r)[0], t.reshape(3)) for r, t in zip(rvecs, tvecs, strict=True)]
        errs = [float(e) for e in np.asarray(errors).reshape(-1)]
        best = int(np.argmin(errs))
        rivals = [i for i, e in enumerate(errs) if e <= AMBIGUITY_RATIO * errs[best] + 0.05]
        if up is not None and len(rivals) > 1:
            best = max(rivals, key=lambda i: float(poses[i].r[:, 2] @ up))
        if errs[best] > self.max_reprojection_px:
            return f"marker fit is poor ({errs[best]:.2f} px, limit {self.max_reprojection_px:g} px)"
        return poses[best], errs[best]


class TorsoTracker:
    """The torso's pose in the floor frame from its marker (``method = "aruco"``)."""

    def __init__(self, config: TrackConfig, camera: CameraModel):
        if camera.floor is None:
            raise ValueError("the camera's floor frame is not set")
        self.config = config
        self.camera = camera
        self._camera_in_floor = camera.floor.inverse()
        self._marker_in_torso = Pose(np.eye(3), np.asarray(config.marker_offset_m, float))
        self._torso_from_marker = self._marker_in_torso.inverse()
        self._up = camera.floor.r[:, 2]  # the floor's up, in the camera frame
        self.markers = MarkerDetector(
            config.dictionary, config.marker_size_m, camera, config.max_reprojection_px
        )

    def observe(self, frame: np.ndarray, stamp: float) -> Observation:
        """What this frame shows of the torso."""
        began = time.perf_counter()
        gray = _grey(frame)
        found = self.markers.find(gray, self.config.marker_id, self._up)
        if isinstance(found, str):
            return Lost(stamp, found, time.perf_counter() - began)
        marker, error = found
        torso = self._camera_in_floor @ marker @ self._torso_from_marker
        spent = time.perf_counter() - began
        tilt = tilt_deg(torso.r)
        if tilt > 75.0:
            return Lost(stamp, f"marker pose implausible (tilted {tilt:.0f} deg from upright)", spent)
        if not -0.2 <= torso.t[2] <= 2.0:
            return Lost(stamp, f"marker pose implausible (torso {torso.t[2]:.2f} m above the floor)", spent)
        position = (float(torso.t[0]), float(torso.t[1]), float(torso.t[2]))
        return Measurement(stamp, position, torso.euler(), error, spent, "aruco")


class BlobTracker:
    """The torso's position from a coloured ball on it (``method = "blob"``): the ball's
    centre from the colour's largest region, its distance from its apparent size."""

    def __init__(self, config: TrackConfig, camera: CameraModel):
        if camera.floor is None:
            raise ValueError("the camera's floor frame is not set")
        self.config = config
        self.camera = camera
        self._camera_in_floor = camera.floor.inverse()
        self._low = np.array(config.blob_hsv_low, np.uint8)
        self._high = np.array(config.blob_hsv_high, np.uint8)

    def observe(self, frame: np.ndarray, stamp: float) -> Observation:
        cv2 = cv2_module()
        began = time.perf_counter()
        if frame.ndim != 3:
            return Lost(stamp, "the ball needs a colour camera; this one gives grey frames")
        mask = cv2.inRange(cv2.cvtColor(frame, cv2.COLOR_BGR2HSV), self._low, self._high)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
        if count < 2:
            return Lost(stamp, "no region of the ball's colour", time.perf_counter() - began)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        # The radius from the region's area: its edge is where the colour fades halfway,
        # which a boundary-hugging circle would place half a pixel inside.
        radius = math.sqrt(float(stats[largest, cv2.CC_STAT_AREA]) / math.pi)
        u, v = (float(c) for c in centroids[largest])
        if radius < 3.0:
            return Lost(
                stamp, f"the ball is too small to measure ({radius:.1f} px)", time.perf_counter() - began
            )
        point = self._ball_centre(u, v, radius)
        torso = point - np.asarray(self.config.marker_offset_m, float)  # upright torso assumed
        position = (float(torso[0]), float(torso[1]), float(torso[2]))
        return Measurement(stamp, position, None, 0.0, time.perf_counter() - began, "blob")

    def _ball_centre(self, u: float, v: float, radius_px: float) -> np.ndarray:
        cv2 = cv2_module()
        m = self.camera.matrix
        ray = cv2.undistortPoints(np.array([[[u, v]]], np.float64), m, self.camera.distortion).reshape(2)
        direction = np.array([ray[0], ray[1], 1.0])
        direction /= np.linalg.norm(direction)
        angular_radius = math.atan(radius_px / m[0, 0])
        distance = self.config.blob_diameter_m / 2 / math.sin(angular_radius)
        return self._camera_in_floor.apply(direction[None, :] * distance)[0]


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2_module().cvtColor(frame, cv2_module().COLOR_BGR2GRAY)


def make_tracker(config: TrackConfig, camera: CameraModel) -> TorsoTracker | BlobTracker:
    return BlobTracker(config, camera) if config.method == "blob" else TorsoTracker(config, camera)
