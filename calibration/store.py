"""The calibration file: typed, versioned, validated on load and saved atomically.

Only the calibration wizard writes it; the hardware backend reads it through
:func:`load_servo_calibration`, and the simulation may take its ``servos`` section (the
servos as identified, see :mod:`calibration.servo_id`) as its servo model. A file that is
corrupt, from another robot or holds an implausible value is refused with one line
naming the file and the next step, so the daemon never drives servos from numbers it
cannot trust.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from plend.core import atomic
from plend.core.files import FileRefusedError, nothing_at, parse_json, read_limited
from plend.model.robot import JOINTS
from plend.model.servo_map import (  # re-exported: the file's limits and errors are the calibration's
    MAX_CODES_PER_RAD,
    MAX_ERROR_DEG,
    MAX_OFFSET_DEG,
    MIN_CODES_PER_RAD,
    MIN_PULSE_SPAN_US,
    Calibration,
    CalibrationError,
    JointCalibration,
    _number,
    _timestamp,
)

# 2: the "servos" section (servo identification); 3: each servo records how its
# identification refined the joint's feedback line. Older versions are read as 3.
CALIBRATION_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAX_FILE_BYTES = 16 << 20  # a calibration file is a few kilobytes; this only bounds a bad one
IMU_OFFSET_BYTES = 22  # the BNO055's offset registers 0x55-0x6A
_WHAT = "calibration file "  # how messages name the file, before its path

__all__ = [
    "MAX_CODES_PER_RAD", "MAX_ERROR_DEG", "MAX_OFFSET_DEG", "MIN_CODES_PER_RAD", "MIN_PULSE_SPAN_US",
    "CalibrationError", "CalibrationRecord", "JointRecord", "ServoRecord",
]  # fmt: skip


def _integer(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CalibrationError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


JointRecord = JointCalibration
"""One joint's calibration as the file holds it: the same type the hardware backend uses
(plend.model.servo_map.JointCalibration); a file's joints must all be measured."""


@dataclass(frozen=True)
class ServoRecord:
    """One joint's servo as identified: the simulation's servo model for it, and how well
    it was measured.

    Attributes:
        delay_ms, time_constant_ms, dead_band_deg, backlash_deg, speed_rad_s: the model's
            keys (``[sim.servo.joints]``); the delay counts from the start of the tick that
            wrote a pulse, as the simulation applies it.
        speed_reached: False when the excitation never drove the servo at its speed limit:
            then ``speed_rad_s`` is only the slowest speed that fits its response.
        fit_error_deg: rms difference between the model's and the measured response.
        spread: each key's difference between the two runs (the repeatability).
        rate_hz, substeps: the loop rate and physics substeps the parameters are for.
        identified_at: when, ISO 8601.
        feedback_scale, feedback_shift_deg: how far the joint's feedback line, as servo
            identification refined it (``calibration.servo_feedback``), is from the
            calibration sweep's: its codes per radian over the sweep's, and how much more
            it reads where the sweep's line read 0; 1 and 0 for the sweep's own line.
    """

    delay_ms: float
    time_constant_ms: float
    dead_band_deg: float
    backlash_deg: float
    speed_rad_s: float
    speed_reached: bool
    fit_error_deg: float
    spread: dict[str, float]
    rate_hz: float
    substeps: int
    identified_at: str
    feedback_scale: float = 1.0
    feedback_shift_deg: float = 0.0

    def __post_init__(self) -> None:
        from plend.model.sim_world import SERVO_KEYS

        for key in SERVO_MODEL_KEYS:
            lo, hi = SERVO_KEYS[key]
            if not lo <= _number(key, getattr(self, key)) <= hi:
                raise CalibrationError(f"{key} {getattr(self, key)} is outside {lo:g}..{hi:g}")
        if not isinstance(self.speed_reached, bool):
            raise CalibrationError(f"speed_reached must be true or false, got {self.speed_reached!r}")
        if not 0.0 <= _number("fit_error_deg", self.fit_error_deg) <= MAX_ERROR_DEG:
            raise CalibrationError(f"fit_error_deg {self.fit_error_deg} is outside 0..{MAX_ERROR_DEG:g}")
        if not isinstance(self.spread, dict) or set(self.spread) != set(SERVO_MODEL_KEYS):
            raise CalibrationError(f"spread must give {', '.join(SERVO_MODEL_KEYS)}, got {self.spread!r}")
        for key, value in self.spread.items():
            if _number(f"spread.{key}", value) < 0:
                raise CalibrationError(f"spread.{key} {value} is negative")
        if not 5.0 <= _number("rate_hz", self.rate_hz) <= 200.0:
            raise CalibrationError(f"rate_hz {self.rate_hz} is outside 5..200")
        _integer("substeps", self.substeps, 1, 100)
        _timestamp("identified_at", self.identified_at)
        lo, hi = 1.0 / MAX_FEEDBACK_SCALE, MAX_FEEDBACK_SCALE
        if not lo <= _number("feedback_scale", self.feedback_scale) <= hi:
            raise CalibrationError(f"feedback_scale {self.feedback_scale} is outside {lo:.3f}..{hi:g}")
        if abs(_number("feedback_shift_deg", self.feedback_shift_deg)) > MAX_FEEDBACK_SHIFT_DEG:
            raise CalibrationError(
                f"feedback_shift_deg {self.feedback_shift_deg} is beyond +-{MAX_FEEDBACK_SHIFT_DEG:g}"
            )


# A refinement of a feedback line never goes further than these (what a sweep's line can
# be off by: a few percent of slope, and the gears' play and dead band in offset).
MAX_FEEDBACK_SCALE = 1.1
MAX_FEEDBACK_SHIFT_DEG = 10.0
SERVO_MODEL_KEYS = ("delay_ms", "time_constant_ms", "dead_band_deg", "backlash_deg", "speed_rad_s")


@dataclass(frozen=True)
class CalibrationRecord:
    """The whole calibration file.

    Attributes:
        version: File format version, :data:`CALIBRATION_VERSION`.
        robot_id: Which robot this was measured on (free text, e.g. a hostname).
        created: When the file was written, ISO 8601.
        joints: One record per wired joint, by joint name.
        imu_offsets: The BNO055's 22 offset bytes, or None when the IMU is not calibrated.
        imu_calib_status: The BNO055's CALIB_STAT byte when the offsets were read, or None.
        servos: The servos as identified, by joint name (any of the wired joints; none in
            a file written before servo identification).
    """

    version: int
    robot_id: str
    created: str
    joints: dict[str, JointRecord]
    imu_offsets: tuple[int, ...] | None = None
    imu_calib_status: int | None = None
    servos: dict[str, ServoRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version != CALIBRATION_VERSION:
            raise CalibrationError(f"version must be {CALIBRATION_VERSION}, got {self.version!r}")
        if not isinstance(self.robot_id, str) or not self.robot_id.strip():
            raise CalibrationError(f"robot_id must be a non-empty string, got {self.robot_id!r}")
        _timestamp("created", self.created)
        if not isinstance(self.joints, dict) or not all(
            isinstance(k, str) and isinstance(v, JointRecord) for k, v in self.joints.items()
        ):
            raise CalibrationError("joints must map joint names to joint records")
        object.__setattr__(self, "imu_offsets", checked_imu(self.imu_offsets, self.imu_calib_status))
        if not isinstance(self.servos, dict) or not all(
            k in wired_joint_names() and isinstance(v, ServoRecord) for k, v in self.servos.items()
        ):
            raise CalibrationError("servos must map wired joint names to servo records")


def checked_imu(offsets: object, status: object) -> tuple[int, ...] | None:
    """The IMU offsets as a tuple, after checking them and the CALIB_STAT byte."""
    if status is not None:
        _integer("imu_calib_status", status, 0, 255)
    if offsets is None:
        return None
    if not isinstance(offsets, tuple | list) or len(offsets) != IMU_OFFSET_BYTES:
        raise CalibrationError(f"imu_offsets must be {IMU_OFFSET_BYTES} bytes, not {offsets!r}")
    for b in offsets:
        _integer("each imu_offsets byte", b, 0, 255)
    return tuple(offsets)


def wired_joint_names() -> tuple[str, ...]:
    """Names of the joints a servo drives, in the canonical order: what a file must hold."""
    return tuple(j.name for j in JOINTS if j.wired)


def backup_path(path: Path) -> Path:
    """Where :func:`save` keeps the previous file: ``calibration.json.bak``."""
    return path.with_suffix(".json.bak")


def to_json(record: CalibrationRecord) -> str:
    """The file's text: sorted keys, two-space indent, no NaN."""
    return json.dumps(asdict(record), sort_keys=True, indent=2, allow_nan=False) + "\n"


def fields_of(cls: type, data: object, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CalibrationError(f"{where} must be a JSON object")
    names = {f.name for f in fields(cls)}
    missing, unknown = sorted(names - data.keys()), sorted(data.keys() - names)
    what = [
        f"{kind} fields {', '.join(keys)}"
        for kind, keys in (("missing", missing), ("unknown", unknown))
        if keys
    ]
    if what:
        raise CalibrationError(f"{where} has {' and '.join(what)}")
    return dict(data)


def measured_joint(values: dict[str, Any]) -> JointRecord:
    """A joint as a file holds it: plausible, and measured (its sweep's range and time)."""
    joint = JointRecord(**values)
    if joint.range_rad is None:
        raise CalibrationError("range_rad must be [low, high], got None")
    if joint.calibrated_at is None:
        raise CalibrationError("calibrated_at must be an ISO 8601 time, got None")
    return joint


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A file's parsed JSON brought to :data:`CALIBRATION_VERSION`: version 1 had no
    ``servos`` section (nothing identified yet); version 2's servos left the feedback
    lines as they were (scale 1, shift 0). Joints and IMU stay as they were."""
    if data.get("version") == 1 and "servos" not in data:
        data = {**data, "version": 2, "servos": {}}
    if data.get("version") == 2 and isinstance(data.get("servos"), dict):
        unrefined = {"feedback_scale": 1.0, "feedback_shift_deg": 0.0}
        servos = {
            name: {**unrefined, **values} if isinstance(values, dict) else values
            for name, values in data["servos"].items()
        }
        data = {**data, "version": CALIBRATION_VERSION, "servos": servos}
    return data


def _records(cls: type, table: object, what: str, make: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise CalibrationError(f"{what}s must be a JSON object")
    out = {}
    for name, values in table.items():
        try:
            out[name] = make(fields_of(cls, values, f"{what} {name}"))
        except CalibrationError as exc:
            raise CalibrationError(f"{what} {name}: {exc}") from None
    return out


def from_json(data: object) -> CalibrationRecord:
    """A record from parsed JSON; raises :class:`CalibrationError` naming the bad value."""
    top = fields_of(CalibrationRecord, data, "the file")
    joints = _records(JointRecord, top["joints"], "joint", measured_joint)
    servos = _records(ServoRecord, top["servos"], "servo", lambda values: ServoRecord(**values))
    return CalibrationRecord(**{**top, "joints": joints, "servos": servos})


def _check_joints(record: CalibrationRecord, expected: Iterable[str] | None) -> None:
    names = set(wired_joint_names() if expected is None else expected)
    unknown, missing = sorted(record.joints.keys() - names), sorted(names - record.joints.keys())
    if unknown or missing:
        raise CalibrationError(
            f"its joints do not match this robot (unknown: {', '.join(unknown) or 'none'};"
            f" missing: {', '.join(missing) or 'none'})"
        )


def _refuse(path: Path, problem: str, advice: str | None = None) -> CalibrationError:
    if not advice:
        backup = backup_path(path) if path.name else None  # "/" or "." has no backup
        restore = f" or restore the previous one from {backup}" if backup and os.path.exists(backup) else ""
        advice = f"rerun the calibration wizard{restore}"
    return CalibrationError(f"calibration file {path}: {problem}; {advice}")


def load(path: str | Path, joints_expected: Iterable[str] | None = None) -> CalibrationRecord:
    """Read and validate the calibration file.

    Args:
        path: The file.
        joints_expected: Joint names the file must hold exactly; default the wired joints.

    Raises:
        CalibrationError: The file is missing, not JSON, of another version, from another
            robot or holds an implausible value; the one-line message says what to do.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise _refuse(path, "not found", "run the calibration wizard to create it") from None
    except UnicodeError as exc:
        raise _refuse(path, f"cannot be read ({exc})") from None
    try:
        data = parse_json(text, _WHAT + str(path))
    except FileRefusedError as exc:
        raise _refuse(path, _problem(exc, path)) from None
    if not isinstance(data, dict):
        raise _refuse(path, "does not hold a JSON object")
    version = data.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        found = f"format version {version!r}" if "version" in data else "no format version"
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise _refuse(path, f"has {found}, this plend reads versions {readable}")
    try:
        record = from_json(migrate(data))
        _check_joints(record, joints_expected)
    except CalibrationError as exc:
        raise _refuse(path, str(exc)) from None
    return record


def read_text(path: Path) -> str:
    """The file's text. Anything but a regular file (a directory, a FIFO, a symbolic link
    to nothing or in a loop) is refused: raises FileNotFoundError only when nothing at all
    is at ``path``, CalibrationError otherwise."""
    if nothing_at(path):
        raise FileNotFoundError(path)
    try:
        data = read_limited(path, MAX_FILE_BYTES, 2.0, _WHAT.strip())
    except FileRefusedError as exc:
        raise _refuse(path, _problem(exc, path), exc.advice) from None
    return data.decode("utf-8")


def _problem(exc: FileRefusedError, path: Path) -> str:
    """What :mod:`plend.core.files` found wrong with the file, without the file's name."""
    return str(exc).removeprefix(_WHAT + str(path)).lstrip(": ")


def load_optional(path: str | Path, joints_expected: Iterable[str] | None = None) -> CalibrationRecord | None:
    """Like :func:`load`, but None when there is nothing at all at ``path`` (an
    uncalibrated robot). A dangling symbolic link, a directory or a FIFO there is refused."""
    return None if nothing_at(Path(path)) else load(path, joints_expected)


def save(path: str | Path, record: CalibrationRecord, joints_expected: Iterable[str] | None = None) -> None:
    """Write the file atomically, keeping the previous one as ``<name>.json.bak``.

    The new text goes to a temporary file in the same directory and is fsynced; the old
    file is copied (not moved) to the backup, so ``path`` always holds a complete file;
    then the temporary file replaces ``path`` and the directory is fsynced. A crash at any
    point leaves the old or the new file at ``path``, never a partial one.

    Raises:
        CalibrationError: The record does not hold exactly ``joints_expected``.
        OSError: The directory is not writable or the disk is full; ``path`` is untouched.
    """
    path = Path(path)
    try:
        _check_joints(record, joints_expected)
    except CalibrationError as exc:
        raise CalibrationError(f"refusing to write {path}: {exc}") from None
    atomic.replace_keeping_backup(
        path, to_json(record).encode("utf-8"), backup_path(path), MAX_FILE_BYTES, "calibration file"
    )


def to_servo_calibration(record: CalibrationRecord, source: str | Path = "calibration record") -> Calibration:
    """The record as the hardware backend's :class:`~plend.model.servo_map.Calibration`
    (its joints as they are)."""
    return Calibration(dict(record.joints), measured=True, source=str(source), imu_offsets=record.imu_offsets)


def load_servo_calibration(path: str | Path) -> Calibration | None:
    """The hardware backend's calibration from the file, or None when there is none."""
    record = load_optional(path)
    return None if record is None else to_servo_calibration(record, source=path)


def load_for_robot(path: str | Path, robot_id: str) -> Calibration:
    """The calibration the hardware backend should use on robot ``robot_id``.

    Never raises for a bad file: the built-in default comes back with ``problem`` saying
    what is wrong, and the daemon then refuses to move until the robot is calibrated.
    """
    path = Path(path)
    try:
        record = load_optional(path)
    except CalibrationError as exc:
        return Calibration(problem=str(exc))
    if record is None:
        return Calibration()
    if record.robot_id != robot_id:
        problem = _refuse(
            path, f"was measured on robot {record.robot_id!r}, this is {robot_id!r}",
            "calibrate this robot ('plenctl calibrate'), or set [hardware] robot_id if it was renamed",
        )  # fmt: skip
        return Calibration(problem=str(problem))
    return to_servo_calibration(record, source=path)
