"""Recording of every control tick to an MCAP file, written off the control thread.

MCAP is the log format Foxglove Studio and PlotJuggler open. Messages are JSON with a
JSON Schema, so both tools list every field without plend-specific plugins. The control
thread only enqueues records; a daemon thread encodes and writes them.

Channels: ``/plend/info`` (one message at start: ``joint_names``, the canonical order of
every joint array) and ``/plend/tick`` (one message a tick, fields as in ``TickRecord``;
units are rad, rad/s and m/s^2, times in ms where the name says so). Tick timestamps
follow ``TickRecord.t`` from the first tick, anchored to the wall clock at ``start``.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from plend.errors import PlendError
from plend.hal.base import ImuReading
from plend.robot import JOINT_NAMES, NUM_JOINTS


class RecordingError(PlendError, OSError):
    """A recording cannot start, is not running, or failed; the message names the file."""


@dataclass(frozen=True)
class TickRecord:
    """What the loop did in one tick. Arrays are handed over: do not modify them after submit."""

    t: float  # loop time, seconds (monotonic)
    mode: str  # e.g. "stand", "sine", "relax"
    targets: np.ndarray | None  # 18 joint targets (rad), None when servos relaxed
    measured: np.ndarray  # 18 measured joint angles (rad), may contain NaN
    imu: ImuReading
    contacts: tuple[bool, bool]  # right, left
    compute_ms: float
    lateness_ms: float
    overruns: int
    faults: tuple[str, ...]


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _numbers(n: int, array_type: str | list[str] = "array") -> dict[str, Any]:
    # Items may be null: JSON has no NaN, and an unreadable joint must keep its slot.
    return {"type": array_type, "items": {"type": ["number", "null"]}, "minItems": n, "maxItems": n}


_NUMBER, _STRINGS = {"type": "number"}, {"type": "array", "items": {"type": "string"}}
TICK_SCHEMA: dict[str, Any] = {
    "title": "plend.Tick",
    **_object(
        t=_NUMBER,
        mode={"type": "string"},
        targets=_numbers(NUM_JOINTS, ["array", "null"]),
        measured=_numbers(NUM_JOINTS),
        imu=_object(quat=_numbers(4), euler=_numbers(3), gyro=_numbers(3), accel=_numbers(3)),
        contacts=_object(right={"type": "boolean"}, left={"type": "boolean"}),
        compute_ms=_NUMBER,
        lateness_ms=_NUMBER,
        overruns={"type": "integer"},
        faults=_STRINGS,
    ),
}
INFO_SCHEMA: dict[str, Any] = {"title": "plend.Info", **_object(joint_names=_STRINGS)}

_STOP = object()  # queue sentinel: everything before it is written, then the file is finished
_RECORD_OVERHEAD = 31 + 16  # message record header plus its message-index entry, bytes
_CHUNK_OVERHEAD = 256  # chunk header, message-index headers and the chunk's summary index
_SUMMARY_OVERHEAD = 1024  # statistics, channels, offsets, footer, magic (schemas added apart)


def _floats(values: Iterable[float]) -> list[float | None]:
    # JSON has no NaN or infinity; null keeps the array length and reads as a gap in plots.
    return [v if math.isfinite(v) else None for v in map(float, values)]


def _encode_tick(r: TickRecord) -> bytes:
    msg = {
        "t": r.t,
        "mode": r.mode,
        "targets": None if r.targets is None else _floats(r.targets.tolist()),
        "measured": _floats(r.measured.tolist()),
        "imu": {k: _floats(getattr(r.imu, k)) for k in ("quat", "euler", "gyro", "accel")},
        "contacts": {"right": bool(r.contacts[0]), "left": bool(r.contacts[1])},
        "compute_ms": float(r.compute_ms),
        "lateness_ms": float(r.lateness_ms),
        "overruns": int(r.overruns),
        "faults": [str(f) for f in r.faults],
    }
    return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()


def _create(path: Path, make_parent: bool) -> IO[bytes]:
    """Open a new file for writing, or raise a RecordingError saying what to do."""
    try:
        if make_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("xb")  # "x": never overwrite an earlier recording
    except OSError as exc:
        if path.is_file():
            raise RecordingError(f"{path} already exists; choose another file name") from exc
        raise RecordingError(
            f"cannot create {path}: {exc.strerror or exc}; check that its directory exists and is writable"
        ) from exc


class _Session:
    """One recording: its file, queue, writer thread and counters.

    Each counter has a single writing thread (``dropped_full`` the control thread, the
    rest the writer thread), so no lock is needed to keep them exact.
    """

    def __init__(self, path: Path, stream: IO[bytes], queue_size: int, max_bytes: int, wall_ns: int):
        self.path, self.stream, self.max_bytes, self.wall_ns = path, stream, max_bytes, wall_ns
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.written = self.dropped_full = self.dropped_late = self.chunks = 0
        self.capped = False
        self.error: BaseException | None = None
        self.t0: float | None = None
        # A chunk is compressed only when full, so the open one is counted uncompressed; keeping
        # chunks small against the cap keeps that overestimate small.
        from mcap.writer import Writer  # here, not at import: a daemon that never records never loads it

        self.writer = Writer(stream, chunk_size=min(256 * 1024, max(4096, max_bytes // 16)))
        self.writer.start(profile="", library="plend")
        self.reserve = _SUMMARY_OVERHEAD
        info, self.tick = self._channel("/plend/info", INFO_SCHEMA), self._channel("/plend/tick", TICK_SCHEMA)
        data = json.dumps({"joint_names": list(JOINT_NAMES)}).encode()
        self.writer.add_message(info, log_time=wall_ns, data=data, publish_time=wall_ns)
        self.writer.flush()  # header, schemas and info reach the disk now; the size estimate starts exact
        self.flushed, self.pending = stream.tell(), 0
        self.thread = threading.Thread(target=self._run, name="plend-telemetry", daemon=True)

    def _channel(self, topic: str, schema: dict[str, Any]) -> int:
        data = json.dumps(schema).encode()
        self.reserve += len(data)  # the summary at the end repeats every schema
        schema_id = self.writer.register_schema(schema["title"], "jsonschema", data)
        return self.writer.register_channel(topic, "json", schema_id)

    @property
    def bytes(self) -> int:
        """Bytes on disk plus the open chunk, uncompressed: an upper bound until it is finished."""
        return self.flushed + self.pending

    def _run(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            if self.capped or self.error is not None:
                self.dropped_late += 1
                continue
            try:
                self._write(item)  # type: ignore[arg-type]
            except Exception as exc:  # any failure must end in a finished file, not a dead thread
                self.error, self.dropped_late = exc, self.dropped_late + 1
        try:
            self.writer.finish()
        except Exception as exc:
            self.error = self.error or exc
        finally:
            self.stream.close()

    def _write(self, record: TickRecord) -> None:
        data = _encode_tick(record)
        size = len(data) + _RECORD_OVERHEAD
        if self.bytes + size + self.reserve + _CHUNK_OVERHEAD * (self.chunks + 1) > self.max_bytes:
            self.capped, self.dropped_late = True, self.dropped_late + 1
            return
        # Timestamps follow the loop clock from the first tick, anchored to the wall clock at
        # start, so plots show the loop's own spacing, not the writer thread's jitter.
        self.t0 = record.t if self.t0 is None else self.t0
        stamp = max(0, self.wall_ns + round((record.t - self.t0) * 1e9))
        self.writer.add_message(
            self.tick, log_time=stamp, data=data, publish_time=stamp, sequence=self.written
        )
        self.written += 1
        if (now := self.stream.tell()) != self.flushed:  # the writer compressed and wrote a chunk
            self.flushed, self.pending, self.chunks = now, 0, self.chunks + 1
        else:
            self.pending += size

    def figures(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "written": self.written,
            "dropped": self.dropped_full + self.dropped_late,
            "bytes": self.bytes,
            "capped": self.capped,
        }


class Recorder:
    """Records control ticks to MCAP files, one recording at a time.

    Args:
        directory: Where recordings go when ``start`` is given no path.
        max_bytes: Size cap of one file; ticks past it are dropped and the file finished.
        queue_size: Ticks that may wait for the writer thread before new ones are dropped.
        wall_clock: Seconds since the epoch; names files and anchors message timestamps.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int = 200 * 2**20,
        queue_size: int = 1024,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.queue_size = queue_size
        self._wall_clock = wall_clock
        self._lock = threading.RLock()  # start/stop may come from the socket and main threads
        self._session: _Session | None = None  # set while recording; submit reads only this
        self._last: dict[str, Any] = {"path": None, "written": 0, "dropped": 0, "bytes": 0, "capped": False}

    def start(self, out: Path | None = None) -> Path:
        """Begin recording to ``out``, or to a timestamped file in the directory.

        Returns:
            The path of the new recording.

        Raises:
            RecordingError: A recording is running, the file exists, or it cannot be created.
        """
        with self._lock:
            if self._session is not None:
                raise RecordingError(f"a recording to {self._session.path} is already running; stop it first")
            now = self._wall_clock()
            name = time.strftime("plend-%Y%m%d-%H%M%S.mcap", time.localtime(now))
            path = self.directory / name if out is None else Path(out)
            stream = _create(path, make_parent=out is None)
            try:
                session = _Session(path, stream, self.queue_size, self.max_bytes, round(now * 1e9))
            except OSError as exc:
                stream.close()
                path.unlink(missing_ok=True)  # a headless stub would only block a retry under this name
                raise RecordingError(f"cannot write {path}: {exc.strerror or exc}; check free space") from exc
            session.thread.start()
            self._session = session
            return path

    @property
    def recording(self) -> bool:
        """True while a recording runs (cheap: the control loop asks every tick)."""
        return self._session is not None

    def submit(self, record: TickRecord) -> None:
        """Queue one tick for writing; never blocks or raises. Does nothing when not recording."""
        session = self._session
        if session is None:
            return
        try:
            session.queue.put_nowait(record)
        except queue.Full:
            session.dropped_full += 1

    def stop(self) -> dict[str, Any]:
        """Write what is queued, finish the file and end the writer thread.

        Returns:
            ``path``, ``written`` and ``dropped`` ticks, file ``bytes``, and ``capped``.

        Raises:
            RecordingError: No recording is running, or writing the file failed.
        """
        with self._lock:
            session, self._session = self._session, None
            if session is None:
                raise RecordingError("no recording is running; start one first")
            session.queue.put(_STOP)  # blocks only until the writer makes room; it always drains
            session.thread.join()
            figures = session.figures()
            if session.path.exists():
                figures["bytes"] = session.path.stat().st_size
            self._last = figures
            if session.error is not None:
                raise RecordingError(
                    f"recording to {session.path} failed: {session.error}; check free space and permissions"
                ) from session.error
            return dict(figures)

    def status(self) -> dict[str, Any]:
        """Whether a recording runs, and its figures (or the last one's, once stopped)."""
        session = self._session
        if session is not None:
            return {"recording": True, **session.figures()}
        return {"recording": False, **self._last}

    def close(self) -> None:
        """Stop the recording if one is running; safe to call more than once."""
        with self._lock:
            if self._session is not None:
                self.stop()
