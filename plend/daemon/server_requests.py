"""Running the control socket's requests, each against its deadline.

The server (plend.daemon.server) owns the connections; each complete request line comes here.
A quick command runs at once on the socket thread; one that reads files runs on one of a
few worker threads (a full pool is answered ``busy`` at once); a command for the control
loop is submitted and answered when the loop has applied it. A request that outlives its
deadline is answered with an error and its late outcome is dropped: one still waiting for
a worker then never runs, and one already running is said to be so (what it had begun,
such as opening a recording, may still complete; what it would ask of the loop is not).

Everything here runs on the socket thread except the jobs themselves, which hand their
outcome back to it through ``post``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from plend.core.config import SocketConfig
from plend.daemon.connection import Connection
from plend.daemon.protocol import (
    Args,
    BusyError,
    Dispatcher,
    LoopCall,
    SlowRequestError,
    decode,
    set_current_connection,
)

log = logging.getLogger("plend.server")

LOOP_TIMEOUT_S = 2.0  # a loop command not applied by then is answered loop_stalled
WORKER_BACKLOG = 8  # slow requests that may wait for a worker


class Pending(Protocol):
    """A loop command in flight (``plend.control.loop.Request``)."""

    result: dict[str, Any] | None
    error: BaseException | None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None: ...


Submit = Callable[[LoopCall, float], Pending]
Reply = Callable[[Connection, dict[str, Any]], None]


def busy_error(settings: SocketConfig) -> BusyError:
    """What a connection past ``socket.max_connections`` is told."""
    return BusyError(
        f"plend is busy: {settings.max_connections} clients are connected (socket.max_connections); "
        "only estop, relax and status are served; try again later"
    )


@dataclass(eq=False)
class _Work:
    """A request on a worker (``job``) or in the loop (``call``), with its deadline."""

    conn: Connection
    name: str
    deadline: float
    args: Args | None = None
    call: LoopCall | None = None
    request: Pending | None = None
    over: bool = False  # answered (or given up): a late outcome is dropped
    started: bool = False  # a worker took it (``over`` and ``started`` change under a lock)


class Requests:
    """The requests in flight and the worker threads that run the slow ones.

    Args:
        dispatcher: the commands and how their replies and errors read.
        settings: the ``[socket]`` settings (workers, slow request timeout, connection cap).
        submit: hands a loop call to the control loop; returns the pending request.
        reply: queues a reply on a connection (socket thread).
        process: handles a connection's next requests once it is free again (socket thread).
        post: runs a function on the socket thread, from any thread.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: SocketConfig,
        submit: Submit,
        reply: Reply,
        process: Callable[[Connection], None],
        post: Callable[[Callable[[], None]], None],
    ):
        self.dispatcher, self.settings, self._submit = dispatcher, settings, submit
        self._reply, self._process, self._post = reply, process, post
        self._work: set[_Work] = set()
        self._slow = 0  # requests handed to the workers and not finished there, timed out or not
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._taking = threading.Lock()  # a worker taking a job vs its deadline giving it up
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.settings.workers):
            worker = threading.Thread(target=self._worker, name=f"plend-worker-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def close(self) -> None:
        """Let the workers finish what they run and end."""
        for _ in self._workers:
            self._jobs.put(None)

    def handle(self, conn: Connection, line: bytes) -> None:
        """Decode, check and run one request line of ``conn``."""
        received = time.perf_counter()
        conn.served += 1
        try:
            name, args = decode(line)
            self.dispatcher.check_command(name)
            if conn.priority_only and name not in self.dispatcher.priority:
                raise busy_error(self.settings)
        except Exception as exc:
            self._reply(conn, self.dispatcher.error_reply(exc))
            return
        if name in self.dispatcher.inline:
            self._run_inline(conn, name, args, received)
            return
        if self._slow >= self.settings.workers + WORKER_BACKLOG:  # running, queued or stuck
            self._reply(conn, self.dispatcher.error_reply(BusyError(
                f"plend is busy with slow requests (file reads); try {name} again in a moment"
            )))  # fmt: skip
            return
        work = _Work(conn, name, time.monotonic() + self.settings.slow_request_timeout_s, args)
        conn.busy = True
        self._work.add(work)
        self._slow += 1
        self._jobs.put(lambda: self._run_job(work, received))

    def check_timeouts(self, now: float) -> None:
        """Answer every request past its deadline with an error and give it up."""
        for work in [w for w in self._work if now > w.deadline]:
            with self._taking:
                self._end(work)
            limit = self.settings.slow_request_timeout_s
            if work.call is not None:
                error: Exception = _stalled(work.name)
            elif not work.started:
                error = SlowRequestError(
                    f"{work.name} waited {limit:g} s for a free worker (plend is busy with slow "
                    "requests); it was not carried out; try again"
                )
            else:
                error = SlowRequestError(
                    f"{work.name} did not finish within {limit:g} s (a slow disk or a slow check); "
                    "its reply is dropped and anything it would ask of the loop is not applied, "
                    "but what it had begun may still complete: see 'plenctl status'"
                )
            self._reply(work.conn, self.dispatcher.error_reply(error))
            self._process(work.conn)

    # -- on the socket thread ---------------------------------------------------------------

    def _run_inline(self, conn: Connection, name: str, args: Args, received: float) -> None:
        set_current_connection(conn.id)
        try:
            outcome = self.dispatcher.run(name, args)
        except Exception as exc:
            self._reply(conn, self.dispatcher.error_reply(exc))
            return
        finally:
            set_current_connection(None)
        self._deliver(conn, name, outcome, received)

    def _deliver(self, conn: Connection, name: str, outcome: Any, received: float) -> None:
        """Reply with a handler's result, or submit its loop call and reply once applied."""
        if not isinstance(outcome, LoopCall):
            self._reply(conn, self.dispatcher.ok_reply(outcome))
            return
        try:
            request = self._submit(outcome, received)
        except Exception as exc:
            self._reply(conn, self.dispatcher.error_reply(exc))
            return
        work = _Work(conn, name, time.monotonic() + LOOP_TIMEOUT_S, call=outcome, request=request)
        conn.busy = True
        self._work.add(work)
        request.add_done_callback(lambda _: self._post(lambda: self._applied(work)))

    def _applied(self, work: _Work) -> None:
        if work.over:
            return
        self._end(work)
        request, call = work.request, work.call
        assert request is not None and call is not None
        try:
            if request.error is not None:
                raise request.error
            result = request.result if call.then is None else call.then(request.result or {})
            reply = self.dispatcher.ok_reply(result)
        except Exception as exc:
            reply = self.dispatcher.error_reply(exc)
        self._reply(work.conn, reply)
        self._process(work.conn)

    def _end(self, work: _Work) -> None:
        work.over = True
        work.conn.busy = False
        self._work.discard(work)

    def _job_done(self, work: _Work, outcome: Any, failed: bool, received: float) -> None:
        self._slow -= 1
        if work.over:
            if isinstance(outcome, LoopCall) and work.started:
                log.info("%s finished after its client was told it timed out; not carried out", work.name)
            return
        self._end(work)
        conn = work.conn
        if failed:
            self._reply(conn, self.dispatcher.error_reply(outcome))
        else:
            self._deliver(conn, work.name, outcome, received)
        self._process(conn)

    # -- on the workers ---------------------------------------------------------------------

    def _worker(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                log.exception("control socket worker: unexpected error")

    def _run_job(self, work: _Work, received: float) -> None:
        with self._taking:
            work.started = not work.over
        if not work.started:  # its client was told it was not carried out
            self._post(lambda: self._job_done(work, None, True, received))
            return
        set_current_connection(work.conn.id)
        try:
            assert work.args is not None
            outcome: Any = self.dispatcher.run(work.name, work.args)
            failed = False
        except Exception as exc:
            outcome, failed = exc, True
        finally:
            set_current_connection(None)
        self._post(lambda: self._job_done(work, outcome, failed, received))


def _stalled(name: str) -> Exception:
    from plend.control.loop import LoopStalledError

    return LoopStalledError(f"the control loop did not take '{name}' within {LOOP_TIMEOUT_S} s")
