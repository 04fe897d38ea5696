"""The daemon's side of driving: one drive session at a time, held by a lease.

A drive client names its session (a token of its choosing) in every update and renews
the lease with it. The supervisor checks the lease every tick on the loop's own clock:
when it lapses, or when the client's connection closes, the session ends and the walk
stops at its next step boundary. An ended session stays ended; updates naming it are
refused, so a client that was stalled (suspended, a slow link) cannot set the robot
walking again by itself: its operator starts a new session with a new key press.
Commands that change what the robot does (stop, stand, e-stop, another gait) end the
session too, and so does anything else that takes the robot off the walk the session
drives (a fault that stands or relaxes it): driving never restarts a walk by itself.

Everything here runs on the control thread, except :meth:`DriveLease.touch`.
"""

from __future__ import annotations

import collections
import inspect
import math
from typing import Any

from plend.core.errors import PlendError

# Commands that take the robot out of the driver's hands.
ENDS_DRIVE = frozenset(
    {"estop", "reset", "relax", "stop", "stand", "gait", "replay", "policy_start", "sim_respawn",
     "calibrate_begin", "calibrate_end"}
)  # fmt: skip
COMMAND_KEYS = ("speed", "turn", "side")
_REMEMBERED = 32  # ended sessions whose reason an update may still be told


class DriveRefusedError(PlendError, RuntimeError):
    """A drive update that cannot be taken: its session ended, or another one drives."""


class DriveLease:
    """Who drives, until when, and why earlier sessions ended."""

    def __init__(self) -> None:
        self.session: str | None = None
        self.lease_s = 0.0
        self.deadline = math.inf
        self.walker: object | None = None  # the behaviour this session walks on
        self._ended: collections.OrderedDict[str, str] = collections.OrderedDict()

    def renew(self, session: str, now: float, lease_s: float) -> None:
        """Take or keep the lease for ``session`` until ``now + lease_s``.

        Raises:
            DriveRefusedError: the session has ended, or another one holds the lease.
        """
        self.may_drive(session)
        self.session, self.lease_s, self.deadline = session, lease_s, now + lease_s

    def may_drive(self, session: str) -> None:
        """Raise DriveRefusedError when ``session`` has ended or another one holds the lease."""
        if session in self._ended:
            raise DriveRefusedError(
                f"drive session ended: {self._ended[session]}; press a movement key to drive again"
            )
        if self.session is not None and self.session != session:
            raise DriveRefusedError("another plenctl drive is driving the robot; stop it first")

    def touch(self, session: str, now: float, lease_s: float) -> bool:
        """Renew the lease of the running ``session`` without the loop (a socket thread,
        for an update that repeats the last one); False when it is not the running one.
        A session ended meanwhile by the loop stays ended: ``lapsed`` needs a session."""
        if self.session != session:
            return False
        self.deadline = now + lease_s
        return True

    def lapsed(self, now: float) -> bool:
        """True when a session holds the lease and has not renewed it in time."""
        return self.session is not None and now > self.deadline

    def check(self, now: float, behaviour: object) -> str | None:
        """Once a tick: why the walk must stop now (the lease lapsed), or None. A session
        whose walk was replaced by something else ends here, with nothing to stop."""
        if self.session is None:
            return None
        if now > self.deadline:
            return f"no drive update for {self.lease_s:g} s"
        if self.walker is not None and behaviour is not self.walker:
            self.end(f"the walk was interrupted (mode {getattr(behaviour, 'name', '?')})")
        return None

    def end(self, reason: str) -> bool:
        """End the session, if one runs; returns whether one did."""
        if self.session is None:
            return False
        self._ended[self.session] = reason
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)
        self.session, self.deadline, self.walker = None, math.inf, None
        return True


def steer(behaviour: Any, command: dict[str, float]) -> list[str]:
    """Give a walking behaviour the parts of ``command`` (speed, turn, side) it takes.

    The sine gait takes all three; a policy takes those its ``set_command`` names, or
    none when it has no such method (it walks as it was trained); a policy with its own
    ``steer`` (policies.runner) holds each part to the range it trained for. Returns the
    names taken.
    """
    own = getattr(behaviour, "steer", None)
    if callable(own):
        return list(own(command))
    setter = getattr(behaviour, "set_command", None)
    if not callable(setter):
        return []
    accepted = inspect.signature(setter).parameters
    taken = [key for key in COMMAND_KEYS if key in accepted]
    setter(**{key: command[key] for key in taken})
    return taken
