"""The daemon's pose source: torso poses streamed by ``plend track``, checked, kept with
their age, and turned into the observation sources a policy reads on the robot.

The tracker sends one ``pose`` message per camera frame (see :meth:`PoseStore.submit`).
Each is checked on the socket thread (finite, within the floor, no faster than the robot
can move, no more often than ``track.max_rate_hz``) and becomes one small frozen
:class:`PoseEstimate`, published by a single reference swap: the control thread only
reads ``PoseStore.latest`` and never waits for a client.

Times are this process's monotonic clock. The tracker says how old each pose was when it
sent it (``age_s``, from the frame's capture), so the daemon needs no clock shared with
the tracker's computer: capture time = arrival - age_s, which undercounts only the time
on the wire.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plend.core.errors import PlendError
from plend.daemon.protocol import quote
from plend.daemon.server import ArgumentError
from plend.track.settings import TrackConfig

MAX_AGE_S = 1.0  # a pose older than this when sent is of no use to anyone
FLOOR_LIMIT_M = 50.0
SOURCES = ("aruco", "blob", "emulated")


class PoseRefusedError(PlendError, RuntimeError):
    """A well-formed pose that is not taken (too often, out of order, an impossible jump)."""


@dataclass(frozen=True)
class PoseEstimate:
    """The torso in the floor frame as last seen by the camera.

    ``position`` (m) and ``velocity`` (m/s, from the pose history, filtered) are in the
    floor frame; ``euler`` is roll, pitch, yaw (rad), NaN when the source gives position
    only. ``captured`` and ``received`` are daemon monotonic times.
    """

    position: tuple[float, float, float]
    euler: tuple[float, float, float]
    velocity: tuple[float, float, float]
    captured: float
    received: float
    has_orientation: bool
    source: str


def _numbers(args: dict[str, Any], key: str, limits: list[tuple[float, float]]) -> tuple[float, ...]:
    value = args.get(key)
    if not isinstance(value, list) or len(value) != len(limits):
        raise ArgumentError(f"pose {key} must be a list of {len(limits)} numbers, got {value!r}")
    out = []
    for i, (v, (lo, hi)) in enumerate(zip(value, limits, strict=True)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ArgumentError(f"pose {key}[{i}] must be a finite number, got {v!r}")
        if not lo <= v <= hi:
            raise ArgumentError(f"pose {key}[{i}] = {v!r} is outside [{lo:g}, {hi:g}]")
        out.append(float(v))
    return tuple(out)


def _age(args: dict[str, Any]) -> float:
    age = args.get("age_s")
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age):
        raise ArgumentError(f"pose age_s must be a finite number of seconds, got {age!r}")
    if not 0.0 <= age <= MAX_AGE_S:
        raise ArgumentError(
            f"pose age_s = {age!r} is outside [0, {MAX_AGE_S:g}]; send poses as they are seen"
        )
    return float(age)


class PoseStore:
    """The latest pose, its history and counters; written by socket threads, read by all."""

    def __init__(self, config: TrackConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.latest: PoseEstimate | None = None
        self.lost_reason: str | None = None
        self.accepted = self.refused = self.lost = 0
        self._history: deque[tuple[float, float, float, float]] = deque()
        self._latency: deque[float] = deque(maxlen=300)
        self._arrivals: deque[float] = deque(maxlen=60)
        self._lock = threading.Lock()

    # -- socket threads -------------------------------------------------------------------

    def submit(self, args: dict[str, Any]) -> dict[str, Any]:
        """Take one ``pose`` message; raise ArgumentError (malformed) or
        PoseRefusedError (well-formed but not believable or too frequent)."""
        now = self.clock()
        known = {"lost", "age_s"} if "lost" in args else {"position", "euler", "age_s", "source"}
        unknown = sorted(set(args) - known)
        if unknown:  # refused before anything is counted or stored
            raise ArgumentError(
                f"pose takes position, euler, age_s and source, or lost and age_s; got {quote(unknown, 60)}"
            )
        age = _age(args)
        if "lost" in args:
            return self._lost(args["lost"], now)
        source = args.get("source", "aruco")
        if source not in SOURCES:
            raise ArgumentError(f"pose source {source!r} is not one of {', '.join(SOURCES)}")
        floor = (-FLOOR_LIMIT_M, FLOOR_LIMIT_M)
        position = _numbers(args, "position", [floor, floor, (-1.0, 5.0)])
        angle = (-math.pi - 1e-6, math.pi + 1e-6)
        euler = None if args.get("euler") is None else _numbers(args, "euler", [angle] * 3)
        with self._lock:
            return self._accept(position, euler, str(source), now - age, now)

    def _lost(self, reason: object, now: float) -> dict[str, Any]:
        if not isinstance(reason, str) or not reason or len(reason) > 200:
            raise ArgumentError("pose lost must say why, in at most 200 characters")
        with self._lock:
            self.lost += 1
            self.lost_reason = reason
        return {"accepted": False}

    def _accept(
        self,
        position: tuple[float, ...],
        euler: tuple[float, ...] | None,
        source: str,
        captured: float,
        now: float,
    ) -> dict[str, Any]:
        last = self.latest
        if last is not None:
            self._check_against(last, position, captured, now)
        if last is None or captured - last.captured > self.config.stale_timeout_s:
            self._history.clear()  # a new track: no velocity across the gap
        self._history.append((captured, position[0], position[1], position[2]))
        window = self.config.velocity_window_s
        while self._history and captured - self._history[0][0] > window:
            self._history.popleft()
        self.latest = PoseEstimate(
            position=(position[0], position[1], position[2]),
            euler=(euler[0], euler[1], euler[2]) if euler is not None else (math.nan,) * 3,
            velocity=self._velocity(), captured=captured, received=now,
            has_orientation=euler is not None, source=source,
        )  # fmt: skip
        self.accepted += 1
        self.lost_reason = None
        self._latency.append(now - captured)
        self._arrivals.append(now)
        return {"accepted": True}

    def _check_against(
        self, last: PoseEstimate, position: tuple[float, ...], captured: float, now: float
    ) -> None:
        if now - last.received < 1.0 / self.config.max_rate_hz:
            self.refused += 1
            raise PoseRefusedError(
                f"poses arrive faster than track.max_rate_hz = {self.config.max_rate_hz:g}; send one a frame"
            )
        dt = captured - last.captured
        if dt <= 0:
            self.refused += 1
            raise PoseRefusedError("pose is not newer than the last one; send them in capture order")
        if dt > self.config.stale_timeout_s:
            return  # after a gap the robot may be anywhere: start a new track
        jump = math.dist(position, last.position)
        if jump / dt > self.config.max_speed_m_s:
            self.refused += 1
            raise PoseRefusedError(
                f"pose jumps {jump:.3f} m in {dt:.3f} s ({jump / dt:.1f} m/s, more than "
                f"track.max_speed_m_s = {self.config.max_speed_m_s:g}); a misdetection?"
            )

    def _velocity(self) -> tuple[float, float, float]:
        """Least-squares slope of position over the history window."""
        if len(self._history) < 2:
            return (0.0, 0.0, 0.0)
        data = np.asarray(self._history)
        t = data[:, 0] - data[:, 0].mean()
        denom = float(t @ t)
        if denom <= 0:
            return (0.0, 0.0, 0.0)
        slope = t @ (data[:, 1:] - data[:, 1:].mean(axis=0)) / denom
        return (float(slope[0]), float(slope[1]), float(slope[2]))

    # -- any thread -----------------------------------------------------------------------

    def age(self) -> float | None:
        """Seconds since the latest pose was captured; None before the first."""
        latest = self.latest
        return None if latest is None else self.clock() - latest.captured

    def problem(self, needs_orientation: bool = False) -> str | None:
        """Why there is no fresh pose now, or None when there is one."""
        latest = self.latest
        if latest is None:
            return "no camera pose received (is 'plend track' running and sending to this socket?)"
        age = self.clock() - latest.captured
        if age > self.config.stale_timeout_s:
            why = f": {self.lost_reason}" if self.lost_reason else ""
            limit = self.config.stale_timeout_s
            return f"camera pose is {age:.2f} s old (limit track.stale_timeout_s = {limit:g}){why}"
        if needs_orientation and not latest.has_orientation:
            return f"the camera pose ({latest.source}) has no orientation; world_yaw needs the ArUco marker"
        return None

    def status(self) -> dict[str, Any]:
        """For plenctl status."""
        latest = self.latest
        out: dict[str, Any] = {
            "fresh": self.problem() is None, "accepted": self.accepted, "refused": self.refused,
            "lost": self.lost, "lost_reason": self.lost_reason,
        }  # fmt: skip
        if latest is None:
            return out
        latency = np.asarray(self._latency) * 1000.0
        arrivals = np.asarray(self._arrivals)
        span = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
        out.update(
            source=latest.source,
            age_ms=round((self.clock() - latest.captured) * 1000.0, 1),
            latency_ms={f"p{p}": round(float(np.percentile(latency, p)), 2) for p in (50, 99)},
            rate_hz=round((len(arrivals) - 1) / span, 1) if span > 0 else 0.0,
            position_m=[round(v, 4) for v in latest.position],
            yaw_deg=round(math.degrees(latest.euler[2]), 2) if latest.has_orientation else None,
            velocity_m_s=[round(v, 4) for v in latest.velocity],
        )  # fmt: skip
        return out
