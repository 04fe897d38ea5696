"""The ``[track]`` configuration: the camera, the markers, the pose stream, and the
emulated camera. Imported by plend.core.config; needs no OpenCV."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ARUCO_DICTIONARIES = (
    "DICT_4X4_50", "DICT_4X4_100", "DICT_5X5_50", "DICT_5X5_100", "DICT_6X6_50", "DICT_6X6_100",
    "DICT_APRILTAG_36h11",
)  # fmt: skip


def _checks() -> Any:
    from plend.core import config  # late: plend.core.config imports this module

    return config


def _vector(key: str, value: Any, n: int, lo: float, hi: float) -> tuple[float, ...]:
    from plend.core.errors import ConfigError

    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ConfigError(f"{key} must be a list of {n} numbers, got {value!r}")
    for v in value:
        _checks()._check_range(f"{key}[]", v, lo, hi)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class EmulatedCameraConfig:
    """A camera rendered from the simulated robot's true pose (tests and rehearsal).

    Attributes:
        focal_px: focal length in pixels (fx = fy).
        distortion: OpenCV's k1, k2, p1, p2, k3 of the lens.
        position_m: the camera's place in the world (floor) frame.
        look_at_m: the floor point at the image centre.
        fps: frames per second.
        noise_sigma: standard deviation of the pixel noise, grey levels.
        blur_sigma_px: Gaussian blur (defocus), pixels; 0 for none.
        exposure: brightness gain (1 = a well exposed image; below 1 darker).
        drop_rate: fraction of frames that never arrive.
        latency_s: delay from capture to delivery.
        seed: seeds the noise and the drops.
    """

    focal_px: float = 520.0
    distortion: tuple[float, ...] = (-0.12, 0.05, 0.0, 0.0, 0.0)
    position_m: tuple[float, ...] = (0.32, 0.0, 1.0)
    look_at_m: tuple[float, ...] = (0.32, 0.0, 0.0)
    fps: float = 30.0
    noise_sigma: float = 2.0
    blur_sigma_px: float = 0.7
    exposure: float = 1.0
    drop_rate: float = 0.0
    latency_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        c = _checks()
        c._check_range("track.emulated.focal_px", self.focal_px, 100.0, 5000.0)
        set_ = object.__setattr__
        set_(self, "distortion", _vector("track.emulated.distortion", self.distortion, 5, -1.0, 1.0))
        set_(self, "position_m", _vector("track.emulated.position_m", self.position_m, 3, -10.0, 10.0))
        set_(self, "look_at_m", _vector("track.emulated.look_at_m", self.look_at_m, 3, -10.0, 10.0))
        c._check_range("track.emulated.fps", self.fps, 1.0, 240.0)
        c._check_range("track.emulated.noise_sigma", self.noise_sigma, 0.0, 50.0)
        c._check_range("track.emulated.blur_sigma_px", self.blur_sigma_px, 0.0, 10.0)
        c._check_range("track.emulated.exposure", self.exposure, 0.05, 4.0)
        c._check_range("track.emulated.drop_rate", self.drop_rate, 0.0, 1.0)
        c._check_range("track.emulated.latency_s", self.latency_s, 0.0, 2.0)
        c._check_int("track.emulated.seed", self.seed, 0, 2**32 - 1)
        if self.position_m[2] <= self.look_at_m[2]:
            from plend.core.errors import ConfigError

            raise ConfigError("track.emulated.position_m must be above track.emulated.look_at_m")


@dataclass(frozen=True)
class TrackConfig:
    """The camera pose source (``plend track``) and the daemon's use of its poses.

    Attributes:
        method: "aruco" (a marker on the torso: position and orientation) or "blob" (a
            coloured ball, the original project's method: position only).
        camera: a V4L2 device (/dev/video0), its index, a video file, or "emulated".
        width, height, fps: the capture format asked of the camera.
        dictionary: the ArUco dictionary of both markers.
        marker_id, marker_size_m: the torso's marker (black square side, metres).
        marker_offset_m: the marker's centre (or the ball's) in the torso frame; the
            marker lies flat on the torso's top, its x along the robot's forward.
        floor_marker_id, floor_marker_size_m: the marker that fixes the floor frame.
        floor_marker_pose: where that marker lies in the floor frame: x, y (m), yaw (deg).
            The floor frame is the one the robot's pose is given in: put the robot's
            start at its origin, facing +x.
        blob_hsv_low, blob_hsv_high: the ball's colour range (OpenCV HSV, H in 0-179).
        blob_diameter_m: the ball's diameter.
        max_reprojection_px: a marker fit worse than this is not a pose.
        calibration_file: the camera calibration; empty: camera.json in the state dir.
        stale_timeout_s: in the daemon, a pose older than this is stale.
        max_rate_hz: the daemon takes at most this many poses a second.
        max_speed_m_s: a pose further from the last than this speed allows is refused.
        velocity_window_s: forward velocity is the slope over this much pose history.
        nice: the tracker lowers its own priority by this much, so it never delays the
            control loop on a shared CPU.
        emulated: the emulated camera.
    """

    method: str = "aruco"
    camera: str = "/dev/video0"
    width: int = 640
    height: int = 480
    fps: float = 30.0
    dictionary: str = "DICT_4X4_50"
    marker_id: int = 0
    marker_size_m: float = 0.05
    marker_offset_m: tuple[float, ...] = (-0.004, 0.0, 0.040)
    floor_marker_id: int = 1
    floor_marker_size_m: float = 0.10
    floor_marker_pose: tuple[float, ...] = (0.0, 0.3, 0.0)
    blob_hsv_low: tuple[float, ...] = (40.0, 80.0, 60.0)
    blob_hsv_high: tuple[float, ...] = (80.0, 255.0, 255.0)
    blob_diameter_m: float = 0.04
    max_reprojection_px: float = 1.5
    calibration_file: str = ""
    stale_timeout_s: float = 0.25
    max_rate_hz: float = 120.0
    max_speed_m_s: float = 1.5
    velocity_window_s: float = 0.3
    nice: int = 10
    emulated: EmulatedCameraConfig = field(default_factory=EmulatedCameraConfig)

    def __post_init__(self) -> None:
        c = _checks()
        c._check_choice("track.method", self.method, ("aruco", "blob"))
        if not isinstance(self.camera, str) or not self.camera:
            raise c.ConfigError(
                f"track.camera must be a device, an index, a file or 'emulated', got {self.camera!r}"
            )
        c._check_int("track.width", self.width, 64, 4096)
        c._check_int("track.height", self.height, 48, 4096)
        c._check_range("track.fps", self.fps, 1.0, 240.0)
        c._check_choice("track.dictionary", self.dictionary, ARUCO_DICTIONARIES)
        c._check_int("track.marker_id", self.marker_id, 0, 49)
        c._check_int("track.floor_marker_id", self.floor_marker_id, 0, 49)
        if self.marker_id == self.floor_marker_id:
            raise c.ConfigError("track.marker_id and track.floor_marker_id must differ")
        c._check_range("track.marker_size_m", self.marker_size_m, 0.01, 0.5)
        c._check_range("track.floor_marker_size_m", self.floor_marker_size_m, 0.02, 2.0)
        set_ = object.__setattr__
        set_(self, "marker_offset_m", _vector("track.marker_offset_m", self.marker_offset_m, 3, -0.5, 0.5))
        pose = _vector("track.floor_marker_pose", self.floor_marker_pose, 3, -360.0, 360.0)
        set_(self, "floor_marker_pose", pose)
        set_(self, "blob_hsv_low", _vector("track.blob_hsv_low", self.blob_hsv_low, 3, 0.0, 255.0))
        set_(self, "blob_hsv_high", _vector("track.blob_hsv_high", self.blob_hsv_high, 3, 0.0, 255.0))
        c._check_range("track.blob_diameter_m", self.blob_diameter_m, 0.005, 0.5)
        c._check_range("track.max_reprojection_px", self.max_reprojection_px, 0.1, 20.0)
        if not isinstance(self.calibration_file, str):
            raise c.ConfigError(f"track.calibration_file must be a path, got {self.calibration_file!r}")
        c._check_range("track.stale_timeout_s", self.stale_timeout_s, 0.02, 5.0)
        c._check_range("track.max_rate_hz", self.max_rate_hz, 1.0, 1000.0)
        c._check_range("track.max_speed_m_s", self.max_speed_m_s, 0.05, 20.0)
        c._check_range("track.velocity_window_s", self.velocity_window_s, 0.02, 5.0)
        c._check_int("track.nice", self.nice, 0, 19)

    def floor_marker_in_floor(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The floor marker's position and roll/pitch/yaw (rad) in the floor frame."""
        x, y, yaw_deg = self.floor_marker_pose
        return (x, y, 0.0), (0.0, 0.0, math.radians(yaw_deg))
