"""Reading a recording back: every tick it holds, as arrays, whatever state the file is in.

The file is read front to back (as an MCAP stream), so a file that was cut short (a
copy interrupted, a disk that filled before the recorder's safety net) yields every tick
before the cut. Both recording formats are read: format 2 names joints and axes, format
1 (older plend) lists them in the canonical order. What could not be read is said in
``Recording.problems``; only a file with no tick at all is refused.

The file may also be hostile. It is read through :func:`plend.core.files.read_limited`;
what its chunks hold, decompressed, is bounded before it is decompressed
(:class:`ReadLimits`); a plend message larger than :data:`MAX_MESSAGE_BYTES` or a joint
array of the wrong length refuses the file before it is parsed; a number that is no
finite JSON number leaves its tick out.
"""

from __future__ import annotations

import io
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from plend.core.errors import PlendError
from plend.core.files import FileRefusedError, read_limited, size_text
from plend.core.recording_format import EULER, FORMAT, XYZ
from plend.model.robot import JOINT_NAMES

MAGIC = b"\x89MCAP0\r\n"
EXPANSION = 8  # what a file's chunks may hold, decompressed, a multiple of its size limit (plend's: ~3)
MAX_MESSAGE_BYTES = 64 * 1024  # a plend tick is about 2 KiB
MAX_JOINTS = 64
MAX_NAME = 64  # characters of a joint name, a mode or a fault code
MAX_FAULTS = 32
MAX_TIME_S = 1e12
MAX_VALUE = 1e9  # no angle, rate, force or time in ms comes near: a larger one is no reading
MAX_RATE_HZ = 1e6
TICK, TRUTH, INFO = "/plend/tick", "/plend/truth", "/plend/info"
# What a tick that is no plend tick raises on the way (RecursionError: JSON nested deeper
# than the interpreter goes; OverflowError: an integer of hundreds of digits as a float).
_LEFT_OUT = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)


class RecordingReadError(PlendError, ValueError):
    """The file is no recording that can be read; the message says what it is."""


@dataclass(frozen=True)
class ReadLimits:
    """How much of a recording is read.

    Attributes:
        file_bytes: A larger file is refused unread; its chunks may hold :data:`EXPANSION`
            times this once decompressed.
        file_key: The config key that sets ``file_bytes``, named when it is passed.
        ticks: A file with more tick messages is refused.
        ticks_key: The config key that sets ``ticks`` ("" when none does).
        timeout_s: Reading the file must end within this time.
    """

    file_bytes: int = 200 * 2**20
    file_key: str = "telemetry.max_bytes"
    ticks: int = 2_000_000
    ticks_key: str = ""
    timeout_s: float = 60.0

    @property
    def data_bytes(self) -> int:
        return EXPANSION * self.file_bytes


@dataclass
class Truth:
    """The simulation's ground truth, one row a tick: position, euler, velocity (N, 3)."""

    t: np.ndarray
    position: np.ndarray
    euler: np.ndarray
    velocity: np.ndarray


@dataclass
class Recording:
    """A recording's ticks. Joint arrays are (ticks, joints) in ``joint_names`` order,
    NaN where nothing was read (or, for targets, while relaxed); angles in rad."""

    path: Path
    format: int
    info: dict[str, Any]
    joint_names: tuple[str, ...]
    t: np.ndarray
    mode: list[str]
    targets: np.ndarray
    measured: np.ndarray
    euler: np.ndarray
    gyro: np.ndarray
    accel: np.ndarray
    contacts: np.ndarray  # (ticks, 2): right, left; NaN: not known
    compute_ms: np.ndarray
    lateness_ms: np.ndarray
    overruns: np.ndarray
    faults: list[tuple[str, ...]]
    truth: Truth | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self.t) > 1 else 0.0

    def rate_hz(self) -> float:
        """The control rate: from the info, else from the ticks' spacing; NaN if neither says."""
        rate = self.info.get("rate_hz")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate <= MAX_RATE_HZ:
            return float(rate)
        steps = np.diff(self.t)
        rate = float(1.0 / np.median(steps)) if steps.size and np.median(steps) > 0 else math.nan
        return rate if rate <= MAX_RATE_HZ else math.nan


def text(value: Any, limit: int = 24) -> str:
    """A string from a file, safe to print on one line: cut to ``limit``, quoted if odd."""
    if not isinstance(value, str):
        return "?"
    return value[:limit] if value[:limit].isprintable() else repr(value[:limit])


def read(path: Path, data: bytes | None = None, limits: ReadLimits | None = None) -> Recording:
    """Read ``path`` (or ``data``, its bytes, when already read) within ``limits``.

    Raises:
        RecordingReadError: It holds no tick, goes past a limit, or is no plend recording.
    """
    limits = limits or ReadLimits()
    if data is None:
        try:
            data = read_limited(path, limits.file_bytes, limits.timeout_s, "recording", limits.file_key)
        except FileRefusedError as exc:
            raise RecordingReadError(f"cannot read: {exc}") from None
    reader = _Reader(path, limits)
    _scan(reader, io.BytesIO(data))
    return reader.recording()


def _scan(reader: _Reader, stream: IO[bytes]) -> None:
    from mcap.records import Channel, Message

    from plend.core.mcapfile import DataLimitError, records

    head = stream.read(len(MAGIC))
    if head != MAGIC:
        what = "it is empty" if not head else f"it starts with {head[:8]!r}"
        raise RecordingReadError(
            f"{reader.path} is not an MCAP recording ({what}); plend records to .mcap files"
        )
    stream.seek(0)
    topics: dict[int, str] = {}
    try:
        for record in records(stream, reader.limits.data_bytes):
            if isinstance(record, Channel):
                topics[record.id] = record.topic
            elif isinstance(record, Message):
                reader.message(topics.get(record.channel_id), record.data)
    except RecordingReadError:
        raise
    except DataLimitError as exc:
        key = reader.limits.file_key
        if exc.chunk:
            raise RecordingReadError(
                f"{reader.path}: a chunk of it states {size_text(exc.chunk)} once decompressed, over the "
                f"{size_text(exc.limit)} a chunk may hold (plend writes 256 KiB); it is damaged or no plend "
                "recording"
            ) from None
        raise RecordingReadError(
            f"{reader.path} holds more than {size_text(reader.limits.data_bytes)} once decompressed "
            f"({EXPANSION} x {key}); raise {key} if you trust it, or read a shorter recording"
        ) from None
    except Exception as exc:  # a cut or damaged file: keep what came before
        why = f"{type(exc).__name__}: {text(str(exc), 80)}"
        reader.problems.append(
            f"the file ends early or is damaged ({why}); read {reader.ticks} ticks before that"
        )


class _Reader:
    """Takes a recording's messages one at a time and keeps what the ticks hold as columns
    of numbers: no message is kept as bytes, no tick as a dict."""

    def __init__(self, path: Path, limits: ReadLimits):
        self.path, self.limits = path, limits
        self.info: dict[str, Any] | None = None
        self.names: tuple[str, ...] | None = None
        self.problems: list[str] = []
        self.seen = {INFO: 0, TICK: 0, TRUTH: 0}
        self.ticks = self.bad = 0
        self.columns: dict[str, array[float]] = {}
        self.truth: dict[str, array[float]] = {}
        self.mode: list[str] = []
        self.overruns: array[int] = array("q")
        self.faults: list[tuple[str, ...]] = []
        self._strings: dict[Any, Any] = {}  # one copy of each mode and fault list

    def message(self, topic: str | None, data: bytes) -> None:
        if topic not in self.seen:
            return
        index = self.seen[topic]
        self.seen[topic] += 1
        if len(data) > MAX_MESSAGE_BYTES:
            raise RecordingReadError(
                f"{self.path}: {topic} message {index} is {size_text(len(data))}, over the "
                f"{size_text(MAX_MESSAGE_BYTES)} a plend message may take; it is damaged or no plend "
                "recording"
            )
        where = f"{self.path}: {topic} message {index}:"
        if topic == INFO:
            self._info(data)
        elif topic == TICK:
            self._tick(data, where)
        else:
            self._truth(data, where)

    def _info(self, data: bytes) -> None:
        if self.info is not None:
            return
        try:
            info = json.loads(data)
        except (ValueError, RecursionError):
            self.problems.append("its info message is not JSON")
            return
        self.info = info if isinstance(info, dict) else {}

    def _tick(self, data: bytes, where: str) -> None:
        if self.seen[TICK] > self.limits.ticks:  # read or not: each costs a parse
            key = f" ({self.limits.ticks_key})" if self.limits.ticks_key else ""
            raise RecordingReadError(
                f"{self.path}: more than the {self.limits.ticks} ticks allowed{key}; read a shorter recording"
            )
        if self.names is None:
            self.names = _joint_names(self.path, self.info or {}, self.problems)
        try:
            numbers, mode, overruns, faults = _tick(json.loads(data), self.names, where)
        except RecordingReadError:
            raise
        except _LEFT_OUT:
            self.bad += 1
            return
        _append(self.columns, numbers)
        self.mode.append(self._strings.setdefault(mode, mode))
        self.overruns.append(overruns)
        self.faults.append(self._strings.setdefault(faults, faults))
        self.ticks += 1

    def _truth(self, data: bytes, where: str) -> None:
        try:
            m = json.loads(data)
            numbers = {"t": [_time(m["t"])], "position": _values(m["position"], XYZ, where, "position"),
                       "euler": _values(m["euler"], EULER, where, "euler"),
                       "velocity": _values(m["velocity"], XYZ, where, "velocity")}  # fmt: skip
        except RecordingReadError:
            raise
        except _LEFT_OUT:
            return
        _append(self.truth, numbers)

    def recording(self) -> Recording:
        info = self.info or {}
        fmt = info.get("format", 1)
        fmt = fmt if isinstance(fmt, int) and not isinstance(fmt, bool) and 0 < fmt < 2**31 else 0
        problems = self.problems
        if fmt > FORMAT:
            problems.append(
                f"written in recording format {fmt} by plend {text(info.get('plend'))}, newer than this "
                f"plend's ({FORMAT}); the fields it knows are read"
            )
        if self.bad:
            problems.append(f"{self.bad} tick messages could not be read and were left out")
        if not self.ticks or self.names is None:
            raise RecordingReadError(
                f"{self.path}: no readable tick in it (" + "; ".join(problems or ["empty"]) + ")"
            )
        n, c = self.ticks, self.columns
        return Recording(
            path=self.path, format=max(fmt, 1), info=info, joint_names=self.names, t=_array(c["t"], n)[:, 0],
            mode=self.mode, targets=_array(c["targets"], n), measured=_array(c["measured"], n),
            euler=_array(c["euler"], n), gyro=_array(c["gyro"], n), accel=_array(c["accel"], n),
            contacts=_array(c["contacts"], n), compute_ms=_array(c["compute_ms"], n)[:, 0],
            lateness_ms=_array(c["lateness_ms"], n)[:, 0], overruns=np.array(self.overruns, int),
            faults=self.faults, truth=self._truth_arrays(), problems=problems,
        )  # fmt: skip

    def _truth_arrays(self) -> Truth | None:
        if not self.truth:
            return None
        n = len(self.truth["t"])
        t, position, euler, velocity = (
            _array(self.truth[k], n) for k in ("t", "position", "euler", "velocity")
        )
        return Truth(t[:, 0], position, euler, velocity)


def _append(columns: dict[str, array[float]], numbers: dict[str, list[float]]) -> None:
    for key, values in numbers.items():
        columns.setdefault(key, array("d")).extend(values)


def _array(column: array[float], rows: int) -> np.ndarray:
    return np.array(column, float).reshape(rows, -1)


def _joint_names(path: Path, info: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    names = info.get("joint_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        problems.append("no joint names in it; assuming this robot's canonical order")
        return JOINT_NAMES
    if len(names) > MAX_JOINTS or not all(len(n) <= MAX_NAME and n.isprintable() for n in names):
        raise RecordingReadError(
            f"{path}: its info names {len(names)} joints, or names that are no joint's (a plend recording "
            f"names at most {MAX_JOINTS}, of up to {MAX_NAME} characters); it is damaged or no plend "
            "recording"
        )
    return tuple(names)


def _number(v: Any, limit: float = MAX_VALUE) -> float:
    """A JSON number within ``limit``, or NaN for null; anything else raises (its tick is
    left out): a larger one is no reading, and ranges past the largest float break plots."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("not a number")
    value = float(v)  # OverflowError for an integer of hundreds of digits
    if not abs(value) <= limit:  # NaN and infinity too
        raise ValueError("not a plausible number")
    return value


def _time(v: Any) -> float:
    t = _number(v, MAX_TIME_S)
    if math.isnan(t):
        raise ValueError("no time")
    return t


def _values(item: Any, keys: tuple[str, ...], where: str, name: str) -> list[float]:
    """A format-2 object's values for ``keys`` (missing ones NaN) or a format-1 list of one
    value a key. More values than keys refuse the file: no plend wrote it, and parsing on
    would take as long as the file makes it."""
    if item is None:
        return [math.nan] * len(keys)
    if isinstance(item, dict):
        if len(item) > len(keys):
            raise _wrong_length(where, name, len(item), keys)
        return [_number(item.get(k)) for k in keys]
    if isinstance(item, list):
        if len(item) != len(keys):
            raise _wrong_length(where, name, len(item), keys)
        return [_number(v) for v in item]
    raise TypeError("neither an object nor a list")


def _wrong_length(where: str, name: str, n: int, keys: tuple[str, ...]) -> RecordingReadError:
    return RecordingReadError(
        f"{where} its {name} holds {n} values where a plend recording has {len(keys)}; "
        "it is damaged or no plend recording"
    )


def _tick(
    m: Any, names: tuple[str, ...], where: str
) -> tuple[dict[str, list[float]], str, int, tuple[str, ...]]:
    imu = m.get("imu") or {}
    contacts = m.get("contacts") or {}
    numbers = {
        "t": [_time(m["t"])],
        "targets": _values(m.get("targets"), names, where, "targets"),
        "measured": _values(m.get("measured"), names, where, "measured"),
        "euler": _values(imu.get("euler"), EULER, where, "imu.euler"),
        "gyro": _values(imu.get("gyro"), XYZ, where, "imu.gyro"),
        "accel": _values(imu.get("accel"), XYZ, where, "imu.accel"),
        "contacts": [
            float(contacts[s]) if isinstance(contacts.get(s), bool) else math.nan for s in ("right", "left")
        ],
        "compute_ms": [_number(m.get("compute_ms"))],
        "lateness_ms": [_number(m.get("lateness_ms"))],
    }
    return numbers, _name(m.get("mode", "?")), _count(m.get("overruns", 0)), _faults(m.get("faults", []))


def _name(v: Any) -> str:
    if not (isinstance(v, str) and len(v) <= MAX_NAME and v.isprintable()):
        raise ValueError("not a name")
    return v


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**62:
        raise ValueError("not a count")
    return v


def _faults(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) > MAX_FAULTS:
        raise ValueError("not a list of fault codes")
    return tuple(_name(code) for code in v)


SOURCES = ("targets", "measured")


def trajectory(rec: Recording, source: str = "targets") -> tuple[tuple[str, ...], np.ndarray, float, str]:
    """The joint angles to replay from ``rec``: its targets (what the robot was told) or
    its measured angles, as (joints, positions (samples, joints), rate Hz, a note).

    Joints with no value at all (an elbow's feedback) are left out, so they hold the
    stand pose; ticks where a chosen joint has none (relaxed: no targets) are left out,
    and the note says how many. The caller checks limits and speeds as for any file.
    """
    if source not in SOURCES:
        raise RecordingReadError(f"replay source {source!r}; choose targets or measured")
    values = rec.targets if source == "targets" else rec.measured
    known = ~np.isnan(values).all(axis=0)
    joints = tuple(n for n, k in zip(rec.joint_names, known, strict=True) if k and n in JOINT_NAMES)
    if not joints:
        raise RecordingReadError(f"{rec.path}: no {source} in it (the robot was relaxed throughout?)")
    columns = [rec.joint_names.index(n) for n in joints]
    rows = ~np.isnan(values[:, columns]).any(axis=1)
    left_out = int((~rows).sum())
    note = f"{left_out} of {len(rows)} ticks have no {source} and are left out" if left_out else ""
    return joints, np.ascontiguousarray(values[rows][:, columns], float), rec.rate_hz(), note
