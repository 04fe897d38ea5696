"""What calibration mode watches and plays on the one joint it powers: the stall guard
that stops a joint pushing on a hard stop, an obstacle or a loose feedback wire, and the
slow sweep that reads a joint's feedback."""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

# A joint whose feedback code moves less than this while its target travels this far has
# stopped following: a hard stop, an obstacle, or a loose feedback wire. A working
# potentiometer gives about 250 codes over that travel.
STALL_TRAVEL_DEG = 4.0
# While servo identification plays its excitation a joint reverses often, and a reversal
# moves the link only once the servo's dead band and the gears' play are crossed (up to
# 5 deg, see calibration.fit.MAX_HYSTERESIS_DEG): the guard then waits for more travel.
IDENTIFY_STALL_TRAVEL_DEG = 8.0
STALL_MIN_CODES = 60.0
# A target that came to rest STALL_TRAVEL_DEG past where the link last followed it, the
# same way as it then went, pushes on something: that travel covers the gears' play and
# the dead band, which a link with little load, carried by its swing to the front of its
# play, must be taken across before it moves on the same way. The moving stall check
# counts its travel from where it last judged the joint to follow, up to STALL_TRAVEL_DEG
# further back; this one, judged once the target has been still a while (the servo's
# delay and lag), counts it from where the link last followed. The link follows while its
# feedback moves STALL_MIN_CODES / 4 within FOLLOW_WINDOW_S (a fifth of its pace at
# calibration mode's 0.5 rad/s): a link pressed into a soft stop creeps a few codes a tick,
# which is not following.
PUSH_DEG = STALL_TRAVEL_DEG
FOLLOW_WINDOW_S = 0.04


@dataclass
class StallGuard:
    """Watches one powered joint: where its feedback last followed its target.

    It judges only after it has seen the joint follow: a joint already pinned against a
    stop when powered stands still whichever way its target goes, so which way is "into
    the stop" is unknown until it has moved once. After a stall, travel the other way
    (``free_way``) is not judged until the feedback moves again: backing out of a stop is
    always allowed, and the joint only follows once its target has left the stop.
    """

    target: float
    code: float
    free_way: float = 0.0
    armed: bool = False
    travel_deg: float = STALL_TRAVEL_DEG
    window_ticks: int = 2  # FOLLOW_WINDOW_S in ticks of the loop

    def __post_init__(self) -> None:
        self.low = self.high = self.code
        self.moved_target, self.moved_code = self.target, self.code  # last seen moving
        self.followed_target, self.followed_way = self.target, 0.0  # where and which way it last followed
        self._recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=self.window_ticks + 1)

    def stalled(self, target: float, code: float) -> bool:
        """True when the target travelled ``travel_deg`` while every feedback code stayed
        within :data:`STALL_MIN_CODES` (a noisy wire is not still)."""
        if not math.isfinite(code):
            return False
        if not math.isfinite(self.code):
            self.target, self.code, self.low, self.high = target, code, code, code
            self.moved_target, self.moved_code = target, code
            return False
        self.low, self.high = min(self.low, code), max(self.high, code)
        if abs(code - self.moved_code) >= STALL_MIN_CODES / 4:
            self.moved_target, self.moved_code = target, code
        self._recent.append((target, code))
        then_target, then_code = self._recent[0]
        if abs(code - then_code) >= STALL_MIN_CODES / 4:
            self.followed_target = target
            if target != then_target:
                self.followed_way = math.copysign(1.0, target - then_target)
        travel = target - self.target
        if self.high - self.low >= STALL_MIN_CODES:  # it follows: judge from here on
            if abs(travel) >= math.radians(self.travel_deg) or self.free_way or not self.armed:
                self.target, self.code, self.low, self.high, self.free_way = target, code, code, code, 0.0
                self.armed = True
            return False
        if not self.armed or abs(travel) < math.radians(self.travel_deg):
            return False
        return not (self.free_way and math.copysign(1.0, travel) == self.free_way)

    def pushing(self, target: float) -> bool:
        """True when ``target``, at rest, lies :data:`PUSH_DEG` past where the link last
        followed it, the way it was going: in a stop that :meth:`stalled`, counting from
        further back, has not caught (call only once the target has been still long
        enough for the servo to have followed)."""
        if not self.armed or not self.followed_way or self.free_way:
            return False
        return (target - self.followed_target) * self.followed_way >= math.radians(PUSH_DEG)


@dataclass
class Sweep:
    """A slow pass up then down through ``angles`` of one joint, reading its feedback."""

    joint: int
    angles: np.ndarray
    step: int = 0
    settled_s: float = 0.0
    samples: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None
    up: list[float] = dataclasses.field(default_factory=list)
    down: list[float] = dataclasses.field(default_factory=list)
    actual: list[float] = dataclasses.field(default_factory=list)
    done: bool = False

    @property
    def points(self) -> int:
        return 2 * len(self.angles)

    def goal(self) -> float:
        n = len(self.angles)
        return float(self.angles[self.step] if self.step < n else self.angles[2 * n - 1 - self.step])
