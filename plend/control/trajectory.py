"""Joint trajectory files for ``replay``: read, parsed and checked before the loop sees them.

The file is named by a client, so it may be anything: it is read through
:func:`plend.core.files.read_limited` (regular files only, size-capped, with a deadline), its
layout is checked before any data is used (an NPY's header before its data; a CSV's
header before its numbers), and no error repeats the file's contents: they name the
path, the sample and the joint, or the column's position when it is not a joint.

CSV: an optional first line ``# rate_hz: 50``, a header row of joint names, then one row
of angles (rad) per sample (a UTF-8 byte-order mark is skipped). A line longer than
:data:`MAX_LINE` or a number longer than :data:`MAX_NUMBER` is refused before it is
parsed: parsing it would hold the interpreter, and the control loop, for long. NPY: a
one-dimensional structured array whose fields are joint names, each one float per
sample. MCAP: a plend recording, whose targets (or measured angles) are played at the rate
it was recorded at (plend.cli.recording.trajectory), read within the limits above.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plend.core.config import LimitsConfig
from plend.core.errors import PlendError
from plend.core.files import FileRefusedError, read_limited
from plend.model.robot import JOINT_NAMES, stand_pose

NPY_MAGIC = b"\x93NUMPY"
MCAP_MAGIC = b"\x89MCAP0\r\n"
MAX_NPY_HEADER = 10_000
# A number needs at most about 40 characters (17 significant digits, a sign, an exponent);
# parsing a longer one holds the interpreter, and the control loop, for as long as it is.
MAX_NUMBER = 40
MAX_LINE = 4096  # bytes: a row of one number a joint, with room for spaces
BOM = "\ufeff"


class TrajectoryError(PlendError, ValueError):
    """A trajectory file is unreadable or would drive a joint unsafely."""


@dataclass(frozen=True)
class Trajectory:
    """Joint positions sampled at ``rate_hz``; columns are ``joints`` (a subset of the
    robot's joints, the others hold the stand pose). Checked on construction, so a
    trajectory whose shape does not fit its joints never reaches the loop."""

    joints: tuple[str, ...]
    positions: np.ndarray  # (samples, len(joints)), rad
    rate_hz: float

    def __post_init__(self) -> None:
        p = self.positions
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.shape[1] != len(self.joints) or not len(p):
            shape = getattr(p, "shape", None)
            raise TrajectoryError(f"positions of shape {shape} do not fit {len(self.joints)} joint(s)")
        if p.dtype != np.float64:
            raise TrajectoryError(f"positions must be float64, not {p.dtype}")
        if any(n not in JOINT_NAMES for n in self.joints) or len(set(self.joints)) != len(self.joints):
            raise TrajectoryError("unknown or repeated joints")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise TrajectoryError(f"rate {self.rate_hz} Hz must be a positive number")

    @property
    def duration_s(self) -> float:
        return (len(self.positions) - 1) / self.rate_hz

    def full_pose(self, index: int) -> np.ndarray:
        q = stand_pose()
        q[[JOINT_NAMES.index(n) for n in self.joints]] = self.positions[index]
        return q


def load_trajectory(
    path: Path,
    rate_hz: float | None,
    lower: np.ndarray,
    upper: np.ndarray,
    max_speed: float,
    limits: LimitsConfig | None = None,
    source: str = "targets",
) -> Trajectory:
    """Read a CSV, NPY or MCAP trajectory and check it is safe to play.

    ``rate_hz`` (if given) overrides the file's rate; one is required. ``source`` says
    what of a recording (MCAP) to play: its ``targets`` or its ``measured`` angles.

    Raises:
        TrajectoryError: One line naming the path and what is wrong, never the contents.
    """
    limits = limits or LimitsConfig()
    try:
        data = read_limited(
            path, limits.max_trajectory_bytes, limits.file_read_timeout_s, "trajectory",
            "limits.max_trajectory_bytes",
        )  # fmt: skip
    except FileRefusedError as exc:
        raise TrajectoryError(str(exc)) from None
    file_rate: float | None
    if data.startswith(MCAP_MAGIC):
        joints, positions, file_rate = _read_recording(path, data, source, limits)
    elif path.suffix.lower() == ".mcap":
        raise TrajectoryError(f"{path}: not an MCAP recording (no MCAP header); record with plenctl record")
    elif source != "targets":
        raise TrajectoryError(f"{path}: only a recording (.mcap) has measured angles to replay")
    elif data.startswith(NPY_MAGIC):
        joints, positions, file_rate = _read_npy(path, data, limits.max_trajectory_samples)
    elif path.suffix.lower() == ".npy":
        raise TrajectoryError(f"{path}: not an NPY file (no NPY header); save it with numpy.save")
    else:
        joints, positions, file_rate = _read_csv(path, data, limits.max_trajectory_samples)
    rate = rate_hz if rate_hz is not None else file_rate
    if rate is None:
        raise TrajectoryError(f"{path}: no rate given; add '# rate_hz: 50' as its first line or pass --rate")
    if not (math.isfinite(rate) and 1.0 <= rate <= 1000.0):
        raise TrajectoryError(f"{path}: rate {rate} Hz is out of range [1, 1000]")
    try:
        traj = Trajectory(joints, positions, float(rate))
    except TrajectoryError as exc:
        raise TrajectoryError(f"{path}: {exc}") from None
    _check_trajectory(path, traj, lower, upper, max_speed)
    return traj


def _read_recording(
    path: Path, data: bytes, source: str, limits: LimitsConfig
) -> tuple[tuple[str, ...], np.ndarray, float]:
    from plend.cli.recording import ReadLimits, RecordingReadError, read, trajectory

    bounds = ReadLimits(
        limits.max_trajectory_bytes, "limits.max_trajectory_bytes", limits.max_trajectory_samples,
        "limits.max_trajectory_samples", limits.file_read_timeout_s,
    )  # fmt: skip
    try:
        joints, positions, rate, _ = trajectory(read(path, data, bounds), source)
    except RecordingReadError as exc:
        raise TrajectoryError(str(exc)) from None
    _check_count(path, len(positions), limits.max_trajectory_samples)
    return joints, positions, rate


def _check_names(path: Path, names: tuple[str, ...], what: str) -> None:
    """Every name a joint, none twice. Names that are not joints are told by position."""
    for i, name in enumerate(names):
        if name not in JOINT_NAMES:
            raise TrajectoryError(
                f"{path}: unknown or repeated joints: {what} {i + 1} of {len(names)} is not a joint of this "
                "robot (joint names as in 'plenctl status')"
            )
        if name in names[:i]:
            raise TrajectoryError(f"{path}: unknown or repeated joints: {name} appears twice")


def _check_count(path: Path, samples: int, max_samples: int) -> None:
    if samples == 0:
        raise TrajectoryError(f"{path}: no samples")
    if samples > max_samples:
        raise TrajectoryError(
            f"{path}: {samples} samples, more than the {max_samples} samples allowed "
            "(limits.max_trajectory_samples)"
        )


def _npy_header(path: Path, data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    size = _npy_header_size(data)
    if size > MAX_NPY_HEADER:
        raise TrajectoryError(
            f"{path}: its NPY header is {size} bytes, more than the {MAX_NPY_HEADER} a trajectory's needs "
            f"(at most {len(JOINT_NAMES)} fields, one a joint); save only the joints' fields, one float each"
        )
    stream = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream, max_header_size=MAX_NPY_HEADER)
    except Exception:  # numpy's messages quote the header: say only that it is damaged
        raise TrajectoryError(f"{path}: not a readable NPY file (its header is damaged)") from None
    return shape, dtype


def _npy_header_size(data: bytes) -> int:
    """The header length an NPY file states (0 if it is too short to state one)."""
    width = 2 if data[6:7] == b"\x01" else 4
    field = data[8 : 8 + width]
    return int.from_bytes(field, "little") if len(field) == width else 0


def _read_npy(path: Path, data: bytes, max_samples: int) -> tuple[tuple[str, ...], np.ndarray, None]:
    shape, dtype = _npy_header(path, data)
    if dtype.names is None:
        raise TrajectoryError(f"{path}: expected a structured array with joint names as fields")
    if dtype.hasobject:
        raise TrajectoryError(f"{path}: holds Python objects; each field must be one float per sample")
    names = tuple(dtype.names)
    _check_names(path, names, "field")
    for name in names:
        field = dtype.fields[name][0]  # type: ignore[index]
        if field.shape != () or field.kind != "f":
            kind = f"an array of shape {field.shape}" if field.shape != () else f"a {field.kind!r}-kind value"
            raise TrajectoryError(
                f"{path}: field {name} holds {kind}; each field must be one float per sample"
            )
    if len(shape) != 1:
        raise TrajectoryError(f"{path}: expected a one-dimensional array of samples, got shape {shape}")
    _check_count(path, shape[0], max_samples)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        raise TrajectoryError(f"{path}: not a readable NPY file (its data is cut short or damaged)") from None
    positions = np.empty((len(array), len(names)))
    for column, name in enumerate(names):
        positions[:, column] = array[name]
    return names, positions, None


def _lines(path: Path, data: bytes) -> Iterator[tuple[int, str]]:
    """The file's non-blank lines and their numbers, decoded one at a time: decoding or
    splitting a large file at once holds the interpreter long enough for the control loop
    to miss a tick. A byte-order mark before the first line is skipped."""
    offset = 0
    for number, raw in enumerate(io.BytesIO(data), start=1):
        if len(raw) > MAX_LINE:
            raise TrajectoryError(
                f"{path}: line {number} is longer than {MAX_LINE} bytes; a row holds one number per joint"
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = offset + exc.start
            raise TrajectoryError(
                f"{path}: not UTF-8 text (byte {where}); a CSV trajectory is text"
            ) from None
        offset += len(raw)
        if number == 1:
            line = line.removeprefix(BOM)
        if line.strip():
            yield number, line.rstrip("\r\n")


def _read_csv(path: Path, data: bytes, max_samples: int) -> tuple[tuple[str, ...], np.ndarray, float | None]:
    lines = _lines(path, data)
    number, first = next(lines, (0, ""))
    rate = None
    if first.startswith("#"):
        key, _, value = first.lstrip("# ").partition(":")
        if key.strip() != "rate_hz":
            raise TrajectoryError(f"{path}: first line must be '# rate_hz: <Hz>'")
        try:
            rate = _number(value)
        except ValueError:
            raise TrajectoryError(f"{path}: the rate on its first line is not a number") from None
        number, first = next(lines, (0, ""))
    names = tuple(n.strip() for n in first.split(","))
    if first:
        _check_names(path, names, "column")
    # A row takes at least two bytes a value. Rows are filled as they are read, and pages
    # never written are never resident, so a generous size costs nothing.
    positions = np.empty((min(len(data) // (2 * len(names)) + 1, max_samples + 1), len(names)))
    n = 0
    for n, (number, line) in enumerate(lines, start=1):
        if n > max_samples:
            raise TrajectoryError(
                f"{path}: more than the {max_samples} samples allowed (limits.max_trajectory_samples)"
            )
        positions[n - 1] = _row(path, n - 1, number, line, len(names))
    if n == 0:
        raise TrajectoryError(f"{path}: needs a header row of joint names and at least one sample")
    return names, positions[:n], rate


def _number(field: str) -> float:
    """``float(field)`` for what a number is written as: not longer than MAX_NUMBER, and
    without the digit separators Python reads ("-1_0" would be -10)."""
    if len(field.strip()) > MAX_NUMBER or "_" in field:
        raise ValueError("not a plain number")
    return float(field)


def _row(path: Path, i: int, line_number: int, line: str, width: int) -> list[float]:
    fields = line.split(",")
    where = f"{path}: sample {i} (line {line_number})"
    if len(fields) != width:
        raise TrajectoryError(
            f"{where} has {len(fields)} values; every row needs {width} values, one per joint in the header"
        )
    for value in fields:
        if len(value.strip()) > MAX_NUMBER:
            raise TrajectoryError(
                f"{where} holds a value of more than {MAX_NUMBER} characters; no number needs more"
            )
        if "_" in value:
            raise TrajectoryError(f"{where} holds a '_'; write numbers without digit separators")
    try:
        return [float(v) for v in fields]
    except ValueError:
        raise TrajectoryError(
            f"{path}: cannot read trajectory: sample {i} holds a value that is not a number "
            f"(line {line_number})"
        ) from None


def _check_trajectory(
    path: Path, traj: Trajectory, lower: np.ndarray, upper: np.ndarray, max_speed: float
) -> None:
    if not np.all(np.isfinite(traj.positions)):
        row = int(np.argwhere(~np.isfinite(traj.positions))[0][0])
        raise TrajectoryError(f"{path}: sample {row} is not a finite number")
    cols = [JOINT_NAMES.index(n) for n in traj.joints]
    lo, hi = lower[cols], upper[cols]
    bad = np.argwhere((traj.positions < lo) | (traj.positions > hi))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise TrajectoryError(
            f"{path}: sample {row} puts {traj.joints[col]} at {traj.positions[row, col]:+.3f} rad, "
            f"outside its limits [{lo[col]:+.2f}, {hi[col]:+.2f}]"
        )
    speed = np.abs(np.diff(traj.positions, axis=0)) * traj.rate_hz
    if speed.size and speed.max() > max_speed:
        row, col = (int(v) for v in np.unravel_index(int(np.argmax(speed)), speed.shape))
        raise TrajectoryError(
            f"{path}: {traj.joints[col]} moves at {speed[row, col]:.1f} rad/s between samples {row} and "
            f"{row + 1}, faster than the {max_speed} rad/s slew limit"
        )
