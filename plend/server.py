"""The control socket: a Unix stream socket, one JSON request and one JSON reply per line.

A request is ``{"v": 1, "cmd": "gait", "args": {"speed": 0.5}}`` (``v`` and ``args``
optional); a reply is ``{"v": 1, "ok": true, "result": ...}`` or ``{"v": 1, "ok": false,
"error": CODE, "message": ...}``. A bad request gets an error reply and the connection
stays usable. Each connection has its own thread; commands reach the control loop
through its queue, and status is read from the snapshot it publishes, so clients never
hold up a tick.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plend.errors import ConfigError, PlendError
from plend.locations import DEFAULT_SOCKET_GROUP, under_systemd

log = logging.getLogger("plend.server")

PROTOCOL_VERSION = 1
MAX_CONCURRENT_REQUESTS = 2


class RequestError(PlendError, ValueError):
    """A request line is not a valid request."""


class UnknownCommandError(PlendError, KeyError):
    """No such command."""


class ArgumentError(PlendError, ValueError):
    """A command's arguments are missing or wrong."""


Handler = Callable[[dict[str, Any]], Any]

_current = threading.local()


def argument(args: dict[str, Any], key: str, kind: type, required: bool = True) -> Any:
    """``args[key]`` checked to be a ``kind`` (an int is taken as a float); None when an
    optional one is missing. Raises :class:`ArgumentError` naming the key."""
    if key not in args:
        if required:
            raise ArgumentError(f"missing argument {key!r}")
        return None
    value = args[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArgumentError(f"argument {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def current_connection() -> int | None:
    """An id of the connection whose request this thread is handling (None outside one).

    A command that holds state for its client (the calibration wizard's session) keys it
    by this id and is told through ``on_disconnect`` when that connection closes.
    """
    return getattr(_current, "connection", None)


class Dispatcher:
    """Maps command names to handlers and exceptions to error codes."""

    # Most specific first; the first class an exception is an instance of wins.
    ERROR_CODES: tuple[tuple[type[BaseException], str], ...] = (
        (RequestError, "bad_request"),
        (UnknownCommandError, "unknown_command"),
        (ArgumentError, "bad_argument"),
        (ConfigError, "bad_argument"),
        (TimeoutError, "loop_stalled"),
        (ValueError, "bad_argument"),  # a file or value the command cannot use
        (PlendError, "refused"),
    )

    def __init__(self, handlers: dict[str, Handler]):
        self.handlers = handlers

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Decode one request line, run it and build the reply; never raises."""
        try:
            request = self._decode(line)
            result = self._run(request)
            return {"v": PROTOCOL_VERSION, "ok": True, "result": result}
        except Exception as exc:  # every failure becomes an error reply
            return self.error_reply(exc)

    def error_reply(self, exc: BaseException) -> dict[str, Any]:
        # An error may name its own code (``error_code``); else its class decides.
        code = getattr(exc, "error_code", None) or next(
            (c for cls, c in self.ERROR_CODES if isinstance(exc, cls)), "internal"
        )
        if code == "internal":
            log.exception("internal error while handling a request")
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return {"v": PROTOCOL_VERSION, "ok": False, "error": code, "message": message}

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"request is not valid JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            raise RequestError('a request is a JSON object with a "cmd" string, e.g. {"cmd": "status"}')
        version = request.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise RequestError(
                f"protocol version {version!r} is not supported; this plend speaks {PROTOCOL_VERSION}"
            )
        if not isinstance(request.get("args", {}), dict):
            raise RequestError('"args" must be a JSON object')
        return request

    def _run(self, request: dict[str, Any]) -> Any:
        name = request["cmd"]
        handler = self.handlers.get(name)
        if handler is None:
            raise UnknownCommandError(f"unknown command {name!r}; known: {', '.join(sorted(self.handlers))}")
        return handler(request.get("args", {}))


class _Connection(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        _current.connection = id(self)
        try:
            self._serve()
        finally:
            _current.connection = None
            for callback in self.server.on_disconnect:
                try:
                    callback(id(self))
                except Exception:  # one failing callback must not hide the others
                    log.exception("error while closing a connection")

    def _serve(self) -> None:
        limit = self.server.max_message_bytes
        while True:
            line = self.rfile.readline(limit + 1)
            if not line:
                return
            if len(line) > limit and not line.endswith(b"\n"):
                self._skip_rest_of_line(limit)
                reply = self.server.dispatcher.error_reply(
                    RequestError(f"request is larger than {limit} bytes; send less")
                )
            elif not line.strip():
                continue
            else:
                # Few requests run at once: every running one competes with the control
                # thread for the interpreter, and 50 of them could hold a tick past its
                # deadline. Waiting here costs the loop nothing.
                with self.server.busy:
                    reply = self.server.dispatcher.handle_line(line)
            try:
                encoded = json.dumps(reply).encode()
            except (TypeError, ValueError) as exc:  # a handler returned something JSON cannot hold
                encoded = json.dumps(self.server.dispatcher.error_reply(exc)).encode()
            self.wfile.write(encoded + b"\n")
            self.wfile.flush()

    def _skip_rest_of_line(self, limit: int) -> None:
        while True:
            chunk = self.rfile.readline(limit)
            if not chunk or chunk.endswith(b"\n"):
                return


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves the dispatcher on a Unix socket in background threads."""

    daemon_threads = True
    request_queue_size = 128  # many plenctl clients may connect at once

    def __init__(self, path: Path, dispatcher: Dispatcher, mode: int, group: str, max_message_bytes: int):
        self.path = path
        self.dispatcher = dispatcher
        self.max_message_bytes = max_message_bytes
        self.busy = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self.on_disconnect: list[Callable[[int], None]] = []
        _claim(path)
        super().__init__(str(path), _Connection)
        os.chmod(path, mode)
        _set_group(path, group)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="plend-socket", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _claim(path: Path) -> None:
    """Make ``path`` free for a new socket, refusing if another daemon answers there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent} for the control socket: {exc.strerror}; "
                          "use --socket PATH somewhere writable") from None  # fmt: skip
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ConfigError(f"{path} exists and is not a socket; remove it or choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # left behind by a daemon that died
        return
    finally:
        probe.close()
    raise ConfigError(f"another plend is already running on {path}")


def _set_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        # On a PC there is no plend group, and nothing to warn about; on the robot there is.
        usual = group == DEFAULT_SOCKET_GROUP and not under_systemd()
        log.log(
            logging.DEBUG if usual else logging.WARNING,
            "socket group %r does not exist; %s keeps the daemon's group", group, path,
        )  # fmt: skip
        return
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("cannot give %s to group %r: %s", path, group, exc.strerror)
