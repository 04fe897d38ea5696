"""Where the control loop gets its time and how it waits: the wall clock on the robot, a
stepping clock for simulations and tests (the loop takes its clock as an argument)."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Where the loop gets its time and how it waits."""

    def now(self) -> float:
        """Seconds, monotonic."""

    def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline``."""

    def wait_until(self, deadline: float, wake: threading.Event) -> None:
        """Like ``sleep_until``, but return as soon as ``wake`` is set."""


class WallClock:
    """The monotonic clock; sleeps to ``spin_s`` before a deadline, then spins to it.

    With ``scale`` above 1 the clock runs that many times faster than real time (a
    simulated robot only: rehearsals and tests).
    """

    def __init__(self, spin_s: float = 0.0, scale: float = 1.0):
        self.spin_s = spin_s
        self.scale = scale
        self._origin = time.monotonic()

    def now(self) -> float:
        if self.scale == 1.0:
            return time.monotonic()
        return self._origin + (time.monotonic() - self._origin) * self.scale

    def sleep_until(self, deadline: float) -> None:
        delay = (deadline - self.now()) / self.scale - self.spin_s
        if delay > 0:
            time.sleep(delay)
        while self.now() < deadline:
            pass

    def wait_until(self, deadline: float, wake: threading.Event) -> None:
        """Like :meth:`sleep_until`, but return as soon as ``wake`` is set."""
        delay = (deadline - self.now()) / self.scale - self.spin_s
        if delay > 0 and wake.wait(delay):
            return
        while self.now() < deadline and not wake.is_set():
            pass


class StepClock:
    """A clock that jumps to each deadline at once: runs as fast as the machine allows."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)

    def wait_until(self, deadline: float, wake: threading.Event) -> None:
        if not wake.is_set():
            self.t = max(self.t, deadline)
