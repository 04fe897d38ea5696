"""The control socket: a Unix stream socket, one JSON request and one JSON reply per line.

One thread serves every connection with non-blocking sockets (a selector), so no client
can hold a thread: a connection that sends half a line, never reads its replies, or
just stays open costs a buffer, and is closed after ``socket.request_timeout_s`` (an
unfinished line) or ``socket.idle_timeout_s`` (silence). Each complete request line goes to
plend.daemon.server_requests, which runs it: quick commands (status, estop, relax, gait ...)
on this thread, commands that read files on a few worker threads, commands for the
control loop answered when the loop has applied them; e-stop and relax go through the
loop's urgent channel, ahead of everything else.

Connections take turns: each pass reads what arrived and serves one request line of each
of the next few connections waiting, an estop or relax first, so a client that pipelines
many requests (or many clients that do) cannot keep another's e-stop waiting behind them. What a closed
connection leaves to clean up (a drive it held, a calibration it owned) runs on a thread
of its own, never behind slow requests.

Past ``socket.max_connections`` a connection is still taken, but may only ask estop,
relax, status or version once; anything else is told the daemon is busy.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import json
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plend.core.config import SocketConfig
from plend.daemon import socketfile
from plend.daemon.connection import CROWD_BYTES, Connection
from plend.daemon.protocol import (  # re-exported: handlers import them from here
    PROTOCOL_VERSION,
    ArgumentError,
    BusyError,
    Dispatcher,
    Handler,
    LoopCall,
    RequestError,
    UnknownCommandError,
    argument,
    current_connection,
    mark_socket_thread,
)
from plend.daemon.server_requests import WORKER_BACKLOG, Pending, Requests, Submit, busy_error

__all__ = [
    "PROTOCOL_VERSION", "WORKER_BACKLOG", "ArgumentError", "ControlServer", "Dispatcher", "Handler",
    "LoopCall", "Pending", "RequestError", "Submit", "UnknownCommandError", "argument", "current_connection",
]  # fmt: skip

log = logging.getLogger("plend.server")

_TICK_S = 0.1  # how often timeouts are checked
_TURNS_PER_PASS = 32  # requests served between two looks for new ones (an e-stop among them)
# The share of the time this thread may spend serving requests, and the most it may save up:
# a flood of requests then leaves the control thread the interpreter for the rest (an
# estop or relax is served whatever the share).
_SERVE_SHARE = 0.5
_SERVE_BURST_S = 0.01


class ControlServer:
    """Serves a :class:`Dispatcher` on a Unix socket from one background thread."""

    def __init__(self, path: Path, dispatcher: Dispatcher, settings: SocketConfig, submit: Submit):
        self.path, self.dispatcher, self.settings, self._submit = path, dispatcher, settings, submit
        self.on_disconnect: list[Callable[[int], None]] = []
        self.on_start: Callable[[], None] | None = None  # runs first on the socket thread
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, Connection] = {}
        self._overflow: dict[int, Connection] = {}  # past the cap, oldest first
        self._requests = Requests(dispatcher, settings, submit, self._reply, self._process, self._post)
        self._posted: collections.deque[Callable[[], None]] = collections.deque()
        self._runnable: dict[int, Connection] = {}  # requests waiting for their turn, in turn order
        self._cleanups: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # closed connections
        self._cleaner: threading.Thread | None = None
        self._stopping = False
        self._accept_paused_until = 0.0
        self._held = 0  # bytes the connections hold: unread replies, unhandled requests
        self._was_crowded = False
        self._credit, self._credit_at = _SERVE_BURST_S, time.perf_counter()  # serving time left
        self._next_check = 0.0
        self._thread: threading.Thread | None = None
        self._listener, self._identity = socketfile.bind(path, settings)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._requests.start()
        self._cleaner = threading.Thread(target=self._clean_up, name="plend-disconnect", daemon=True)
        self._cleaner.start()
        self._thread = threading.Thread(target=self._serve, name="plend-socket", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close every connection and remove the socket if it is still ours."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._requests.close()
        self._cleanups.put(None)
        for conn in list(self._conns.values()):
            self._close(conn, notify=False)
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in (self._wake_r, self._wake_w):
            s.close()
        socketfile.remove_if_ours(self.path, self._identity)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- the event loop -------------------------------------------------------------------

    def _serve(self) -> None:
        mark_socket_thread()
        if self.on_start is not None:
            self.on_start()
        while not self._stopping:
            try:
                self._once()
            except Exception:  # a bug here must not end the socket for every client
                log.exception("control socket: unexpected error; serving on")
                time.sleep(0.01)

    def _once(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        wait = max(0.0, min(_TICK_S, self._next_check - now))
        if self._runnable:  # at once, or when there is serving time again
            wait = min(wait, max(0.0, -self._credit / _SERVE_SHARE))
        for key, mask in self._sel.select(wait):
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                self._ready(key.data, mask)
        while self._posted:
            self._posted.popleft()()
        self._take_turns()
        if time.monotonic() >= self._next_check:
            self._check_timeouts(time.monotonic())
            self._next_check = time.monotonic() + _TICK_S

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the socket thread (from any thread)."""
        self._posted.append(fn)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is already on its way
            self._wake_w.send(b"\0")

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            sock.setblocking(False)
            cap = self.settings.max_connections
            if len(self._conns) - len(self._overflow) < cap:
                self._add(Connection(sock, False, time.monotonic()))
            elif len(self._overflow) < cap or self._evict_overflow():
                self._add(Connection(sock, True, time.monotonic()))
            else:
                with contextlib.suppress(OSError):
                    sock.send(self._encode(self.dispatcher.error_reply(self._busy())))
                sock.close()

    def _evict_overflow(self) -> bool:
        """Make room past the cap by closing the oldest waiting connection there: each gets
        one quick request, so a crowd that only connects cannot keep an e-stop out."""
        oldest = next((c for c in self._overflow.values() if not c.busy), None)
        if oldest is None:
            return False
        self._reply(oldest, self.dispatcher.error_reply(self._busy()))
        self._close(oldest)
        return True

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            log.warning("control socket: accept failed: %s", exc.strerror or exc)
            return
        log.warning("control socket: out of file descriptors (%s); not accepting for 0.1 s", exc.strerror)
        self._sel.unregister(self._listener)
        self._accept_paused_until = time.monotonic() + 0.1

    def _busy(self) -> BusyError:
        return busy_error(self.settings)

    def _add(self, conn: Connection) -> None:
        self._conns[conn.id] = conn
        if conn.priority_only:
            self._overflow[conn.id] = conn
        self._interest(conn)

    def _interest(self, conn: Connection) -> None:
        if conn.closed:
            return
        want = conn.wanted_events(self._crowded)
        if want == conn.events:
            return
        if conn.events == 0:
            self._sel.register(conn.sock, want, conn)
        elif want == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, want, conn)
        conn.events = want

    def _ready(self, conn: Connection, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
            if conn.lines:  # requests held back while its replies were unread
                self._process(conn)
        if mask & selectors.EVENT_READ and not conn.closed:
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("connection %d: %s", conn.id, exc)
                self._close(conn)
                return
            conn.last_active = time.monotonic()
            before = conn.held()
            if data:
                conn.take(data, self.settings.max_message_bytes)
            else:
                conn.end_of_input()
            self._held += conn.held() - before
            self._process(conn)

    def _take_turns(self) -> None:
        """Serve the next request of connections in turn, a few per pass so that new ones
        are read often: those whose next request is an estop or relax first."""
        began = time.perf_counter()
        self._credit = min(_SERVE_BURST_S, self._credit + (began - self._credit_at) * _SERVE_SHARE)
        urgent = [c for c in self._runnable.values() if c.lines and _is_urgent(c.lines[0])]
        waiting = itertools.islice(self._runnable.values(), _TURNS_PER_PASS if self._credit > 0 else 0)
        turns = {c.id: c for c in [*urgent, *waiting]}  # one turn each; the rest wait a pass
        for conn in turns.values():
            if self._runnable.pop(conn.id, None) is not None:
                self._turn(conn)  # back at the end of the queue if it has more
        self._credit_at = time.perf_counter()
        self._credit -= self._credit_at - began

    def _process(self, conn: Connection) -> None:
        """Give this connection a turn when it has requests and is free to be served."""
        self._turn(conn, serve=False)

    def _turn(self, conn: Connection, serve: bool = True) -> None:
        """Handle this connection's next request (with ``serve``), in order; close it once
        it is done; queue it for another turn while more requests wait."""
        if serve and not conn.closed and not conn.busy and conn.lines and conn.may_be_served(self._crowded):
            before = conn.queued
            if conn.priority_only and conn.served:
                conn.drop_lines()
                self._held -= before
            else:
                line = conn.next_line()
                self._held -= before - conn.queued
                self._handle(conn, line)
        if not conn.closed and not conn.busy and conn.lines and conn.may_be_served(self._crowded):
            self._runnable[conn.id] = conn
        done = conn.eof or (conn.priority_only and conn.served)
        if not conn.closed and not conn.busy and not conn.lines and done:
            conn.closing = True
            self._flush(conn)
        self._interest(conn)

    def _handle(self, conn: Connection, line: bytes | None) -> None:
        if line is None:
            limit = self.settings.max_message_bytes
            too_large = RequestError(f"request is larger than {limit} bytes; send less")
            self._reply(conn, self.dispatcher.error_reply(too_large))
        elif line.strip():
            self._requests.handle(conn, line)

    # -- timeouts ---------------------------------------------------------------------------

    def _check_timeouts(self, now: float) -> None:
        self._requests.check_timeouts(now)
        s = self.settings
        self._held = sum(c.held() for c in self._conns.values())  # exact again, whatever drifted
        crowded, self._was_crowded = self._was_crowded, self._crowded
        for conn in list(self._conns.values()):
            if crowded != self._crowded:
                self._interest(conn)  # reads and serves as the crowd allows now
                if not self._crowded and conn.lines:
                    self._process(conn)
            quiet = conn.quiet_for(now)
            if conn.closing and quiet > s.request_timeout_s:
                self._close(conn)  # it does not read its last reply
            if conn.busy or conn.closing:
                continue
            if conn.partial_since is not None and now - conn.partial_since > s.request_timeout_s:
                why = f"request not completed within {s.request_timeout_s:g} s; closing the connection"
                self._reply(conn, self.dispatcher.error_reply(RequestError(why)))
                self._close_after_reply(conn)
            elif conn.priority_only and now - conn.accepted > s.request_timeout_s:
                self._reply(conn, self.dispatcher.error_reply(self._busy()))
                self._close_after_reply(conn)
            elif not conn.served and now - conn.accepted > s.request_timeout_s:
                # Clients send at once; one that only holds a place is closed, so a crowd of
                # them cannot keep the places of clients that want something.
                why = f"no request within {s.request_timeout_s:g} s of connecting; closing the connection"
                self._reply(conn, self.dispatcher.error_reply(RequestError(why)))
                self._close_after_reply(conn)
            elif quiet > s.idle_timeout_s:
                log.info("closing connection %d: idle for %.0f s (socket.idle_timeout_s)", conn.id, quiet)
                self._close(conn)

    def _close_after_reply(self, conn: Connection) -> None:
        self._held -= conn.queued
        conn.drop_lines()
        conn.eof = conn.closing = True
        self._flush(conn)

    # -- output -----------------------------------------------------------------------------

    def _encode(self, reply: dict[str, Any]) -> bytes:
        try:
            return json.dumps(reply).encode() + b"\n"
        except (TypeError, ValueError) as exc:  # a handler returned something JSON cannot hold
            return json.dumps(self.dispatcher.error_reply(exc)).encode() + b"\n"

    @property
    def _crowded(self) -> bool:
        """The clients together hold more than CROWD_BYTES: each may hold only a little more."""
        return self._held > CROWD_BYTES

    def _reply(self, conn: Connection, reply: dict[str, Any]) -> None:
        if conn.closed:
            return
        data = self._encode(reply)
        conn.out += data
        self._held += len(data)
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        if conn.closed:
            return
        before = len(conn.out)
        sent = conn.send()
        self._held -= before - len(conn.out)
        if not sent or (conn.closing and not conn.out):
            self._close(conn)
        else:
            self._interest(conn)

    def _close(self, conn: Connection, notify: bool = True) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._held -= conn.held()
        if conn.events:
            self._sel.unregister(conn.sock)
        conn.sock.close()
        del self._conns[conn.id]
        self._overflow.pop(conn.id, None)
        self._runnable.pop(conn.id, None)
        if notify and self.on_disconnect:
            self._cleanups.put(conn.id)  # the id only: a closed connection's buffers go now

    def _clean_up(self) -> None:
        """Run the disconnect callbacks of closed connections (they may wait for the loop)."""
        while (connection := self._cleanups.get()) is not None:
            for callback in self.on_disconnect:
                try:
                    callback(connection)
                except Exception:  # one failing callback must not hide the others
                    log.exception("error while closing a connection")


def _is_urgent(line: bytes | None) -> bool:
    """Whether a request line asks for an e-stop or relax (a cheap look, only to order turns)."""
    return line is not None and (b'"estop"' in line or b'"relax"' in line)
