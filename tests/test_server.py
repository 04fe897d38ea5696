"""The control socket server in process: a fake loop and handlers, real sockets, hostile clients."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plend.control.loop import Request
from plend.core.config import SocketConfig
from plend.daemon import server, socketfile
from plend.daemon.protocol import Dispatcher, LoopCall
from plend.daemon.server import WORKER_BACKLOG, ControlServer

WORKERS = 2
CAP = 16  # more than the slow requests that fit (workers + backlog)


class FakeLoop:
    """Applies submitted calls every ``period`` on its own thread, urgent ones first."""

    def __init__(self, period: float = 0.02):
        self.period = period
        self.applied: list[str] = []
        self._queue: list[tuple[bool, Request]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def submit(self, call: LoopCall, received: float) -> Request:
        request = Request(call.name, **call.args)
        with self._lock:
            self._queue.append((call.urgent, request))
        return request

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                batch = sorted(self._queue, key=lambda item: not item[0])
                self._queue = []
            for _, request in batch:
                self.applied.append(request.name)
                request.result = {"mode": request.name}
                request.finish()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Handlers:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.heavy_served = 0
        self.estop_after: list[int] = []  # heavy requests served before each e-stop
        self.records: list[str] = []  # what "record" did (a side effect on a worker)

    def slow(self, args: dict[str, Any]) -> LoopCall:
        self.started.release()
        self.release.wait(30)
        return LoopCall("slow_done")

    def heavy(self, args: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.004)  # a status that takes a while to compute and encode
        self.heavy_served += 1
        return {"mode": "stand"}

    def estop(self, args: dict[str, Any]) -> LoopCall:
        self.estop_after.append(self.heavy_served)
        return LoopCall("estop", urgent=True)

    def record(self, args: dict[str, Any]) -> dict[str, Any]:
        self.records.append("started")
        return {"path": "/tmp/x.mcap"}

    def table(self) -> dict[str, Any]:
        return {
            "status": lambda args: {"mode": "stand"},
            "heavy": self.heavy,
            "estop": self.estop,
            "gait": lambda args: LoopCall("gait", {"speed": args.get("speed")}),
            "slow": self.slow,
            "record": self.record,
            "big": lambda args: {"pad": "x" * 20_000},
        }


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[ControlServer, FakeLoop, Handlers]]:
    loop, handlers = FakeLoop(), Handlers()
    settings = SocketConfig(
        path=str(tmp_path / "s.sock"), max_connections=CAP, request_timeout_s=0.3, idle_timeout_s=1.0,
        slow_request_timeout_s=1.0, workers=WORKERS, max_message_bytes=256,
    )  # fmt: skip
    dispatcher = Dispatcher(handlers.table(), inline=frozenset({"status", "heavy", "estop", "gait", "big"}))
    srv = ControlServer(tmp_path / "s.sock", dispatcher, settings, loop.submit)
    srv.start()
    yield srv, loop, handlers
    handlers.release.set()
    srv.close()
    loop.close()


def connect(srv: ControlServer) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(srv.path))
    return s


def send(s: socket.socket, *requests: dict[str, Any] | bytes) -> None:
    data = b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in requests)
    s.sendall(data)


def replies(s: socket.socket, n: int = 1) -> list[dict[str, Any]]:
    f = s.makefile("rb")
    return [json.loads(f.readline()) for _ in range(n)]


def ask(srv: ControlServer, request: dict[str, Any]) -> dict[str, Any]:
    with connect(srv) as s:
        send(s, request)
        return replies(s)[0]


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_estop_is_answered_while_every_worker_is_stuck(rig: tuple[ControlServer, FakeLoop, Handlers]) -> None:
    srv, _, handlers = rig
    stuck = [connect(srv) for _ in range(WORKERS + WORKER_BACKLOG)]
    for s in stuck:
        send(s, {"cmd": "slow"})
    for _ in range(WORKERS):
        assert handlers.started.acquire(timeout=10)
    extra = ask(srv, {"cmd": "slow"})
    assert extra["error"] == "busy" and "slow requests" in extra["message"]
    began = time.monotonic()
    assert ask(srv, {"cmd": "estop"}) == {"v": 1, "ok": True, "result": {"mode": "estop"}}
    assert time.monotonic() - began < 2.0, "the e-stop waited behind the file reads"
    assert ask(srv, {"cmd": "status"})["ok"]
    handlers.release.set()
    for s in stuck:
        assert replies(s)[0]["result"] == {"mode": "slow_done"}
        s.close()


def test_clients_pipelining_many_requests_cannot_keep_an_estop_waiting(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, handlers = rig
    flood = [connect(srv) for _ in range(CAP - 1)]
    for s in flood:  # 15 x 60 requests of 4 ms each: a minute's queue served in arrival order
        send(s, *[{"cmd": "heavy"}] * 60)
    time.sleep(0.1)
    answer = ask(srv, {"cmd": "estop"})
    assert answer["result"] == {"mode": "estop"}
    served = handlers.estop_after[0]
    assert served < 4 * len(flood), f"the e-stop was served after {served} queued requests of others"
    for s in flood:
        assert all(r["ok"] for r in replies(s, 60)), "every pipelined request is still answered"
        s.close()


def test_clients_that_never_read_their_replies_cannot_fill_the_daemons_memory(
    rig: tuple[ControlServer, FakeLoop, Handlers], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, _, _ = rig
    monkeypatch.setattr(server, "CROWD_BYTES", 300_000)  # 16 MiB in the daemon
    srv.settings = dataclasses.replace(srv.settings, idle_timeout_s=60.0)  # they read at the end
    hoarders = [connect(srv) for _ in range(CAP - 1)]
    for s in hoarders:  # 64 replies of 20 KB each asked, none read
        send(s, *[{"cmd": "big"}] * 64)
    time.sleep(1.0)
    held = sum(len(c.out) + c.queued + len(c.partial) for c in list(srv._conns.values()))
    assert held < 1_000_000, f"the daemon holds {held} bytes for clients that do not read"
    assert ask(srv, {"cmd": "estop"})["ok"], "an e-stop is still served"
    for s in hoarders:
        assert all(r["ok"] for r in replies(s, 64)), "every request is answered once they read"
        s.close()


def test_a_request_that_never_got_a_worker_is_not_carried_out_after_its_timeout(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, handlers = rig
    stuck = [connect(srv) for _ in range(WORKERS)]
    for s in stuck:
        send(s, {"cmd": "slow"})
    for _ in range(WORKERS):
        assert handlers.started.acquire(timeout=10)
    with connect(srv) as s:
        send(s, {"cmd": "record"})
        answer = replies(s)[0]
        assert answer["error"] == "timeout"
        assert "waited 1 s for a free worker" in answer["message"] and "not carried out" in answer["message"]
        handlers.release.set()
        for t in stuck:
            replies(t)
            t.close()
        time.sleep(0.3)
        send(s, {"cmd": "record"})
        assert replies(s)[0]["ok"], "the same request runs once a worker is free"
    assert handlers.records == ["started"], "the request its client was told was not carried out ran"


def test_a_closed_connection_is_cleaned_up_at_once_while_every_worker_is_busy(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, handlers = rig
    done = threading.Event()
    srv.on_disconnect.append(lambda connection: done.set())
    stuck = [connect(srv) for _ in range(WORKERS + WORKER_BACKLOG)]
    for s in stuck:
        send(s, {"cmd": "slow"})
    for _ in range(WORKERS):
        assert handlers.started.acquire(timeout=10)
    driver = connect(srv)
    send(driver, {"cmd": "status"})
    replies(driver)
    driver.close()
    assert done.wait(0.5), "a leaving client's cleanup (its drive, its calibration) waited behind file reads"
    handlers.release.set()
    for s in stuck:
        s.close()


def test_a_slow_request_times_out_and_its_late_result_is_dropped(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, loop, handlers = rig
    with connect(srv) as s:
        send(s, {"cmd": "slow"})
        answer = replies(s)[0]
        assert answer["error"] == "timeout" and "slow did not finish within 1 s" in answer["message"]
        handlers.release.set()
        time.sleep(0.3)
        send(s, {"cmd": "status"})
        assert replies(s)[0]["ok"], "the connection stays usable"
    assert "slow_done" not in loop.applied, "a request its client was told failed must not act later"


def test_half_a_line_is_closed_after_the_request_timeout(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, _ = rig
    with connect(srv) as slow:
        slow.sendall(b'{"cmd": "sta')
        assert ask(srv, {"cmd": "status"})["ok"], "others are served meanwhile"
        answer = replies(slow)[0]
        assert answer["error"] == "bad_request" and "not completed within 0.3 s" in answer["message"]
        assert closed_by_server(slow)


def test_a_connection_that_never_asks_and_one_that_falls_silent_are_closed(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, _ = rig
    with connect(srv) as mute, connect(srv) as quiet:
        send(quiet, {"cmd": "status"})
        assert replies(quiet)[0]["ok"]
        answer = replies(mute)[0]
        assert answer["error"] == "bad_request" and "no request within 0.3 s" in answer["message"]
        assert closed_by_server(mute)
        time.sleep(1.2)  # past the idle timeout
        assert closed_by_server(quiet)


def test_past_the_cap_only_estop_relax_and_status_are_served(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, loop, _ = rig
    held = [connect(srv) for _ in range(CAP)]
    for s in held:
        send(s, {"cmd": "status"})
        assert replies(s)[0]["ok"]
    answer = ask(srv, {"cmd": "gait", "args": {"speed": 0.5}})
    assert answer["error"] == "busy" and "max_connections" in answer["message"]
    assert ask(srv, {"cmd": "status"})["ok"]
    # A crowd past the cap that only connects cannot keep an e-stop out: the oldest waiting
    # one makes room.
    crowd = [connect(srv) for _ in range(CAP)]
    time.sleep(0.2)
    assert ask(srv, {"cmd": "estop"})["result"] == {"mode": "estop"}
    assert "estop" in loop.applied and "gait" not in loop.applied
    evicted = replies(crowd[0])[0]
    assert evicted["error"] == "busy"
    for s in held + crowd:
        s.close()


def test_pipelined_requests_are_answered_in_order_and_oversized_ones_refused(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, _ = rig
    with connect(srv) as s:
        big = b'{"cmd": "status", "pad": "' + b"x" * 1000 + b'"}\n'
        send(s, {"cmd": "gait", "args": {"speed": 0.1}}, big, {"cmd": "status"}, b"not json\n")
        first, second, third, fourth = replies(s, 4)
    assert first["result"] == {"mode": "gait"}
    assert second["error"] == "bad_request" and "larger than 256 bytes" in second["message"]
    assert third["result"] == {"mode": "stand"}
    assert fourth["error"] == "bad_request"


def test_a_request_sent_just_before_closing_is_still_carried_out(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, loop, _ = rig
    s = connect(srv)
    send(s, {"cmd": "estop"})
    s.close()
    deadline = time.monotonic() + 5
    while "estop" not in loop.applied and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "estop" in loop.applied


def test_a_last_request_without_its_newline_is_answered_when_the_client_stops_sending(
    rig: tuple[ControlServer, FakeLoop, Handlers],
) -> None:
    srv, _, _ = rig
    with connect(srv) as s:
        s.sendall(b'{"cmd": "status"}\n{"cmd": "gait", "args": {"speed": 0.3}}')
        s.shutdown(socket.SHUT_WR)
        assert [r["result"] for r in replies(s, 2)] == [{"mode": "stand"}, {"mode": "gait"}]
        assert closed_by_server(s)


def test_clients_that_leave_before_their_reply_log_no_traceback(
    rig: tuple[ControlServer, FakeLoop, Handlers], caplog: pytest.LogCaptureFixture
) -> None:
    srv, _, _ = rig
    caplog.set_level(logging.DEBUG, logger="plend")
    for _ in range(30):
        s = connect(srv)
        send(s, {"cmd": "gait", "args": {"speed": 0.2}})
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset: the reply finds no one
    time.sleep(0.3)
    assert ask(srv, {"cmd": "status"})["ok"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_the_socket_file_is_removed_only_while_it_is_ours(tmp_path: Path) -> None:
    loop, handlers = FakeLoop(), Handlers()
    path = tmp_path / "s.sock"
    srv = ControlServer(path, Dispatcher(handlers.table()), SocketConfig(path=str(path)), loop.submit)
    srv.start()
    path.unlink()  # a newer daemon took the path over
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(str(path))
    srv.close()
    loop.close()
    assert path.exists(), "the older daemon removed the newer daemon's socket"
    newer.close()


def test_a_failure_after_binding_leaves_no_socket_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, group: str) -> None:
        raise PermissionError("cannot chown")

    monkeypatch.setattr(socketfile, "_set_group", broken)
    path = tmp_path / "s.sock"
    with pytest.raises(PermissionError):
        ControlServer(path, Dispatcher({}), SocketConfig(path=str(path)), FakeLoop().submit)
    assert not path.exists() and not path.is_symlink()
