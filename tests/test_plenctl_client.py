"""plenctl's client against an endpoint that is not a well-behaved plend: it never hangs,
never grows without bound and never prints a traceback or a forged line."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plend.core.errors import ConnectionLostError
from plend.plenctl import Client, ClientError
from plend.plenctl import main as plenctl


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], Path]]:
    """A Unix socket whose one connection is answered by the given function."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(answer: Callable[[socket.socket], None]) -> Path:
        path = tmp_path / f"fake{len(listeners)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.recv(4096)
            try:
                answer(conn)
            except OSError:
                pass  # the client gave up: what these tests want
            finally:
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for listener in listeners:
        listener.close()


def endless(conn: socket.socket) -> None:
    chunk = b"x" * 65536
    while True:
        conn.sendall(chunk)


def trickle(conn: socket.socket) -> None:
    for _ in range(100):
        conn.sendall(b" ")
        time.sleep(0.1)


def test_an_endless_reply_is_refused_past_its_size(endpoint: Callable[..., Path]) -> None:
    client = Client(endpoint(endless), timeout=30.0)
    began = time.monotonic()
    with pytest.raises(ConnectionLostError, match="over 16 MiB without an end"):
        client.request("status")
    assert time.monotonic() - began < 20.0
    client.close()


def test_a_reply_that_trickles_is_bounded_by_one_deadline(endpoint: Callable[..., Path]) -> None:
    client = Client(endpoint(trickle), timeout=1.0)
    began = time.monotonic()
    with pytest.raises(ConnectionLostError, match="did not answer status in time"):
        client.request("status")
    assert time.monotonic() - began < 3.0, "each byte must not restart the timeout"
    client.close()


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (b"[" * 100_000 + b"\n", "not a plend reply"),
        (b'{"ok": "yes"}\n', "not a plend reply"),
        (b'{"ok": false, "error": 3, "message": []}\n', "not a plend error"),
    ],
)
def test_a_reply_that_is_not_plends_is_one_line(
    endpoint: Callable[..., Path], reply: bytes, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = endpoint(lambda conn: conn.sendall(reply))
    assert plenctl(["--socket", str(path), "estop"]) == 1
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_reply_of_unexpected_shape_is_one_line(
    endpoint: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = endpoint(lambda conn: conn.sendall(b'{"ok": true, "result": {"joints": 5, "mode": []}}\n'))
    assert plenctl(["--socket", str(path), "status"]) == 1
    err = capsys.readouterr().err
    assert "cannot show" in err and err.count("\n") == 1


def test_an_error_message_cannot_forge_lines(endpoint: Callable[..., Path]) -> None:
    forged = b'{"ok": false, "error": "busy", "message": "no\\nfaults    none\\u001b[2J"}\n'
    client = Client(endpoint(lambda conn: conn.sendall(forged)))
    with pytest.raises(ClientError) as caught:
        client.request("status")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    client.close()


@pytest.mark.parametrize("period", ["-1", "nan", "0", "1e9", "soon"])
def test_a_watch_period_out_of_range_is_refused(period: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        plenctl(["status", "--watch", period])
    assert caught.value.code == 2
    assert "give seconds in [0.1, 3600]" in capsys.readouterr().err


def test_a_number_that_is_not_one_is_refused_before_it_is_sent(
    endpoint: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = endpoint(lambda conn: conn.sendall(b'{"ok": true, "result": {}}\n'))
    assert plenctl(["--socket", str(path), "gait", "sine", "--speed", "nan"]) == 1
    assert "--speed nan is not a number; give a finite value" in capsys.readouterr().err
