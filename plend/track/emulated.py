"""The emulated camera: frames rendered from the simulated robot's true pose.

The camera looks at a textured floor with the floor marker on it and the robot's marker
(or coloured ball) on the torso; each plane is projected with its exact homography from a
pre-filtered image of about the right resolution (so small markers are not aliased), then
the lens distorts the image, it is blurred, exposed and gets pixel noise. The robot's body
is not drawn: only what the tracker looks for, and the floor it must tell apart from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plend.track.detect import CameraModel
from plend.track.geometry import Pose, look_at
from plend.track.markers import board_image, cv2_module, marker_bits, marker_image
from plend.track.settings import TrackConfig

MASTER_BIT_PX = 64  # the marker's master image, pixels per bit
FLOOR_M_PER_PX = 0.001
MIP_STEP = 2**0.25


@dataclass(frozen=True)
class Frame:
    """One image as the camera delivers it: captured at ``stamp``, available at ``ready``."""

    image: np.ndarray
    stamp: float
    ready: float


class _Mips:
    """One image at the resolutions it is drawn at (area-averaged from the master)."""

    def __init__(self, master: np.ndarray):
        self.master = master
        self._cache: dict[int, np.ndarray] = {}

    def near(self, side_px: float) -> np.ndarray:
        level = max(3, math.ceil(math.log(max(side_px * 1.5, 8.0)) / math.log(MIP_STEP)))
        if level not in self._cache:
            cv2 = cv2_module()
            width = min(self.master.shape[1], round(MIP_STEP**level))
            height = max(2, round(width * self.master.shape[0] / self.master.shape[1]))
            self._cache[level] = cv2.resize(self.master, (width, height), interpolation=cv2.INTER_AREA)
        return self._cache[level]


class EmulatedCamera:
    """Renders what a camera above the simulated robot would see."""

    def __init__(self, config: TrackConfig, colour: bool = False):
        self.config = config
        self.settings = config.emulated
        self.colour = colour or config.method == "blob"
        self.size = (config.width, config.height)
        f = self.settings.focal_px
        self.matrix = np.array(
            [[f, 0.0, (config.width - 1) / 2], [0.0, f, (config.height - 1) / 2], [0, 0, 1]]
        )
        self.distortion = np.asarray(self.settings.distortion, float)
        self.camera_in_floor = look_at(self.settings.position_m, self.settings.look_at_m)
        self.floor_in_camera = self.camera_in_floor.inverse()
        self._rng = np.random.default_rng(self.settings.seed)
        bits = marker_bits(config.dictionary)
        self._marker = _Mips(marker_image(config.dictionary, config.marker_id, MASTER_BIT_PX))
        self._marker_card_m = config.marker_size_m * (bits + 2) / bits
        self._board: _Mips | None = None
        self._maps = self._distortion_maps()
        self._background = self._draw_floor()

    def model(self) -> CameraModel:
        """The camera exactly as it is (what a perfect calibration would find)."""
        return CameraModel(self.matrix.copy(), self.distortion.copy(), self.size, self.floor_in_camera)

    # -- rendering ----------------------------------------------------------------------

    def render(self, torso: Pose | None, board_pose: Pose | None = None) -> np.ndarray:
        """The delivered image with the torso at ``torso`` (floor frame; None: no robot)
        and the calibration board at ``board_pose`` (floor frame; None: none)."""
        image = self._background.copy()
        if torso is not None:
            self._draw_robot(image, torso)
        if board_pose is not None:
            self._draw_board(image, board_pose)
        return self._effects(image)

    def _draw_robot(self, image: np.ndarray, torso: Pose) -> None:
        offset = Pose(np.eye(3), np.asarray(self.config.marker_offset_m, float))
        mount = self.floor_in_camera @ torso @ offset
        if self.config.method == "blob":
            self._draw_ball(image, mount.t)
        else:
            self._draw_plane(image, self._marker, mount, self._marker_card_m)

    def _draw_board(self, image: np.ndarray, pose: Pose) -> None:
        if self._board is None:
            self._board = _Mips(board_image(4000.0))
        master = self._board.master
        width_m = master.shape[1] / 4000.0
        self._draw_plane(image, self._board, self.floor_in_camera @ pose, width_m)

    def _draw_plane(self, image: np.ndarray, mips: _Mips, plane: Pose, width_m: float) -> None:
        """Draw an image lying on a plane (its centre at the plane's origin, x right,
        y up), ``width_m`` wide, into the ideal image."""
        cv2 = cv2_module()
        if plane.t[2] <= 0.01 or float(plane.r[:, 2] @ plane.t) >= 0:
            return  # behind the camera, or seen from the back
        corners = self._project(plane, width_m, mips.master.shape)
        side = float(np.max(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1)))
        source = mips.near(side)
        h, w = source.shape[:2]
        lo = np.floor(corners.min(axis=0)).astype(int) - 2
        hi = np.ceil(corners.max(axis=0)).astype(int) + 3
        x0, y0 = max(0, lo[0]), max(0, lo[1])
        x1, y1 = min(image.shape[1], hi[0]), min(image.shape[0], hi[1])
        if x1 <= x0 or y1 <= y0:
            return
        s = width_m / w
        to_plane = np.array([[s, 0, -(w - 1) / 2 * s], [0, -s, (h - 1) / 2 * s], [0, 0, 1]])
        to_image = self.matrix @ np.column_stack([plane.r[:, 0], plane.r[:, 1], plane.t]) @ to_plane
        shifted = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ to_image
        roi = np.ascontiguousarray(image[y0:y1, x0:x1])
        if self.colour and source.ndim == 2:
            source = cv2.cvtColor(source, cv2.COLOR_GRAY2BGR)
        cv2.warpPerspective(
            source, shifted, (x1 - x0, y1 - y0), dst=roi, flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_TRANSPARENT,
        )  # fmt: skip
        image[y0:y1, x0:x1] = roi

    def _project(self, plane: Pose, width_m: float, shape: tuple[int, ...]) -> np.ndarray:
        hw, hh = width_m / 2, width_m * shape[0] / shape[1] / 2
        local = np.array([[-hw, hh, 0], [hw, hh, 0], [hw, -hh, 0], [-hw, -hh, 0]])
        cam = plane.apply(local)
        pixels = cam @ self.matrix.T
        return pixels[:, :2] / pixels[:, 2:3]

    def _draw_ball(self, image: np.ndarray, centre: np.ndarray) -> None:
        cv2 = cv2_module()
        if centre[2] <= 0.05:
            return
        u, v, w = self.matrix @ centre
        radius = self.settings.focal_px * self.config.blob_diameter_m / 2 / float(np.linalg.norm(centre))
        hsv = (np.array(self.config.blob_hsv_low) + np.array(self.config.blob_hsv_high)) / 2
        colour = cv2.cvtColor(np.array([[hsv]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(float)
        cu, cv = u / w, v / w
        x0, y0 = max(0, int(cu - radius - 2)), max(0, int(cv - radius - 2))
        x1, y1 = min(image.shape[1], int(cu + radius + 3)), min(image.shape[0], int(cv + radius + 3))
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1]
        # Coverage of each pixel by the disc, from its centre's distance to the rim.
        alpha = np.clip(radius + 0.5 - np.hypot(xs - cu, ys - cv), 0.0, 1.0)[..., None]
        roi = image[y0:y1, x0:x1].astype(float)
        image[y0:y1, x0:x1] = np.round(roi * (1 - alpha) + colour * alpha).astype(np.uint8)

    def _draw_floor(self) -> np.ndarray:
        cv2 = cv2_module()
        rng = np.random.default_rng(self.settings.seed + 1)
        extent = self._floor_extent()
        n = (int(extent[2] / FLOOR_M_PER_PX), int(extent[3] / FLOOR_M_PER_PX))
        coarse = rng.integers(0, 256, (max(2, n[1] // 24), max(2, n[0] // 24))).astype(np.uint8)
        texture = cv2.resize(coarse, n, interpolation=cv2.INTER_CUBIC)
        grain = rng.integers(0, 40, (n[1], n[0])).astype(np.uint8)
        texture = cv2.GaussianBlur(cv2.addWeighted(texture, 0.35, grain, 1.0, 90), (0, 0), 1.5)
        if self.colour:
            texture = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
        image = np.zeros((self.size[1], self.size[0], 3) if self.colour else self.size[::-1], np.uint8)
        floor_plane = Pose(np.eye(3), np.array([extent[0] + extent[2] / 2, extent[1] + extent[3] / 2, 0.0]))
        self._draw_plane(image, _Mips(texture), self.floor_in_camera @ floor_plane, extent[2])
        position, euler = self.config.floor_marker_in_floor()
        floor_marker = _Mips(marker_image(self.config.dictionary, self.config.floor_marker_id, MASTER_BIT_PX))
        bits = marker_bits(self.config.dictionary)
        pose = self.floor_in_camera @ Pose.from_euler(position, euler)
        self._draw_plane(image, floor_marker, pose, self.config.floor_marker_size_m * (bits + 2) / bits)
        return image

    def _floor_extent(self) -> tuple[float, float, float, float]:
        """x, y, width, height (m) of a floor rectangle covering the view."""
        cv2 = cv2_module()
        w, h = self.size
        pixels = np.array([[[0, 0]], [[w, 0]], [[w, h]], [[0, h]]], np.float64)
        rays = cv2.undistortPoints(pixels, self.matrix, np.zeros(5)).reshape(-1, 2)
        cam = self.camera_in_floor
        points = []
        for x, y in rays:
            d = cam.r @ np.array([x, y, 1.0])
            s = -cam.t[2] / d[2] if d[2] < -1e-6 else 20.0
            points.append(cam.t + d * min(s, 20.0))
        xy = np.array(points)[:, :2]
        lo, hi = xy.min(axis=0) - 0.1, xy.max(axis=0) + 0.1
        return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])

    # -- the lens and the sensor ----------------------------------------------------------

    def _distortion_maps(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not np.any(self.distortion):
            return None
        cv2 = cv2_module()
        w, h = self.size
        grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).reshape(-1, 1, 2).astype(np.float64)
        ideal = cv2.undistortPoints(grid, self.matrix, self.distortion, P=self.matrix).reshape(h, w, 2)
        return ideal[..., 0].astype(np.float32), ideal[..., 1].astype(np.float32)

    def _effects(self, image: np.ndarray) -> np.ndarray:
        cv2 = cv2_module()
        s = self.settings
        if self._maps is not None:
            image = cv2.remap(
                image, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        if s.blur_sigma_px > 0:
            image = cv2.GaussianBlur(image, (0, 0), s.blur_sigma_px)
        if s.exposure != 1.0:
            image = cv2.convertScaleAbs(image, alpha=s.exposure)
        if s.noise_sigma > 0:
            noise = np.empty(image.shape, np.int16)
            cv2.randn(noise, 0.0, s.noise_sigma)
            image = cv2.add(image.astype(np.int16), noise, dtype=cv2.CV_8U)
        return image

    # -- delivery -------------------------------------------------------------------------

    def capture(self, torso: Pose | None, stamp: float) -> Frame | None:
        """A frame captured at ``stamp``, or None when this one is dropped."""
        if self.settings.drop_rate > 0 and self._rng.random() < self.settings.drop_rate:
            return None
        return Frame(self.render(torso), stamp, stamp + self.settings.latency_s)

    def board_views(self, count: int, seed: int = 0) -> list[np.ndarray]:
        """Images of the calibration board held at ``count`` varied poses in front of the
        camera (what a person does while calibrating)."""
        rng = np.random.default_rng(seed)
        cam = self.camera_in_floor
        images = []
        for _ in range(count):
            distance = rng.uniform(0.35, 0.6)
            centre_px = rng.uniform([0.3, 0.3], [0.7, 0.7]) * np.array(self.size)
            ray = np.linalg.solve(self.matrix, np.array([*centre_px, 1.0]))
            centre = cam.apply((ray / np.linalg.norm(ray) * distance)[None, :])[0]
            tilt = Pose.from_euler(
                (0, 0, 0), (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(-3.1, 3.1))
            )
            facing = Pose(cam.r @ np.diag([1.0, -1.0, -1.0]), centre)  # the board faces the camera
            images.append(self.render(None, facing @ tilt))
        return images
