"""The drive client's connection to the daemon, on its own thread.

While a session runs, the link sends the current command at once when it changes and
again every ``period`` (that repetition is what keeps the daemon's dead-man lease alive);
without one it asks for the status a few times a second, for the display. Stop and stand
go through it in order after the last update. The e-stop never does: the client sends it
from its own thread on a connection of its own, so it never waits behind an update.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from plend.core.errors import PlendError
from plend.drive.keys import Command

IDLE_PERIOD_S = 0.25  # status requests while no session runs


class Link:
    """What the client last asked and last heard; :meth:`run` is the thread's body."""

    def __init__(
        self, client: Any, period_s: float, walker: str, clock: Callable[[], float] = time.monotonic
    ):
        self.client, self.period, self.walker, self._clock = client, period_s, walker, clock
        self._asked_period = period_s
        self._wake = threading.Condition()
        self._command = Command()
        self._session: str | None = None
        self._actions: collections.deque[str] = collections.deque()
        self._closing = False
        self._poked = False  # a new command to send now, not at the next repetition
        self.heard: dict[str, Any] = {}  # mode, motion, faults, took: the last reply
        self.note = ""  # the last refusal, for the display
        self.error: BaseException | None = None  # what ended the thread
        self.sent_at: dict[str, float] = {}  # when the last update left, and when its reply came

    @property
    def command(self) -> Command:
        return self._command

    @property
    def driving(self) -> bool:
        return self._session is not None

    def set(self, command: Command) -> None:
        """Ask for ``command`` now; a command that asks for motion starts a session."""
        with self._wake:
            if self._session is None and command.moving():
                self._session = secrets.token_hex(4)
                self.note = ""
            self._command = command
            self._poked = True
            self._wake.notify()

    def act(self, name: str) -> None:
        """Send ``name`` (stop, stand) after what is queued; it ends the session."""
        with self._wake:
            self._end()
            self._actions.append(name)
            self._wake.notify()

    def forget(self, note: str) -> None:
        """End the session here without telling the daemon (after an e-stop)."""
        with self._wake:
            self._end()
            self.note = note

    def _end(self) -> None:
        self._session, self._command = None, Command()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the main thread reports it and restores the terminal
            self.error = exc

    def _loop(self) -> None:
        due = 0.0
        while True:
            with self._wake:
                self._wake.wait_for(self._ready(due), max(0.0, due - self._clock()))
                if self._closing:
                    return
                self._poked = False
                action = self._actions.popleft() if self._actions else None
                session, command = self._session, self._command
            if action is not None:
                self._send(action)
            elif session is not None:
                self._update(session, command)
            else:
                self._send("status")
            due = self._clock() + (self.period if self._session else IDLE_PERIOD_S)

    def _ready(self, due: float) -> Callable[[], bool]:
        return lambda: self._closing or self._poked or bool(self._actions) or self._clock() >= due

    def wake(self) -> None:
        """Send the command now (a key was pressed)."""
        with self._wake:
            self._poked = True
            self._wake.notify()

    def _update(self, session: str, command: Command) -> None:
        args = {"session": session, "walker": self.walker, **command.as_dict()}
        began = self._clock()
        try:
            reply = self.client.request("drive", **args)
        except PlendError as exc:
            if getattr(exc, "code", None) is None:
                raise  # the connection, not a refusal
            with self._wake:
                if self._session == session:
                    self._end()
                    self.note = str(exc).rsplit(" [", 1)[0]
            return
        self.sent_at = {"sent": began, "answered": self._clock()}
        if isinstance(reply.get("lease_s"), (int, float)) and reply["lease_s"] > 0:
            # The daemon's lease rules: at least two updates within it, whatever our config says.
            self.period = min(self._asked_period, reply["lease_s"] / 2.5)
        self._hear(reply)

    def _send(self, name: str) -> None:
        try:
            reply = self.client.request(name)
        except PlendError as exc:
            if getattr(exc, "code", None) is None:
                raise
            self.note = str(exc).rsplit(" [", 1)[0]
            return
        self._hear(reply)

    def _hear(self, reply: dict[str, Any]) -> None:
        faults = reply.get("faults", [])
        codes = [f["code"] if isinstance(f, dict) else f for f in faults]
        self.heard = {**self.heard, "mode": reply.get("mode"), "faults": codes}
        for key in ("motion", "took", "walker"):
            if key in reply:
                self.heard[key] = reply[key]
