"""Reading a recording back: every tick it holds, as arrays, whatever state the file is in.

The file is read front to back (as an MCAP stream), so a file that was cut short (a
copy interrupted, a disk that filled before the recorder's safety net) yields every tick
before the cut. Both recording formats are read: format 2 names joints and axes, format
1 (older plend) lists them in the canonical order. What could not be read is said in
``Recording.problems``; only a file with no tick at all is refused.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from plend.core.errors import PlendError
from plend.core.recording_format import EULER, FORMAT, XYZ
from plend.model.robot import JOINT_NAMES

MAGIC = b"\x89MCAP0\r\n"


class RecordingReadError(PlendError, ValueError):
    """The file is no recording that can be read; the message says what it is."""


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
        """The control rate: from the info, else from the ticks' spacing."""
        rate = self.info.get("rate_hz")
        if isinstance(rate, (int, float)) and rate > 0:
            return float(rate)
        steps = np.diff(self.t)
        return float(1.0 / np.median(steps)) if steps.size and np.median(steps) > 0 else math.nan


def read(path: Path, data: bytes | None = None) -> Recording:
    """Read ``path`` (or ``data``, its bytes, when already read); raises
    :class:`RecordingReadError` when it holds no tick."""
    if data is not None:
        raw = _messages(path, io.BytesIO(data))
    else:
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise RecordingReadError(f"cannot read {path}: {exc.strerror or exc}") from None
        with stream:
            raw = _messages(path, stream)
    info = raw.info or {}
    fmt = info.get("format", 1) if isinstance(info.get("format", 1), int) else 0
    problems = list(raw.problems)
    if fmt > FORMAT:
        problems.append(
            f"written in recording format {fmt} by plend {info.get('plend', '?')}, newer than this plend's "
            f"({FORMAT}); the fields it knows are read"
        )
    names = _joint_names(info, problems)
    ticks, bad = [], 0
    for data in raw.ticks:
        try:
            ticks.append(_tick(json.loads(data), names))
        except (ValueError, KeyError, TypeError, AttributeError):
            bad += 1
    if bad:
        problems.append(f"{bad} tick messages could not be read and were left out")
    if not ticks:
        raise RecordingReadError(f"{path}: no readable tick in it (" + "; ".join(problems or ["empty"]) + ")")
    return _assemble(path, max(fmt, 1), info, names, ticks, _truth(raw.truth), problems)


@dataclass
class _Raw:
    info: dict[str, Any] | None = None
    ticks: list[bytes] = field(default_factory=list)
    truth: list[bytes] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _messages(path: Path, stream: IO[bytes]) -> _Raw:
    from mcap.records import Channel, Message
    from mcap.stream_reader import StreamReader

    raw, topics = _Raw(), {}
    head = stream.read(len(MAGIC))
    if head != MAGIC:
        what = "it is empty" if not head else f"it starts with {head[:8]!r}"
        raise RecordingReadError(f"{path} is not an MCAP recording ({what}); plend records to .mcap files")
    stream.seek(0)
    try:
        for record in StreamReader(stream, record_size_limit=2**28).records:
            if isinstance(record, Channel):
                topics[record.id] = record.topic
            elif isinstance(record, Message):
                _keep(raw, topics.get(record.channel_id), record.data)
    except Exception as exc:  # a cut or damaged file: keep what came before
        raw.problems.append(f"the file ends early or is damaged ({type(exc).__name__}: {exc}); "
                            f"read {len(raw.ticks)} ticks before that")  # fmt: skip
    return raw


def _keep(raw: _Raw, topic: str | None, data: bytes) -> None:
    if topic == "/plend/tick":
        raw.ticks.append(data)
    elif topic == "/plend/truth":
        raw.truth.append(data)
    elif topic == "/plend/info" and raw.info is None:
        try:
            info = json.loads(data)
            raw.info = info if isinstance(info, dict) else {}
        except ValueError:
            raw.problems.append("its info message is not JSON")


def _joint_names(info: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    names = info.get("joint_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    problems.append("no joint names in it; assuming this robot's canonical order")
    return JOINT_NAMES


def _values(item: Any, keys: tuple[str, ...]) -> list[float]:
    """A format-2 object's values for ``keys`` (missing ones NaN) or a format-1 list."""
    if item is None:
        return [math.nan] * len(keys)
    if isinstance(item, dict):
        values = [item.get(k) for k in keys]
    else:
        values = list(item)[: len(keys)] + [None] * max(0, len(keys) - len(item))
    return [math.nan if v is None else float(v) for v in values]


def _tick(m: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    imu = m.get("imu") or {}
    contacts = m.get("contacts") or {}
    return {
        "t": float(m["t"]),
        "mode": str(m.get("mode", "?")),
        "targets": _values(m.get("targets"), names),
        "measured": _values(m.get("measured"), names),
        "euler": _values(imu.get("euler"), EULER),
        "gyro": _values(imu.get("gyro"), XYZ),
        "accel": _values(imu.get("accel"), XYZ),
        "contacts": [
            float(contacts[s]) if isinstance(contacts.get(s), bool) else math.nan for s in ("right", "left")
        ],
        "compute_ms": float(m.get("compute_ms", math.nan)),
        "lateness_ms": float(m.get("lateness_ms", math.nan)),
        "overruns": int(m.get("overruns", 0)),
        "faults": tuple(str(f) for f in m.get("faults", ())),
    }


def _assemble(
    path: Path, fmt: int, info: dict[str, Any], names: tuple[str, ...], ticks: list[dict[str, Any]],
    truth: Truth | None, problems: list[str],
) -> Recording:  # fmt: skip
    def column(key: str) -> np.ndarray:
        return np.asarray([tick[key] for tick in ticks], float)

    return Recording(
        path=path, format=fmt, info=info, joint_names=names, t=column("t"),
        mode=[tick["mode"] for tick in ticks], targets=column("targets"), measured=column("measured"),
        euler=column("euler"), gyro=column("gyro"), accel=column("accel"), contacts=column("contacts"),
        compute_ms=column("compute_ms"), lateness_ms=column("lateness_ms"),
        overruns=np.asarray([tick["overruns"] for tick in ticks], int),
        faults=[tick["faults"] for tick in ticks], truth=truth, problems=problems,
    )  # fmt: skip


def _truth(messages: list[bytes]) -> Truth | None:
    rows = []
    for data in messages:
        try:
            m = json.loads(data)
            rows.append((float(m["t"]), _values(m["position"], XYZ), _values(m["euler"], EULER),
                         _values(m["velocity"], XYZ)))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
    if not rows:
        return None
    t, position, euler, velocity = zip(*rows, strict=True)
    return Truth(np.asarray(t), np.asarray(position), np.asarray(euler), np.asarray(velocity))


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
