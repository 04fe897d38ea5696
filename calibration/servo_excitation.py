"""The excitation of one joint for servo identification: what it is commanded, tick by tick.

One run, about 4.5 s, around a centre angle, in this order:

1. a preamble that pushes the servo's dead band and gear play to a known side (not fitted);
2. a step train: steps of 1-8 deg both ways, each held 0.12 s, with reversals of every size
   (the dead band, the backlash and where each sits against the lag), small steps near
   the dead band, and steps on in the same direction (delay and lag);
3. a burst of one-tick alternations, the fastest the PWM frames allow (the lag);
4. a fast step out and back, up to 40 deg towards the joint's wider side, at the slew
   limit (the speed: the servo must be asked to move faster than it can);
5. a slow triangle +-6 deg at 0.35 rad/s (backlash and dead band quasi-statically, and,
   where the joint's load turns over, the jump of the gear play).

Every target lies inside ``[low, high]`` and moves at most ``slew_rad_s * period_s`` a
tick; the daemon checks both again before anything moves.
"""

from __future__ import annotations

import math

import numpy as np

RUN_S = 4.5  # about; it depends on the joint's room and the slew limit
PREAMBLE_S = 0.3  # the part of a run the fit ignores
STEP_HOLD_S = 0.12
STEPS_DEG = (3.0, -1.5, -3.0, 1.0, 5.0, 2.0, -8.0, 0.8, 1.6, -4.0, 7.0, -2.5, 4.0, -5.0, 1.2, -0.6)
ALTERNATIONS_DEG = (2.5, 5.0)
ALTERNATION_TICKS = 8
BIG_STEP_DEG = 40.0  # the fast steps' size when the joint has the room
TRIANGLE_DEG = 6.0
TRIANGLE_RAD_S = 0.35
ROOM_DEG = 12.0  # wanted on each side of the centre
MIN_ROOM_DEG = 6.0


class ExcitationError(ValueError):
    """The joint has too little room for an excitation."""


def choose_centre(resting: float, low: float, high: float) -> float:
    """The centre of the excitation: where the joint rests (so it hardly moves to start,
    and a joint that hangs under its own weight is excited around where its load turns
    over), moved inward until there is :data:`ROOM_DEG` on both sides if the range allows.

    Raises:
        ExcitationError: ``[low, high]`` is narrower than twice :data:`MIN_ROOM_DEG`.
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high - low < 2 * math.radians(MIN_ROOM_DEG):
        raise ExcitationError(
            f"the joint's safe range {math.degrees(low):+.1f}..{math.degrees(high):+.1f} deg is narrower "
            f"than {2 * MIN_ROOM_DEG:.0f} deg: too little room to identify its servo"
        )
    room = min(math.radians(ROOM_DEG), (high - low) / 2)
    start = resting if math.isfinite(resting) else (low + high) / 2
    return float(min(max(start, low + room), high - room))


class _Builder:
    def __init__(self, centre: float, period_s: float, slew_rad_s: float, low: float, high: float):
        self.period, self.step = period_s, slew_rad_s * period_s
        self.low, self.high = low, high
        self.targets = [centre]

    def ticks(self, seconds: float) -> int:
        return max(1, round(seconds / self.period))

    def go(self, angle: float, speed: float | None = None) -> None:
        """To ``angle`` as fast as allowed (or at ``speed``), in equal steps."""
        angle = min(max(angle, self.low), self.high)
        here = self.targets[-1]
        per_tick = self.step if speed is None else min(self.step, speed * self.period)
        n = max(1, math.ceil(abs(angle - here) / per_tick - 1e-9))
        self.targets += list(np.linspace(here, angle, n + 1)[1:])

    def hold(self, seconds: float) -> None:
        self.targets += [self.targets[-1]] * self.ticks(seconds)


def excitation(centre: float, low: float, high: float, period_s: float, slew_rad_s: float) -> np.ndarray:
    """One run's targets (rad), one per tick, starting and ending at ``centre``.

    Args:
        centre: from :func:`choose_centre`.
        low, high: the joint's safe range (rad).
        period_s: the control period.
        slew_rad_s: the fastest a target may move (the safety filter's slew limit).
    """
    if not low <= centre <= high:
        raise ExcitationError(f"centre {centre:+.3f} rad is outside {low:+.3f}..{high:+.3f} rad")
    room = min(centre - low, high - centre)
    scale = min(1.0, room / math.radians(ROOM_DEG))
    b = _Builder(centre, period_s, slew_rad_s, low, high)
    d = math.radians
    b.go(centre - d(4.0) * scale)  # preamble: play pushed down, then up to the centre
    b.hold(0.1)
    b.go(centre)
    b.hold(PREAMBLE_S - 0.1)
    for size in STEPS_DEG:
        b.go(b.targets[-1] + d(size) * scale)
        b.hold(STEP_HOLD_S)
    b.go(centre)
    for amplitude in ALTERNATIONS_DEG:
        for k in range(ALTERNATION_TICKS):
            b.go(centre + d(amplitude) * scale * (1 if k % 2 == 0 else -1) / 2)
        b.go(centre)
        b.hold(STEP_HOLD_S)
    # Out and back as far as the joint allows, towards its wider side.
    wide = high - centre if high - centre >= centre - low else low - centre
    big = math.copysign(min(d(BIG_STEP_DEG), abs(wide)), wide)
    for target in (centre + big, centre):
        b.go(target)
        b.hold(0.25)
    for target in (centre + d(TRIANGLE_DEG) * scale, centre - d(TRIANGLE_DEG) * scale, centre):
        b.go(target, TRIANGLE_RAD_S)
    b.hold(0.1)
    return np.asarray(b.targets)


def frame_phases(period_s: float, frame_s: float, ticks: int) -> float:
    """How much of the PCA9685's frame a run's ticks leave unvisited: the widest gap
    between the phases (within the frame) at which its ticks write, as a share of the
    frame. The delay a run measures is the average over the phases it visits: near 0 the
    average over them all; at 50 Hz against 50 Hz frames nearly 1 (one phase, which
    drifts with the board's oscillator)."""
    phases = np.sort(np.mod(np.arange(ticks) * period_s, frame_s))
    gaps = np.diff(np.concatenate([phases, [phases[0] + frame_s]]))
    return float(gaps.max() / frame_s)


def two_runs(centre: float, low: float, high: float, period_s: float, slew_rad_s: float) -> np.ndarray:
    """Two identical runs back to back (for the repeatability), as one sequence; the
    second starts at index ``len(result) // 2``."""
    run = excitation(centre, low, high, period_s, slew_rad_s)
    return np.concatenate([run, run])
