"""The camera calibration: intrinsics from a ChArUco board, the floor frame from a marker
on the floor; one versioned file written atomically, refused clearly when it cannot be
trusted.

``camera.json`` (in the state directory, or ``track.calibration_file``) holds the image
size, the camera matrix, the lens distortion and the fit's RMS error, and, once it has
been measured, the floor frame in the camera (rotation and translation) with the floor
marker it came from. New intrinsics drop the floor (it must be measured again with
them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from plend.core import atomic
from plend.core.errors import ConfigError
from plend.core.files import FileRefusedError, nothing_at, parse_json, read_limited
from plend.track.detect import CameraModel, MarkerDetector
from plend.track.geometry import Pose, tilt_deg
from plend.track.markers import board, cv2_module
from plend.track.settings import TrackConfig

CAMERA_CALIBRATION_VERSION = 1
MIN_BOARD_CORNERS = 10  # of the board's 24 inner corners, for a view to count
MAX_FILE_BYTES = 1 << 20  # the file is about a kilobyte; this only bounds a bad one
READ_TIMEOUT_S = 2.0
MAX_RMS_PX = 1.0  # a worse intrinsic fit is a bad set of views, not a camera
FLOOR_VIEWS = 10


class CameraCalibrationError(ConfigError):
    """The camera calibration is missing, corrupt or cannot be measured; says what to do."""


@dataclass(frozen=True)
class FloorRecord:
    """The floor frame in the camera: ``rotation`` (3x3) and ``translation`` (m), and the
    marker it was measured from (id, size, its pose in the floor frame)."""

    rotation: tuple[tuple[float, ...], ...]
    translation: tuple[float, ...]
    marker_id: int
    marker_size_m: float
    marker_pose: tuple[float, ...]
    error_px: float
    measured_at: str


@dataclass(frozen=True)
class CameraRecord:
    """The whole file."""

    version: int
    camera: str
    created: str
    image_size: tuple[int, int]
    matrix: tuple[tuple[float, ...], ...]
    distortion: tuple[float, ...]
    rms_px: float
    views: int
    floor: FloorRecord | None = None

    def model(self) -> CameraModel:
        floor = None
        if self.floor is not None:
            floor = Pose(np.asarray(self.floor.rotation, float), np.asarray(self.floor.translation, float))
        return CameraModel(
            np.asarray(self.matrix, float), np.asarray(self.distortion, float), self.image_size, floor
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite(name: str, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise CameraCalibrationError(f"{name} is not a table of numbers") from None
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise CameraCalibrationError(f"{name} must be {shape} finite numbers")
    return array


def _check(record: CameraRecord) -> None:
    w, h = record.image_size
    m = _finite("matrix", record.matrix, (3, 3))
    if not (m[0, 0] > 0 and m[1, 1] > 0 and 0 < m[0, 2] < w and 0 < m[1, 2] < h):
        raise CameraCalibrationError("matrix has a non-positive focal length or a centre outside the image")
    if np.any(np.abs(_finite("distortion", record.distortion, (5,))) > 10.0):
        raise CameraCalibrationError("distortion coefficients are implausibly large")
    if not 0.0 <= record.rms_px <= MAX_RMS_PX:
        raise CameraCalibrationError(f"rms_px {record.rms_px} is outside 0..{MAX_RMS_PX}")
    if record.floor is not None:
        r = _finite("floor rotation", record.floor.rotation, (3, 3))
        t = _finite("floor translation", record.floor.translation, (3,))
        if np.abs(r.T @ r - np.eye(3)).max() > 1e-4 or np.linalg.det(r) < 0:
            raise CameraCalibrationError("floor rotation is not a rotation")
        if t[2] <= 0:
            raise CameraCalibrationError("the floor frame lies behind the camera")


def _from_json(data: Any) -> CameraRecord:
    try:
        floor = data.get("floor")
        record = CameraRecord(
            version=data["version"], camera=str(data["camera"]), created=str(data["created"]),
            image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            matrix=tuple(tuple(float(v) for v in row) for row in data["matrix"]),
            distortion=tuple(float(v) for v in data["distortion"]),
            rms_px=float(data["rms_px"]), views=int(data["views"]),
            floor=None if floor is None else FloorRecord(
                rotation=tuple(tuple(float(v) for v in row) for row in floor["rotation"]),
                translation=tuple(float(v) for v in floor["translation"]),
                marker_id=int(floor["marker_id"]), marker_size_m=float(floor["marker_size_m"]),
                marker_pose=tuple(float(v) for v in floor["marker_pose"]),
                error_px=float(floor["error_px"]), measured_at=str(floor["measured_at"]),
            ),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CameraCalibrationError(
            f"a field is missing or malformed ({type(exc).__name__}: {exc})"
        ) from None
    _check(record)
    return record


def calibration_path(config: TrackConfig, state_dir: str | Path) -> Path:
    """Where the camera calibration lives."""
    return Path(config.calibration_file) if config.calibration_file else Path(state_dir) / "camera.json"


def load(path: Path, need_floor: bool = True) -> CameraRecord:
    """Read and check the file; raise :class:`CameraCalibrationError` saying what to do."""
    advice = "run 'plend track --calibrate', then 'plend track --set-floor'"
    if nothing_at(path):
        raise CameraCalibrationError(f"camera calibration {path} not found; {advice}")
    try:  # anything but a regular file (a FIFO, a directory) is refused, not waited on
        raw = read_limited(path, MAX_FILE_BYTES, READ_TIMEOUT_S, "camera calibration")
    except FileRefusedError as exc:
        raise CameraCalibrationError(f"{exc}; {exc.advice or advice}") from None
    try:  # not JSON, nested too deep, a number too long: one line, never a traceback
        data = parse_json(raw.decode("utf-8"), "")
    except (UnicodeError, ValueError) as exc:
        problem = f"cannot be read ({str(exc).lstrip(': ')})"
        raise CameraCalibrationError(f"camera calibration {path} {problem}; {advice}") from None
    if not isinstance(data, dict) or data.get("version") != CAMERA_CALIBRATION_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise CameraCalibrationError(
            f"camera calibration {path} has format version {found!r}, this plend reads "
            f"{CAMERA_CALIBRATION_VERSION}; {advice}"
        )
    try:
        record = _from_json(data)
    except CameraCalibrationError as exc:
        raise CameraCalibrationError(f"camera calibration {path}: {exc}; {advice}") from None
    if need_floor and record.floor is None:
        raise CameraCalibrationError(
            f"camera calibration {path} has no floor frame; run 'plend track --set-floor'"
        )
    return record


def save(path: Path, record: CameraRecord) -> None:
    """Write atomically, keeping the previous file as ``camera.json.bak``."""
    _check(record)
    try:
        data = (json.dumps(asdict(record), indent=2) + "\n").encode()
        backup = path.with_suffix(".json.bak")
        atomic.replace_keeping_backup(path, data, backup, MAX_FILE_BYTES, "camera calibration")
    except FileRefusedError as exc:  # the previous file cannot be kept: nothing is written
        raise CameraCalibrationError(f"cannot write {path}: {exc}") from None
    except OSError as exc:
        raise CameraCalibrationError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- measuring ---------------------------------------------------------------------------


def board_points(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The board's corners in one image: (object points, image points), or None when
    fewer than :data:`MIN_BOARD_CORNERS` are seen."""
    cv2 = cv2_module()
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    b = board()
    corners, ids, _, _ = cv2.aruco.CharucoDetector(b).detectBoard(gray)
    if ids is None or len(ids) < MIN_BOARD_CORNERS:
        return None
    objects, images = b.matchImagePoints(corners, ids)
    return objects.astype(np.float32), images.astype(np.float32)


def fit_intrinsics(
    views: list[tuple[np.ndarray, np.ndarray]], size: tuple[int, int], camera: str
) -> CameraRecord:
    """Intrinsics and distortion from board views; refused when the fit is poor."""
    cv2 = cv2_module()
    if len(views) < 5:
        raise CameraCalibrationError(
            f"only {len(views)} usable views of the board; show it at 5 or more poses"
        )
    rms, matrix, dist, _, _ = cv2.calibrateCamera(
        [o for o, _ in views], [i for _, i in views], size, None, None
    )
    if not math.isfinite(rms) or rms > MAX_RMS_PX:
        raise CameraCalibrationError(
            f"the fit's error is {rms:.2f} px (limit {MAX_RMS_PX} px); "
            "hold the board still and flat, and retry"
        )
    return CameraRecord(
        version=CAMERA_CALIBRATION_VERSION, camera=camera, created=_now(), image_size=size,
        matrix=tuple(tuple(float(v) for v in row) for row in matrix),
        distortion=tuple(float(v) for v in np.asarray(dist).reshape(-1)[:5]),
        rms_px=float(rms), views=len(views),
    )  # fmt: skip


def _mean_rotation(rotations: list[np.ndarray]) -> np.ndarray:
    u, _, vt = np.linalg.svd(np.mean(rotations, axis=0))
    r = u @ vt
    return r if np.linalg.det(r) > 0 else u @ np.diag([1.0, 1.0, -1.0]) @ vt


def measure_floor(record: CameraRecord, frames: Iterable[np.ndarray], config: TrackConfig) -> CameraRecord:
    """The floor frame from the floor marker in several frames (averaged)."""
    model = record.model()
    detector = MarkerDetector(
        config.dictionary, config.floor_marker_size_m, model, config.max_reprojection_px
    )
    poses, errors, reasons = [], [], set()
    for frame in frames:
        gray = frame if frame.ndim == 2 else cv2_module().cvtColor(frame, cv2_module().COLOR_BGR2GRAY)
        found = detector.find(gray, config.floor_marker_id, up=np.array([0.0, 0.0, -1.0]))
        if isinstance(found, str):
            reasons.add(found)
            continue
        poses.append(found[0])
        errors.append(found[1])
    if len(poses) < 3:
        raise CameraCalibrationError(
            f"the floor marker (id {config.floor_marker_id}) was seen in {len(poses)} frames: "
            f"{'; '.join(sorted(reasons)) or 'no frames'}; lay it flat in view and retry"
        )
    marker = Pose(_mean_rotation([p.r for p in poses]), np.median([p.t for p in poses], axis=0))
    position, euler = config.floor_marker_in_floor()
    floor = marker @ Pose.from_euler(position, euler).inverse()
    floor_record = FloorRecord(
        rotation=tuple(tuple(float(v) for v in row) for row in floor.r),
        translation=tuple(float(v) for v in floor.t), marker_id=config.floor_marker_id,
        marker_size_m=config.floor_marker_size_m, marker_pose=tuple(config.floor_marker_pose),
        error_px=float(np.median(errors)), measured_at=_now(),
    )  # fmt: skip
    return replace(record, floor=floor_record)


def describe_floor(record: CameraRecord) -> str:
    """One line: how far the floor is and how the camera looks at it."""
    assert record.floor is not None
    floor = record.model().floor
    assert floor is not None
    camera_in_floor = floor.inverse()
    height = camera_in_floor.t[2]
    view = camera_in_floor.r[:, 2]
    off_vertical = math.degrees(math.acos(max(-1.0, min(1.0, -float(view[2])))))
    return (
        f"camera {height:.3f} m above the floor, looking {off_vertical:.1f} deg off straight down; "
        f"floor marker fit {record.floor.error_px:.3f} px"
    )


__all__ = ["CameraCalibrationError", "CameraRecord", "FloorRecord", "load", "save", "tilt_deg"]
