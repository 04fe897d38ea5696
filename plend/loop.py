"""The fixed-rate control loop: read, update, filter, write, on absolute deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from plend.hal.base import Hal, Sensors
from plend.safety import SafetyFilter


class Controller(Protocol):
    """Proposes joint targets each tick."""

    def update(self, sensors: Sensors | None, dt: float) -> np.ndarray:
        """Return the 18 joint targets (rad) for this tick."""


class Clock(Protocol):
    """Where the loop gets its time and how it waits."""

    def now(self) -> float:
        """Seconds, monotonic."""

    def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline``."""


class WallClock:
    """The monotonic wall clock."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class StepClock:
    """A clock that jumps to each deadline at once: runs as fast as the machine allows."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)


@dataclass
class LoopStats:
    """Tick counts and timings (seconds) of a loop."""

    ticks: int = 0
    overruns: int = 0
    compute: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)

    def percentiles_ms(self, which: str) -> dict[str, float]:
        """p50/p99/max of ``compute`` or ``lateness`` in milliseconds."""
        data = np.asarray(getattr(self, which)) * 1000.0
        if data.size == 0:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(data, [50, 99])
        return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(data.max()), 4)}


class ControlLoop:
    """Runs one controller against one HAL at a fixed rate.

    Deadlines are absolute (start + n * period), so the loop never drifts. A tick that
    ends past the next deadline counts as an overrun, and the schedule is re-based from
    now instead of bursting to catch up.
    """

    def __init__(
        self,
        hal: Hal,
        controller: Controller,
        period_s: float,
        safety: SafetyFilter,
        clock: Clock | None = None,
        perf_counter: Callable[[], float] = time.perf_counter,
    ):
        self.hal = hal
        self.controller = controller
        self.period = period_s
        self.safety = safety
        self.clock = clock or WallClock()
        self._perf = perf_counter
        self.stats = LoopStats()
        self.sensors: Sensors | None = None

    def start(self) -> None:
        """Read the robot once and start slewing from its measured pose."""
        self.sensors = self.hal.read()
        self.safety.reset(self.sensors.joint_pos)
        self._next = self.clock.now()

    def tick(self) -> np.ndarray:
        """One cycle: wait for the deadline, read, update, filter, write."""
        self.clock.sleep_until(self._next)
        woke = self.clock.now()
        self.stats.lateness.append(max(0.0, woke - self._next))
        began = self._perf()
        self.sensors = self.hal.read()
        targets = self.safety.apply(self.controller.update(self.sensors, self.period))
        self.hal.write(targets)
        self.stats.compute.append(self._perf() - began)
        self.stats.ticks += 1
        self._next += self.period
        if self.clock.now() > self._next:
            self.stats.overruns += 1
            self._next = self.clock.now() + self.period
        return targets

    def run(self, ticks: int, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Run up to ``ticks`` ticks, or until ``should_stop()``; return ticks run."""
        for n in range(ticks):
            if should_stop():
                return n
            self.tick()
        return ticks
