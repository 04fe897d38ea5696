"""The safety monitors the supervisor runs every tick: falls, stale sensors, servos that do
not follow, and the faults they raise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaits.sine import GaitParams, joint_targets
from plend.core.config import SafetyConfig
from plend.model.robot import JOINT_NAMES
from plend.model.sensors import Sensors


@dataclass
class Fault:
    """A safety event. Latched faults stay until ``reset``."""

    code: str
    message: str
    since: float
    latched: bool = True
    resettable: bool = True  # False: only a fix clears it (a new calibration), not reset


class FaultLog:
    """The faults in force and the last :data:`HISTORY` raised (cleared ones included)."""

    HISTORY = 50

    def __init__(self) -> None:
        self.active: list[Fault] = []
        self.history: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self.active.append(fault)
        self.history = [*self.history[1 - self.HISTORY :], fault]

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.active)

    def latched(self) -> list[Fault]:
        return [f for f in self.active if f.latched]

    def clear(self, code: str) -> None:
        self.active = [f for f in self.active if f.code != code]

    def clear_latched(self) -> None:
        """What ``reset`` clears: the latched faults, but those only a fix clears."""
        self.active = [f for f in self.active if not f.latched or not f.resettable]

    def listed(self) -> list[dict[str, Any]]:
        """The faults in force, for status."""
        return [
            {"code": f.code, "message": f.message, "since": f.since, "latched": f.latched}
            for f in self.active
        ]


@dataclass
class MonitorCounts:
    """How often each monitor acted."""

    falls: int = 0
    stale: int = 0
    tracking: int = 0
    estops: int = 0


def crouch_pose() -> np.ndarray:
    """A low, wide pose to fall into."""
    return joint_targets(0.0, GaitParams(crouch_m=0.014), 0.0)


@dataclass
class Monitors:
    """The fall, stale-sensor and tracking monitors with what each remembers between ticks."""

    config: SafetyConfig
    period: float
    tilted_ticks: int = 0
    tracking_since: np.ndarray | None = None
    counts: MonitorCounts = field(default_factory=MonitorCounts)

    def fall(self, sensors: Sensors) -> bool:
        """True once the torso has tilted past ``fall_tilt_deg`` for ``fall_ticks`` ticks."""
        roll, pitch, _ = sensors.imu.euler
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch)))))
        self.tilted_ticks = self.tilted_ticks + 1 if tilt > self.config.fall_tilt_deg else 0
        return self.tilted_ticks >= self.config.fall_ticks

    def stale(self, sensors: Sensors) -> str | None:
        """Which readings are older than ``stale_timeout_s``, or None."""
        limit = self.config.stale_timeout_s
        if sensors.joint_age() > limit:
            return f"joint readings are {sensors.joint_age():.2f} s old"
        if sensors.imu_age() > limit:
            return f"IMU readings are {sensors.imu_age():.2f} s old"
        return None

    def tracking(self, sensors: Sensors, targets: np.ndarray | None, now: float) -> str | None:
        """Which servo has been too far from its target for too long, or None."""
        if targets is None:
            self.tracking_since = None
            return None
        error = np.abs(targets - sensors.joint_pos)
        off = np.nan_to_num(error, nan=0.0) > self.config.tracking_error_rad
        if self.tracking_since is None:
            self.tracking_since = np.full(len(error), np.inf)
        self.tracking_since = np.where(off, np.minimum(self.tracking_since, now), np.inf)
        stuck = np.flatnonzero(now - self.tracking_since >= self.config.tracking_time_s)
        if stuck.size == 0:
            return None
        j = int(stuck[0])
        return (
            f"{JOINT_NAMES[j]} is {error[j]:.2f} rad from its target for "
            f"{self.config.tracking_time_s} s (blocked, disconnected or miscalibrated servo?)"
        )
