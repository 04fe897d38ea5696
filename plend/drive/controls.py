"""The control socket's drive commands: ``drive`` (one update of a drive session) and the
connection hook that ends a session when its client goes away.

A request is ``{"cmd": "drive", "args": {"session": "k3f9", "speed": 0.4, "turn": 0.0,
"side": 0.0}}`` with optional ``lease_s`` (default ``drive.lease_s``) and ``walker``
(``"sine"``, the default, or ``"policy"``: what starts when the command asks for motion
from standing). The reply carries the mode, which walker took which parts of the command,
the robot's motion (plend.drive.motion) and the active faults' codes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from gaits.sine import GaitError, check_command
from plend.control.loop import ControlLoop
from plend.core.config import Config
from plend.core.errors import PlendError
from plend.daemon.protocol import quote
from plend.daemon.server import ArgumentError, Handler, LoopCall, argument, current_connection
from plend.drive.lease import COMMAND_KEYS, DriveLease
from plend.drive.motion import motion

log = logging.getLogger("plend.drive")

WALKERS = ("sine", "policy")
_ARGUMENTS = frozenset({"session", *COMMAND_KEYS, "lease_s", "walker"})
_SESSIONS_KEPT = 8  # sessions remembered per connection


class DriveControls:
    """Checks drive updates on the socket thread and hands them to the loop."""

    def __init__(
        self,
        loop: ControlLoop,
        config: Config,
        submit: Callable[..., dict[str, Any]],
        supervisor: Any,
        pose: Any = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ):
        self.loop, self.config, self._submit, self.pose = loop, config, submit, pose
        self.supervisor = supervisor
        self.lease: DriveLease = supervisor.drive
        self._wall = wall_clock
        self._lock = threading.Lock()
        # connection -> the sessions it named, newest last: all are ended when it closes,
        # so an update it sent for another session cannot hide the one that walks.
        self._connections: dict[int, dict[str, None]] = {}
        # The last update the loop applied and its answer: a repeat of it only renews the lease.
        self._applied: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"drive": self.drive}

    def drive(self, args: dict[str, Any]) -> dict[str, Any] | LoopCall:
        """One drive update (see the module's docstring). Runs on the socket thread and
        never waits: a repeat is answered at once, anything else goes to the loop."""
        session, command, lease_s, walker = self._checked(args)
        connection = current_connection()
        if connection is not None:
            with self._lock:
                self._remember(self._connections.setdefault(connection, {}), session)
        update = (session, command, lease_s, walker)
        result = self._repeat(update)
        if result is not None:
            return self._reply(result, command, lease_s)

        def applied(result: dict[str, Any]) -> dict[str, Any]:
            self._applied = (update, result)
            return self._reply(result, command, lease_s)

        return LoopCall(
            "drive",
            {"session": session, "command": command, "lease_s": lease_s, "walker": walker},
            then=applied,
        )

    def _reply(self, result: dict[str, Any], command: dict[str, float], lease_s: float) -> dict[str, Any]:
        return {
            **result,
            "command": command,
            "lease_s": lease_s,
            "motion": motion(self.loop.snapshot, self.pose),
            "faults": [f["code"] for f in self.supervisor.fault_list()],
        }

    def _repeat(self, update: tuple[Any, ...]) -> dict[str, Any] | None:
        """The answer to an update that repeats the last applied one, its lease renewed
        here without waiting for a tick; None when the loop must see it. Keeping the
        repetitions out of the loop's queue means a key press never waits behind one."""
        applied = self._applied
        if applied is None or applied[0] != update or applied[1].get("walker") is None:
            return None  # changed, or nothing walks yet: the loop decides
        if not self.lease.touch(update[0], self._wall(), update[2]):
            return None
        return {**applied[1], "mode": self.supervisor.mode}

    def _checked(self, args: dict[str, Any]) -> tuple[str, dict[str, float], float, str]:
        unknown = sorted(set(args) - _ARGUMENTS)
        if unknown:
            raise ArgumentError(f"drive takes {', '.join(sorted(_ARGUMENTS))}, not {quote(unknown)}")
        session = argument(args, "session", str)
        if not 1 <= len(session) <= 64 or not session.isprintable():
            raise ArgumentError("drive: 'session' must be 1 to 64 printable characters")
        command = {}
        for key in COMMAND_KEYS:
            value = argument(args, key, float, required=False)
            try:
                command[key] = check_command(key, 0.0 if value is None else value)
            except GaitError as exc:
                raise ArgumentError(f"drive: {exc}") from None
        lease_s = argument(args, "lease_s", float, required=False)
        lease_s = self.config.drive.lease_s if lease_s is None else lease_s
        if not (math.isfinite(lease_s) and 0.1 <= lease_s <= 5.0):
            raise ArgumentError(f"drive: lease_s = {lease_s!r} is out of range; use a value in [0.1, 5.0]")
        walker = argument(args, "walker", str, required=False)
        walker = "sine" if walker is None else walker
        if walker not in WALKERS:
            raise ArgumentError(f"drive: unknown walker {quote(walker, 40)}; choose sine or policy")
        return session, command, lease_s, walker

    def _remember(self, sessions: dict[str, None], session: str) -> None:
        """Add ``session`` to a connection's; past a few, forget the oldest that does not drive."""
        sessions.pop(session, None)
        sessions[session] = None
        if len(sessions) > _SESSIONS_KEPT:
            old = next(s for s in sessions if s != self.lease.session)
            del sessions[old]

    def connection_closed(self, connection: int) -> None:
        """A client went away: end the sessions it drove, which stops the walk."""
        with self._lock:
            sessions = self._connections.pop(connection, {})
        driving = self.lease.session
        for session in sorted(sessions, key=lambda s: s != driving):  # the one that drives first;
            # ending one that does not drive changes nothing
            try:
                self._submit("drive_end", session=session, reason="the drive client's connection closed")
            except PlendError as exc:
                log.error("could not end the drive session of a closed connection: %s", exc)
