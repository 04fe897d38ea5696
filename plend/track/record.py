"""``plend track --record``: the tracker's poses in an MCAP file (topic ``/plend/pose``,
JSON with a JSON Schema, as the daemon's telemetry), for Foxglove or PlotJuggler."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from mcap.writer import Writer

from plend.control.telemetry import RecordingError
from plend.track.detect import Lost, Observation

_NUMBERS = {"type": ["array", "null"], "items": {"type": "number"}}
POSE_SCHEMA: dict[str, Any] = {
    "title": "plend.CameraPose",
    "type": "object",
    "properties": {
        "t": {"type": "number"}, "position": _NUMBERS, "euler": _NUMBERS,
        "reprojection_px": {"type": ["number", "null"]}, "detect_ms": {"type": "number"},
        "lost": {"type": ["string", "null"]}, "source": {"type": "string"},
    },
}  # fmt: skip


class PoseRecorder:
    """Writes one message per frame; the file is finished by :meth:`close`."""

    def __init__(self, path: Path):
        try:
            self._stream: IO[bytes] = path.open("xb")
        except OSError as exc:
            raise RecordingError(f"cannot create {path}: {exc.strerror or exc}; choose a new file") from None
        self.path = path
        self._writer = Writer(self._stream)
        self._writer.start(profile="", library="plend track")
        schema = self._writer.register_schema(
            POSE_SCHEMA["title"], "jsonschema", json.dumps(POSE_SCHEMA).encode()
        )
        self._channel = self._writer.register_channel("/plend/pose", "json", schema)
        self._offset_ns = time.time_ns() - time.monotonic_ns()  # capture stamps are monotonic
        self.written = 0

    def add(self, observation: Observation, source: str) -> None:
        message: dict[str, Any] = {
            "t": observation.stamp, "position": None, "euler": None, "reprojection_px": None,
            "detect_ms": observation.detect_s * 1000.0, "lost": None, "source": source,
        }  # fmt: skip
        if isinstance(observation, Lost):
            message["lost"] = observation.reason
        else:
            message["position"] = list(observation.position)
            message["euler"] = None if observation.euler is None else list(observation.euler)
            message["reprojection_px"] = observation.reprojection_px
        stamp = max(0, self._offset_ns + round(observation.stamp * 1e9))
        data = json.dumps(message, allow_nan=False).encode()
        self._writer.add_message(
            self._channel, log_time=stamp, data=data, publish_time=stamp, sequence=self.written
        )
        self.written += 1

    def close(self) -> None:
        if self._stream.closed:
            return
        self._writer.finish()
        self._stream.close()
