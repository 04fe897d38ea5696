"""Recording of every control tick to an MCAP file, written off the control thread.

MCAP is the log format Foxglove Studio and PlotJuggler open. Messages are JSON with a
JSON Schema, so both tools list every field without plend-specific plugins. The control
thread only enqueues records; a daemon thread encodes and writes them.

Channels and fields are those of plend.core.recording_format: ``/plend/info`` once, then
``/plend/tick`` a tick, and ``/plend/truth`` a tick for a simulated robot; joints are
named and units are in the schemas. Tick timestamps follow ``TickRecord.t`` from the
first tick, anchored to the wall clock at ``start``.

Files go into the recordings directory only (:mod:`plend.core.mcapfile` checks the name), and
chunks are closed and committed at least every :data:`COMMIT_PERIOD_S`, so a killed
daemon or a power cut loses at most that much. A write error (a full disk) ends the
recording at once: the file keeps every committed tick and stays readable, and status
reports the reason as a ``recording`` fault until the next ``record start`` or ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.mcapfile import CommittedFile, RecordingError, create, recording_path
from plend.core.recording_format import (
    INFO_SCHEMA,
    TICK_SCHEMA,
    TRUTH_SCHEMA,
    info_message,
    tick_message,
    truth_message,
)
from plend.hal.base import ImuReading

__all__ = ["INFO_SCHEMA", "TICK_SCHEMA", "TRUTH_SCHEMA", "Recorder", "RecordingError", "TickRecord"]

log = logging.getLogger("plend.telemetry")

COMMIT_PERIOD_S = 0.5  # a chunk is closed and committed at least this often


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
    torso: Any = None  # a simulated robot's true torso pose (position, euler, velocity)
    true_joints: np.ndarray | None = None  # the joints' true angles, where the backend knows them

    @classmethod
    def from_snapshot(cls, snap: Any, faults: tuple[str, ...]) -> TickRecord:
        """The record of a loop's tick (a plend.control.loop.Snapshot) and the faults active then."""
        return cls(
            t=snap.time, mode=snap.mode, targets=snap.targets, measured=snap.measured, imu=snap.imu,
            contacts=snap.contacts, compute_ms=snap.compute_s * 1e3, lateness_ms=snap.lateness_s * 1e3,
            overruns=snap.overruns, faults=faults, torso=snap.torso, true_joints=snap.truth,
        )  # fmt: skip


_STOP = object()  # queue sentinel: everything before it is written, then the file is finished
MIN_FREE_BYTES = 1 << 20  # free space a recording needs to start (about 40 s of ticks)
_RECORD_OVERHEAD = 31 + 16  # message record header plus its message-index entry, bytes
_CHUNK_OVERHEAD = 256  # chunk header, message-index headers and the chunk's summary index
_SUMMARY_OVERHEAD = 1024  # statistics, channels, offsets, footer, magic (schemas added apart)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


_encode_tick = tick_message  # the tests stand in a stuck or broken encoder here


class _Session:
    """One recording: its file, queue, writer thread and counters.

    Each counter has a single writing thread (``dropped_full`` the control thread, the
    rest the writer thread), so no lock is needed to keep them exact.
    """

    def __init__(self, path: Path, fd: int, queue_size: int, max_bytes: int, wall_ns: int, info: bytes = b""):
        self.path, self.max_bytes, self.wall_ns = path, max_bytes, wall_ns
        self.file = CommittedFile(fd)
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.written = self.dropped_full = self.dropped_late = self.chunks = 0
        self.capped = False
        self.error: BaseException | None = None
        self.failed_at: float | None = None
        self.t0: float | None = None
        # A chunk is compressed only when closed, so the open one is counted uncompressed; keeping
        # chunks small against the cap keeps that overestimate small.
        from mcap.writer import Writer  # here, not at import: a daemon that never records never loads it

        self.writer = Writer(self.file, chunk_size=min(256 * 1024, max(4096, max_bytes // 16)))  # type: ignore[arg-type]
        self.writer.start(profile="", library="plend")
        self.reserve = _SUMMARY_OVERHEAD
        channel, self.tick = (
            self._channel("/plend/info", INFO_SCHEMA),
            self._channel("/plend/tick", TICK_SCHEMA),
        )
        self.truth: int | None = None  # registered with the first tick that has a ground truth
        data = info or info_message("sim", 50.0)
        self.writer.add_message(channel, log_time=wall_ns, data=data, publish_time=wall_ns)
        self.writer.flush()  # header, schemas and info: a readable file from the start
        self.file.commit()
        self.open_bytes = 0  # messages in the open chunk, uncompressed
        self.committed_at = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="plend-telemetry", daemon=True)

    def _channel(self, topic: str, schema: dict[str, Any]) -> int:
        data = json.dumps(schema).encode()
        self.reserve += len(data)  # the summary at the end repeats every schema
        schema_id = self.writer.register_schema(schema["title"], "jsonschema", data)
        return self.writer.register_channel(topic, "json", schema_id)

    @property
    def bytes(self) -> int:
        """Bytes written plus the open chunk, uncompressed: an upper bound until it is finished."""
        return self.file.tell() + self.open_bytes

    def _bytes_on_disk(self) -> int:
        """What a failed recording's file holds (what it meant to write never reached it)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def ended(self) -> bool:
        """A write failed: the recording is over, whether or not it was stopped."""
        return self.error is not None

    def _run(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=COMMIT_PERIOD_S / 2)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if self.error is not None or (self.capped and item is not None):
                self.dropped_late += item is not None
                continue
            try:
                if item is not None:
                    self._write(item)  # type: ignore[arg-type]
                self._commit_when_due()
            except Exception as exc:  # a full disk or any other failure ends the recording
                self._fail(exc, item is not None)
        self._finish()

    def _commit_when_due(self) -> None:
        if self.file.pending:  # the writer closed a chunk by size
            self._commit()
        elif self.open_bytes and time.monotonic() - self.committed_at >= COMMIT_PERIOD_S:
            self.writer.flush()  # closes the open chunk
            self._commit()

    def _commit(self) -> None:
        self.file.commit()
        self.open_bytes, self.chunks, self.committed_at = 0, self.chunks + 1, time.monotonic()

    def _fail(self, exc: BaseException, lost_one: bool) -> None:
        self.dropped_late += lost_one
        try:
            if isinstance(exc, OSError):
                raise exc  # the disk refused: the writer's index no longer matches the file
            self.writer.finish()  # anything else left the writer whole: end the file properly
            self.file.commit(final=True)
        except Exception:
            try:
                self.file.repair()
            except OSError as again:
                log.error("recording %s: cannot end the file cleanly: %s", self.path, _reason(again))
        self.failed_at = time.monotonic()
        self.error = exc
        log.error(
            "recording to %s stopped: %s; the file keeps what was written before", self.path, _reason(exc)
        )

    def _finish(self) -> None:
        try:
            if self.error is None:
                self.writer.finish()
                self.file.commit(final=True)
        except Exception as exc:
            self._fail(exc, False)
        finally:
            self.file.close()

    def _write(self, record: TickRecord) -> None:
        data = _encode_tick(record)
        truth = None if record.torso is None else truth_message(record)
        size = len(data) + _RECORD_OVERHEAD + (0 if truth is None else len(truth) + _RECORD_OVERHEAD)
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
        if truth is not None:
            if self.truth is None:
                self.truth = self._channel("/plend/truth", TRUTH_SCHEMA)
            self.writer.add_message(
                self.truth, log_time=stamp, data=truth, publish_time=stamp, sequence=self.written
            )
        self.written += 1
        self.open_bytes += size

    def figures(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "written": self.written,
            "dropped": self.dropped_full + self.dropped_late,
            "bytes": self.bytes if self.error is None else self._bytes_on_disk(),
            "capped": self.capped,
            "error": None if self.error is None else _reason(self.error),
        }


class Recorder:
    """Records control ticks to MCAP files, one recording at a time.

    Args:
        directory: The recordings directory; every recording goes inside it.
        max_bytes: Size cap of one file; ticks past it are dropped and the file finished.
        queue_size: Ticks that may wait for the writer thread before new ones are dropped.
        wall_clock: Seconds since the epoch; names files and anchors message timestamps.
        hal, rate_hz: What the recording's info says about the robot and the loop.
        lossless: ``submit`` waits for room instead of dropping a tick (a batch run on the
            simulated clock, which may outrun the writer; never the real-time daemon).
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int = 200 * 2**20,
        queue_size: int = 1024,
        wall_clock: Callable[[], float] = time.time,
        hal: str = "sim",
        rate_hz: float = 50.0,
        lossless: bool = False,
    ):
        self.directory = Path(directory)
        self.hal, self.rate_hz, self.lossless = hal, rate_hz, lossless
        self.max_bytes = max_bytes
        self.queue_size = queue_size
        self._wall_clock = wall_clock
        self._lock = threading.RLock()  # start/stop may come from the socket and main threads
        self._session: _Session | None = None  # set while recording; submit reads only this
        self._last: dict[str, Any] = {
            "path": None, "written": 0, "dropped": 0, "bytes": 0, "capped": False, "error": None,
        }  # fmt: skip

    def start(self, out: str | Path | None = None) -> Path:
        """Begin recording to ``out`` (a name or relative path inside the directory, or an
        absolute path inside it), or to a timestamped file in the directory.

        Returns:
            The path of the new recording.

        Raises:
            RecordingError: A recording is running, the name leads outside the directory,
                the file exists, or it cannot be created or written.
        """
        with self._lock:
            session = self._session
            if session is not None and not session.ended:
                raise RecordingError(f"a recording to {session.path} is already running; stop it first")
            if session is not None:
                self._reap()
            now = self._wall_clock()
            path = recording_path(self.directory, None if out is None else str(out), now)
            self._check_free_space()
            fd = create(self.directory, path)
            try:
                info = info_message(self.hal, self.rate_hz)
                session = _Session(path, fd, self.queue_size, self.max_bytes, round(now * 1e9), info)
            except Exception as exc:
                os.close(fd)
                path.unlink(missing_ok=True)  # a headless stub would only block a retry under this name
                raise RecordingError(f"cannot write {path}: {_reason(exc)}; check free space") from None
            session.thread.start()
            self._session = session
            return path

    def _check_free_space(self) -> None:
        """Refuse to start where a few seconds of ticks would not fit."""
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return  # no directory yet: creating it says what is wrong
        free = fs.f_bavail * fs.f_frsize
        if free < MIN_FREE_BYTES:
            raise RecordingError(
                f"only {free >> 10} KiB free in {self.directory} (a recording needs at least "
                f"{MIN_FREE_BYTES >> 20} MiB to start); free some space"
            )

    @property
    def recording(self) -> bool:
        """True while a recording runs (cheap: the control loop asks every tick)."""
        session = self._session
        return session is not None and session.error is None

    def submit(self, record: TickRecord) -> None:
        """Queue one tick for writing; never blocks or raises. Does nothing when not recording."""
        session = self._session
        if session is None or session.error is not None:
            return
        try:
            session.queue.put(record, block=self.lossless, timeout=5.0 if self.lossless else None)
        except queue.Full:
            session.dropped_full += 1

    def _reap(self) -> _Session | None:
        """End the writer thread of the current session and forget it; returns it."""
        session, self._session = self._session, None
        if session is None:
            return None
        session.queue.put(_STOP)  # blocks only until the writer makes room; it always drains
        session.thread.join()
        figures = session.figures()
        with contextlib.suppress(OSError):
            figures["bytes"] = session.path.stat().st_size
        self._last = figures
        return session

    def stop(self) -> dict[str, Any]:
        """Write what is queued, finish the file and end the writer thread.

        Returns:
            ``path``, ``written`` and ``dropped`` ticks, file ``bytes``, ``capped`` and ``error``.

        Raises:
            RecordingError: No recording is running, or writing the file failed (the file
                then holds the ticks written before the failure).
        """
        with self._lock:
            session = self._reap()
            if session is None:
                raise RecordingError("no recording is running; start one first")
            if session.error is not None:
                raise RecordingError(
                    f"recording to {session.path} failed: {_reason(session.error)}; the file holds the "
                    f"{session.written} ticks written before; check free space and permissions"
                )
            return dict(self._last)

    def status(self) -> dict[str, Any]:
        """Whether a recording runs, and its figures (or the last one's, once stopped)."""
        session = self._session
        if session is not None:
            return {"recording": session.error is None, **session.figures()}
        return {"recording": False, **self._last}

    def faults(self) -> list[dict[str, Any]]:
        """A ``recording`` fault while a failed recording has not been stopped or replaced."""
        session = self._session
        if session is None or session.error is None:
            return []
        message = f"recording to {session.path} stopped: {_reason(session.error)}"
        return [{"code": "recording", "message": message, "since": session.failed_at, "latched": False}]

    def close(self) -> None:
        """Stop the recording if one is running; safe to call more than once."""
        with self._lock:
            self._reap()
