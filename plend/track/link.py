"""The tracker's side of the control socket: send poses, fetch a simulated robot's truth."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from plend.plenctl import Client, ClientError
from plend.track.detect import Lost, Observation
from plend.track.geometry import Pose

log = logging.getLogger("plend.track")


class DaemonLink:
    """One connection to the daemon; poses go out as ``pose`` commands.

    A pose the daemon refuses (too often, an impossible jump) is counted and logged once
    a second; a lost connection raises ConnectionLostError (the caller exits and, as a
    service, is restarted).
    """

    def __init__(self, socket: Path, clock: Any = time.monotonic):
        self.socket = socket
        self.client = Client(socket, timeout=2.0)
        self.clock = clock
        self.sent = self.refused = 0
        self._last_warning = -1e9

    def send(self, observation: Observation, source: str) -> None:
        age = max(0.0, self.clock() - observation.stamp)
        try:
            if isinstance(observation, Lost):
                self.client.request("pose", lost=observation.reason[:200], age_s=min(age, 1.0))
            else:
                euler = None if observation.euler is None else list(observation.euler)
                self.client.request(
                    "pose", position=list(observation.position), euler=euler, age_s=age, source=source
                )
            self.sent += 1
        except ClientError as exc:
            if exc.code is None:  # not an answer: the connection is gone
                raise
            self.refused += 1
            if self.clock() - self._last_warning > 1.0:
                log.warning("the daemon refused a pose: %s", exc)
                self._last_warning = self.clock()

    def truth(self) -> Pose:
        """The simulated robot's torso, now (the emulated camera renders it)."""
        reply = self.client.request("truth")
        return Pose.from_euler(reply["position"], reply["euler"])

    def close(self) -> None:
        self.client.close()
