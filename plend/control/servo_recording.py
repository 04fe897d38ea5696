"""Servo identification's excitation, played and recorded on the control thread.

The wizard sends one joint's targets, one per tick (see :mod:`calibration.servo_excitation`);
calibration mode checks them all before anything moves, brings the joint slowly to the
first, lets it settle, and then plays one target a tick. Each tick it records what the
joint's feedback read at the start of the tick (angle and raw code, and whether the
reading was fresh), and the angle the servo was sent (the pulse is whole PCA9685 counts).
Nothing here touches the bus: calibration mode reads the HAL's last values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_SECONDS = 30.0  # of targets in one request


class ExcitationError(ValueError):
    """The targets cannot be played; nothing moved."""


def check_targets(
    targets: object, low: float, high: float, max_step: float, period_s: float, name: str
) -> np.ndarray:
    """The targets as an array, after checking every one.

    Raises:
        ExcitationError: not a list of finite numbers, too long, a target outside
            ``[low, high]`` or a step between two ticks larger than ``max_step``.
    """
    if not isinstance(targets, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in targets
    ):
        raise ExcitationError("targets must be a list of numbers (rad), one per tick")
    limit = int(MAX_SECONDS / period_s)
    if not 2 <= len(targets) <= limit:
        raise ExcitationError(
            f"targets must hold 2 to {limit} ticks ({MAX_SECONDS:.0f} s), got {len(targets)}"
        )
    values = np.asarray(targets, float)
    if not np.isfinite(values).all():
        raise ExcitationError("targets must be finite")
    outside = np.flatnonzero((values < low - 1e-9) | (values > high + 1e-9))
    if len(outside):
        bad = math.degrees(values[outside[0]])
        raise ExcitationError(
            f"{name}: target {outside[0]} ({bad:+.1f} deg) is outside its calibration-safe range "
            f"{math.degrees(low):+.1f}..{math.degrees(high):+.1f} deg"
        )
    steps = np.abs(np.diff(values))
    if len(steps) and steps.max() > max_step + 1e-9:
        tick = int(np.argmax(steps)) + 1
        raise ExcitationError(
            f"{name}: target {tick} moves {math.degrees(steps.max()):.1f} deg in one tick, more than the "
            f"slew limit allows ({math.degrees(max_step):.1f} deg a tick)"
        )
    return values


@dataclass
class ExcitationRecord:
    """One joint's excitation while it plays.

    Attributes:
        joint: the joint's index.
        targets: one per tick, the first where the joint settles before it starts.
        runs: how many equal runs ``targets`` holds (for the truth of a simulated robot).
        started: True once the joint has settled at the first target and playing began.
    """

    joint: int
    targets: np.ndarray
    runs: int = 1
    started: bool = False
    tick: int = 0
    period_s: float = 0.0
    sent: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    codes: list[float] = field(default_factory=list)
    fresh: list[bool] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    error: str | None = None
    done: bool = False
    truth: list[dict[str, float]] | None = None

    def record(
        self, measured: float, code: float, fresh: bool, stamp: float, sent: float, dt: float
    ) -> float:
        """Keep this tick's reading and the angle its target will be sent as; returns the
        tick's target."""
        target = float(self.targets[self.tick])
        self.measured.append(measured)
        self.codes.append(code)
        self.fresh.append(fresh)
        self.stamps.append(stamp)
        self.sent.append(sent)
        self.period_s = dt
        self.tick += 1
        self.done = self.tick >= len(self.targets)
        return target

    def run_bounds(self) -> list[tuple[float, float]]:
        """The first and last reading's stamps of each run."""
        size = len(self.stamps) // self.runs
        return [(self.stamps[r * size], self.stamps[(r + 1) * size - 1] + 1e-6) for r in range(self.runs)]

    def state(self) -> dict[str, Any]:
        """What ``calibrate state`` says about it; the recording once it is done."""
        out: dict[str, Any] = {
            "done": self.done, "error": self.error, "started": self.started,
            "progress": self.tick / len(self.targets),
        }  # fmt: skip
        if self.done and self.error is None:
            out.update(
                period_s=self.period_s, runs=self.runs, sent=self.sent,
                measured=[v if math.isfinite(v) else None for v in self.measured],
                codes=[v if math.isfinite(v) else None for v in self.codes], fresh=self.fresh,
            )  # fmt: skip
            if self.truth is not None:
                out["truth"] = self.truth
        return out
