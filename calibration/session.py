"""The calibration wizard's side of its session with the daemon: requests over the
control socket (``calibrate_*``), a move that waits until the joint has settled, and the
errors that end or interrupt a session."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from plend.core.errors import PlendError

MOVE_TIMEOUT_S = 30.0  # wall clock, for one move or one sweep point
POLL_S = 0.03


class WizardError(PlendError, RuntimeError):
    """The wizard cannot go on; the message says why and what to do."""


class Aborted(PlendError, RuntimeError):
    """The person (or the answers) asked to stop."""


class Blocked(WizardError):
    """The joint stopped following its target (a hard stop, an obstacle or a dead feedback
    wire); the daemon moved it back. ``state`` is the session state after that."""

    def __init__(self, message: str, state: dict[str, Any]):
        super().__init__(message)
        self.state = state


class Link(Protocol):
    """A connection to the daemon (``plend.plenctl.Client``)."""

    def request(self, cmd: str, **args: Any) -> Any: ...


class Session:
    """The wizard's calibration session on the daemon."""

    def __init__(self, link: Link):
        self.link = link
        self.info: dict[str, Any] = {}

    def begin(self) -> dict[str, Any]:
        self.info = self.link.request("calibrate_begin")
        return self.info

    def op(self, name: str, **args: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.link.request(f"calibrate_{name}", **args)
        return result

    def move(
        self, name: str, angle_rad: float, on_wait: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Move one joint and wait until it has arrived and settled.

        Raises:
            Blocked: The joint stopped following on the way (or would be pushed further
                into what stopped it).
        """
        try:
            self.op("move", joint=name, angle=angle_rad)
        except PlendError as exc:
            if getattr(exc, "code", None) != "blocked":
                raise
            state = self.op("state")
            raise Blocked(state.get("blocked", str(exc)), state) from None
        state = self.wait(lambda s: not s.get("moving") and bool(s.get("settled")), on_wait)
        if state.get("blocked"):
            raise Blocked(state["blocked"], state)
        return state

    def wait(
        self, done: Callable[[dict[str, Any]], bool], on_wait: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = MOVE_TIMEOUT_S, imu: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.op("state", **({"imu": True} if imu else {}))
            if on_wait is not None:
                on_wait(state)
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise WizardError(f"the daemon did not finish within {timeout_s:.0f} s; is it overloaded?")
            time.sleep(POLL_S)
