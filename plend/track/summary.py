"""What a tracked walk adds up to: the same keys as a simulated run's summary
(``distance_m``, ``lateral_m``, ``yaw_deg``), and, against an emulated camera, the
tracker's error against the simulation's truth."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from plend.track.detect import Lost, Measurement, Observation
from plend.track.geometry import Pose, tilt_deg, wrap_angle

FALL_TILT_DEG = 50.0  # as the daemon's fall monitor


def _percentiles(values: list[float], points: tuple[int, ...] = (50, 95)) -> dict[str, float]:
    if not values:
        return {}
    out = {f"p{p}": round(float(np.percentile(values, p)), 3) for p in points}
    out["max"] = round(float(np.max(values)), 3)
    return out


def walk_figures(start: tuple[np.ndarray, float], end: tuple[np.ndarray, float]) -> dict[str, float]:
    """Displacement along and across the starting heading, and the heading change, from
    (position, yaw) at the start and at the end."""
    (p0, yaw0), (p1, yaw1) = start, end
    dx, dy = float(p1[0] - p0[0]), float(p1[1] - p0[1])
    return {
        "distance_m": round(dx * math.cos(yaw0) + dy * math.sin(yaw0), 4),
        "lateral_m": round(-dx * math.sin(yaw0) + dy * math.cos(yaw0), 4),
        "yaw_deg": round(math.degrees(wrap_angle(yaw1 - yaw0)), 2),
    }


class WalkSummary:
    """Collects what the tracker saw, frame by frame."""

    def __init__(self) -> None:
        self.frames = self.dropped = 0
        self.measurements: list[Measurement] = []
        self.lost: Counter[str] = Counter()
        self.detect_s: list[float] = []
        self.latency_s: list[float] = []
        self.truth: list[tuple[Measurement, Pose]] = []
        self.fell = False

    def drop(self) -> None:
        self.frames += 1
        self.dropped += 1

    def add(self, observation: Observation, latency_s: float, truth: Pose | None = None) -> None:
        self.frames += 1
        self.detect_s.append(observation.detect_s)
        if isinstance(observation, Lost):
            self.lost[observation.reason] += 1
            return
        self.measurements.append(observation)
        self.latency_s.append(latency_s)
        if observation.euler is not None:
            roll, pitch, _ = observation.euler
            tilt = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch)))))
            self.fell = self.fell or tilt > FALL_TILT_DEG
        if truth is not None:
            self.truth.append((observation, truth))

    def result(self) -> dict[str, Any]:
        m = self.measurements
        out: dict[str, Any] = {
            "frames": self.frames, "poses": len(m), "dropped": self.dropped,
            "lost": sum(self.lost.values()), "lost_reasons": dict(self.lost.most_common(3)),
        }  # fmt: skip
        if len(m) >= 2:
            duration = m[-1].stamp - m[0].stamp
            figures = walk_figures(self._ends(m[0]), self._ends(m[-1]))
            out.update(figures)
            out["duration_s"] = round(duration, 3)
            out["speed_m_s"] = round(figures["distance_m"] / duration, 4) if duration > 0 else 0.0
            out["torso_height_m"] = round(float(np.median([x.position[2] for x in m])), 4)
            out["fell"] = self.fell
        out["detect_ms"] = _percentiles([t * 1000 for t in self.detect_s], (50, 99))
        out["latency_ms"] = _percentiles([t * 1000 for t in self.latency_s], (50, 99))
        if self.truth:
            out.update(self._errors())
        return out

    @staticmethod
    def _ends(x: Measurement) -> tuple[np.ndarray, float]:
        yaw = 0.0 if x.euler is None else x.euler[2]
        return np.asarray(x.position), yaw

    def _errors(self) -> dict[str, Any]:
        position = [1000 * float(np.linalg.norm(np.asarray(x.position) - t.t)) for x, t in self.truth]
        yaw = [
            abs(math.degrees(wrap_angle(x.euler[2] - t.euler()[2])))
            for x, t in self.truth
            if x.euler is not None
        ]
        first, last = self.truth[0][1], self.truth[-1][1]
        return {
            "position_error_mm": _percentiles(position),
            "yaw_error_deg": _percentiles(yaw),
            "truth": walk_figures((first.t, first.euler()[2]), (last.t, last.euler()[2])),
        }


__all__ = ["WalkSummary", "tilt_deg", "walk_figures"]
