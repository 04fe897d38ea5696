"""The fixed-rate control loop: read, decide, filter, write, on absolute deadlines.

One thread owns the HAL and runs :meth:`ControlLoop.tick`. Commands from other threads
reach it through a queue drained once a tick; what it did leaves as a :class:`Snapshot`
published once a tick (a single reference swap, so readers never block the loop).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from plend.control.safety import SafetyFilter
from plend.core.clock import Clock, StepClock, WallClock
from plend.core.errors import PlendError
from plend.hal.base import GroundTruth, Hal, ImuReading, JointTruth, Sensors, TorsoTruth
from plend.model.robot import NUM_JOINTS

__all__ = [
    "MAX_COMMANDS_PER_TICK", "Clock", "ControlLoop", "Decider", "LoopStalledError", "LoopStats", "Request",
    "RingStats", "Snapshot", "StepClock", "WallClock",
]  # fmt: skip


class Decider(Protocol):
    """Chooses each tick's targets (the supervisor, or a bare controller in tests)."""

    @property
    def mode(self) -> str: ...

    def sense(self, sensors: Sensors) -> None:
        """Take this tick's readings, before any command is applied."""

    def update(self, sensors: Sensors, last_targets: np.ndarray | None) -> np.ndarray | None:
        """Targets for this tick, or None to relax."""

    def handle(self, name: str, **args: Any) -> dict[str, Any]:
        """Apply a command between ticks."""

    def powered_mask(self) -> np.ndarray | None:
        """Which joints to power this tick when not all (calibration powers one); None: all."""


class RingStats:
    """The last ``capacity`` values of a per-tick figure (seconds)."""

    def __init__(self, capacity: int = 3000):
        self._data = np.zeros(capacity)
        self._n = 0

    def add(self, value: float) -> None:
        self._data[self._n % len(self._data)] = value
        self._n += 1

    def values(self) -> np.ndarray:
        return self._data[: min(self._n, len(self._data))].copy()

    def percentiles_ms(self) -> dict[str, float]:
        """p50, p99 and max over the window, in milliseconds."""
        data = self.values() * 1000.0
        if data.size == 0:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(data, [50, 99])
        return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(data.max()), 4)}


@dataclass
class LoopStats:
    """Tick counts and recent timings of a loop."""

    ticks: int = 0
    overruns: int = 0
    compute: RingStats = field(default_factory=RingStats)
    lateness: RingStats = field(default_factory=RingStats)
    wakeups: RingStats = field(default_factory=RingStats)

    def rate_hz(self) -> float:
        """Achieved tick rate over the recent window."""
        times = self.wakeups.values()
        span = float(times.max() - times.min()) if times.size > 1 else 0.0
        return (times.size - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class Snapshot:
    """What the loop did on its last tick, for status and telemetry."""

    tick: int
    time: float
    mode: str
    targets: np.ndarray | None
    measured: np.ndarray
    imu: ImuReading
    contacts: tuple[bool, bool]
    compute_s: float
    lateness_s: float
    overruns: int
    truth: np.ndarray | None = None  # a simulated robot's actual joint angles
    powered: np.ndarray | None = None  # which joints' servos were driven (None: none)
    torso: TorsoTruth | None = None  # a simulated robot's true torso pose


# Commands applied per tick beyond the urgent ones; more wait for the next tick, so a
# flood of clients cannot stretch a tick.
MAX_COMMANDS_PER_TICK = 32

_ALL = np.ones(NUM_JOINTS, bool)
_ALL.flags.writeable = False


class Request:
    """A command for the loop, with a slot for its outcome.

    ``received`` is when a client's request arrived (``time.perf_counter``), so the loop
    can tell how long an urgent one took to act on.
    """

    def __init__(self, name: str, **args: Any):
        self.name, self.args = name, args
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.received = time.perf_counter()
        self._callbacks: list[Callable[[Request], None]] = []
        self._lock = threading.Lock()

    def add_done_callback(self, callback: Callable[[Request], None]) -> None:
        """Call ``callback(self)`` once the loop has handled this request (at once if it has).

        Callbacks run on the control thread: they must be quick and must not raise.
        """
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def finish(self) -> None:
        """Mark the request handled and tell whoever waits (the control thread calls this)."""
        with self._lock:
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def wait(self, timeout: float) -> dict[str, Any]:
        """The command's result; re-raises its error; LoopStalledError on timeout."""
        if not self.done.wait(timeout):
            raise LoopStalledError(f"the control loop did not take '{self.name}' within {timeout} s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class LoopStalledError(PlendError, TimeoutError):
    """The control loop is not running ticks."""


class ControlLoop:
    """Runs one decider against one HAL at a fixed rate.

    Deadlines are absolute (start + n * period), so the loop never drifts. A tick that
    ends past the next deadline counts as an overrun, and the schedule is re-based from
    now instead of bursting to catch up.
    """

    def __init__(
        self,
        hal: Hal,
        decider: Decider,
        period_s: float,
        safety: SafetyFilter,
        clock: Clock | None = None,
        perf_counter: Callable[[], float] = time.perf_counter,
    ):
        self.hal = hal
        self.decider = decider
        self.period = period_s
        self.safety = safety
        self.clock = clock or WallClock()
        self._perf = perf_counter
        self.stats = LoopStats()
        self.sensors: Sensors | None = None
        self.snapshot: Snapshot | None = None
        self.last_targets: np.ndarray | None = None
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        # E-stop and relax: applied first every tick, before any other command, however
        # many wait; when they were acted on is kept in ``urgent_latency``.
        self.urgent: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self.urgent_latency = RingStats(1000)
        self._wake = threading.Event()
        self._last_start = -math.inf
        self._moved = False  # a command moved the robot itself this tick (a respawn)
        self.observers: list[Callable[[Snapshot], None]] = []
        self._next = 0.0
        self._truth = hal.true_joint_angles if isinstance(hal, JointTruth) else None
        self._torso = hal.truth if isinstance(hal, GroundTruth) else None

    def start(self) -> None:
        """Read the robot once and start slewing from its measured pose."""
        self.sensors = self.hal.read()
        self.decider.sense(self.sensors)
        self.safety.reset(self.sensors.joint_pos)
        self._next = self.clock.now()

    def submit(self, request: Request, urgent: bool = False) -> Request:
        """Queue a command for the next tick (any thread). ``urgent`` ones (e-stop, relax)
        are applied before every other command of that tick."""
        if urgent:
            self.urgent.put(request)
            self._wake.set()
        else:
            self.requests.put(request)
        return request

    def tick(self) -> bool:
        """One cycle: wait, read, apply commands, decide, filter, write. Returns whether
        the tick kept its deadline."""
        self._wait()
        woke = self._last_start = self.clock.now()
        self.stats.wakeups.add(woke)
        lateness = max(0.0, woke - self._next)
        began = self._perf()
        sensors = self.sensors = self.hal.read()
        self.decider.sense(sensors)
        self._moved = False
        urgent = self._drain(self.urgent, None)
        self._drain(self.requests, MAX_COMMANDS_PER_TICK)
        if self._moved:  # the robot was moved (a simulated one stood up): read it again
            sensors = self.sensors = self.hal.read()
            self.decider.sense(sensors)
            self.safety.reset(sensors.joint_pos)
        targets = self.decider.update(sensors, self.last_targets)
        powered = self.decider.powered_mask()
        if targets is None or (powered is not None and not powered.any()):
            self.hal.relax()
            self.safety.reset(sensors.joint_pos)
            self.last_targets = None
            powered = None
        elif powered is None or powered.all():
            self.last_targets = self.safety.apply(targets)
            self.hal.write(self.last_targets)
            powered = _ALL
        else:
            self.last_targets = self.safety.apply(targets, powered, sensors.joint_pos)
            self.hal.write_some(self.last_targets, powered)
        compute = self._perf() - began
        for request in urgent:  # acted on: the servos got this tick's targets (or none)
            self.urgent_latency.add(self._perf() - request.received)
            request.finish()
        on_time = self._schedule()
        self._publish(sensors, compute, lateness, powered)
        return on_time

    def _wait(self) -> None:
        """Sleep until the next deadline. An urgent command ends the sleep early, but not
        before half a period has passed since the last tick began: a tick may come early,
        never an extra one, so the rate holds however many e-stops arrive."""
        earliest = self._last_start + self.period / 2
        if earliest >= self._next:
            self.clock.sleep_until(self._next)
            return
        self.clock.sleep_until(earliest)
        self._wake.clear()
        if self.urgent.empty():
            self.clock.wait_until(self._next, self._wake)

    def _drain(self, requests: queue.SimpleQueue[Request], limit: int | None) -> list[Request]:
        """Apply queued commands (at most ``limit``). With no limit, the handled requests
        are returned unfinished: the caller finishes them once the HAL has been written."""
        held: list[Request] = []
        n = 0
        while limit is None or n < limit:
            try:
                request = requests.get_nowait()
            except queue.Empty:
                break
            n += 1
            try:
                request.result = self.decider.handle(request.name, **request.args)
                self._moved = self._moved or bool(request.result and request.result.get("respawned"))
            except Exception as exc:  # reported to the client, never kills the loop
                request.error = exc
            if limit is None:
                held.append(request)
            else:
                request.finish()
        return held

    def _schedule(self) -> bool:
        self.stats.ticks += 1
        self._next += self.period
        now = self.clock.now()
        if now > self._next:
            self.stats.overruns += 1
            self._next = now + self.period
            return False
        return True

    def _publish(self, sensors: Sensors, compute: float, lateness: float, powered: np.ndarray | None) -> None:
        self.stats.compute.add(compute)
        self.stats.lateness.add(lateness)
        targets = None if self.last_targets is None else self.last_targets.copy()
        self.snapshot = Snapshot(
            tick=self.stats.ticks, time=sensors.stamp, mode=self.decider.mode, targets=targets,
            measured=sensors.joint_pos.copy(), imu=sensors.imu, contacts=sensors.contacts,
            compute_s=compute, lateness_s=lateness, overruns=self.stats.overruns,
            truth=None if self._truth is None else self._truth(), powered=powered,
            torso=None if self._torso is None else self._torso(),
        )  # fmt: skip
        for observer in self.observers:
            observer(self.snapshot)

    def run(self, ticks: int, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Run up to ``ticks`` ticks, or until ``should_stop()``; return ticks run."""
        for n in range(ticks):
            if should_stop():
                return n
            self.tick()
        return ticks
