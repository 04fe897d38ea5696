"""One client of the control socket: its buffers, how its bytes become request lines, and
how its replies leave, all without blocking (the socket is non-blocking)."""

from __future__ import annotations

import collections
import itertools
import logging
import selectors
import socket
import time

log = logging.getLogger("plend.server")

MAX_OUT_BYTES = 128 << 10  # replies a client has not read; past this its requests wait
MAX_QUEUED_LINES = 64  # requests one client may send ahead; past this it is not read
MAX_QUEUED_BYTES = 128 << 10  # ... and their bytes
# While the clients together hold more than CROWD_BYTES unread or unhandled, each may hold
# only CROWDED_BYTES more: many clients that never read cannot fill the daemon's memory.
CROWD_BYTES = 16 << 20
CROWDED_BYTES = 8 << 10
_ids = itertools.count(1)


class Connection:
    """A client's state; the server's socket thread is the only one to touch it.

    Attributes:
        lines: Complete request lines not handled yet; None stands for one that was too long.
        partial_since: When the unfinished line in ``partial`` began (None: there is none).
        busy: A request of this client is being handled (requests run one at a time).
        priority_only: Taken past the connection cap: one estop, relax or status only.
        eof, closing, closed: The client has sent all it will; close once replies are out;
            closed.
    """

    def __init__(self, sock: socket.socket, priority_only: bool, now: float):
        self.sock, self.priority_only = sock, priority_only
        self.id = next(_ids)
        self.lines: collections.deque[bytes | None] = collections.deque()
        self.partial, self.out = bytearray(), bytearray()
        self.partial_since: float | None = None
        self.accepted = self.last_active = self.last_sent = now
        self.busy = self.discarding = self.eof = self.closing = self.closed = False
        self.served = 0
        self.queued = 0  # bytes of the lines waiting
        self.events = 0  # what the selector watches for now

    def take(self, data: bytes, limit: int) -> None:
        """Split received bytes into request lines of at most ``limit`` bytes; the rest of a
        longer one is skipped up to its newline, and it is queued as None."""
        start = 0
        while (nl := data.find(b"\n", start)) >= 0:
            if self.discarding:
                self.discarding = False
            else:
                self.partial += data[start:nl]
                self._queue(None if len(self.partial) > limit else bytes(self.partial))
            self.partial.clear()
            start = nl + 1
        if not self.discarding:
            self.partial += data[start:]
            if len(self.partial) > limit:
                self.partial.clear()
                self.discarding = True
                self._queue(None)
        waiting = bool(self.partial) or self.discarding
        self.partial_since = (self.partial_since or time.monotonic()) if waiting else None

    def _queue(self, line: bytes | None) -> None:
        self.lines.append(line)
        self.queued += 0 if line is None else len(line)

    def next_line(self) -> bytes | None:
        line = self.lines.popleft()
        self.queued -= 0 if line is None else len(line)
        return line

    def drop_lines(self) -> None:
        self.lines.clear()
        self.queued = 0

    def end_of_input(self) -> None:
        """The client has sent all it will: a last line without its newline is a request too."""
        self.eof = True
        if self.partial and not self.discarding:
            self._queue(bytes(self.partial))
        self.partial.clear()
        self.partial_since = None

    def send(self) -> bool:
        """Send what the socket takes now; False when the client has gone."""
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return True
            except OSError as exc:  # it left before reading its reply: nothing to report
                log.debug("connection %d closed before its reply: %s", self.id, exc)
                return False
            del self.out[:sent]
            self.last_sent = time.monotonic()
        return True

    def held(self) -> int:
        """Bytes this connection holds: unread replies, requests not handled yet."""
        return len(self.out) + self.queued + len(self.partial)

    def may_be_served(self, crowded: bool) -> bool:
        """Whether its next request may be handled now (its unread replies are few enough)."""
        return len(self.out) < (CROWDED_BYTES if crowded else MAX_OUT_BYTES)

    def wanted_events(self, crowded: bool = False) -> int:
        """Read while it may send more (not past its queue or unread replies); write while
        replies wait."""
        want = 0
        cap = CROWDED_BYTES if crowded else MAX_QUEUED_BYTES
        if (
            not self.eof
            and len(self.lines) < MAX_QUEUED_LINES
            and self.queued < cap
            and self.may_be_served(crowded)
        ):
            want |= selectors.EVENT_READ
        if self.out:
            want |= selectors.EVENT_WRITE
        return want

    def quiet_for(self, now: float) -> float:
        """Seconds since the client last sent or took anything."""
        return now - max(self.last_active, self.last_sent)
