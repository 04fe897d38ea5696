"""The control socket's protocol: decoding a request line strictly, running its handler,
and turning the outcome or the exception into a reply.

A request is ``{"v": 1, "cmd": "gait", "args": {"speed": 0.5}}`` (``v`` and ``args``
optional, nothing else); a reply is ``{"v": 1, "ok": true, "result": ...}`` or ``{"v": 1,
"ok": false, "error": CODE, "message": ...}``. Anything a client sends that is not such a
request (invalid UTF-8 or surrogates, NaN, integers past 64 bits, nesting deeper than
:data:`MAX_DEPTH`, unknown keys or arguments) is a ``bad_request`` or ``bad_argument``,
and messages quote at most :data:`QUOTE_CHARS` characters of what was sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plend.core.errors import ConfigError, PlendError

log = logging.getLogger("plend.server")

PROTOCOL_VERSION = 1
MAX_DEPTH = 32  # of arrays and objects in a request
MAX_INT = 2**63  # integers at or past this are refused (JSON numbers are doubles elsewhere)
QUOTE_CHARS = 100  # of a client's input repeated in an error message
MAX_MESSAGE_CHARS = 600  # of any error message
REQUEST_KEYS = ("v", "cmd", "args")


class RequestError(PlendError, ValueError):
    """A request line is not a valid request."""


class UnknownCommandError(PlendError, KeyError):
    """No such command."""


class ArgumentError(PlendError, ValueError):
    """A command's arguments are missing or wrong."""


class BusyError(PlendError, RuntimeError):
    """The daemon has no room for this request now; the client may try again later."""

    error_code = "busy"


class SlowRequestError(PlendError, TimeoutError):
    """A request that reads files did not finish in time."""

    error_code = "timeout"


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters: how errors repeat a client's input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Args(dict[str, Any]):
    """A request's arguments, remembering which ones a handler looked at, so arguments no
    handler knows are refused rather than silently ignored."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return super().get(key, default)

    def unused(self) -> list[str]:
        return sorted(set(self) - self.used)


def only(args: dict[str, Any], *known: str, command: str = "") -> None:
    """Refuse arguments other than ``known`` (for handlers that act before they return)."""
    unknown = sorted(set(args) - set(known))
    if unknown:
        what = f"{command} " if command else ""
        names = ", ".join(quote(k, 40) for k in unknown[:5])
        takes = ", ".join(known) if known else "none"
        raise ArgumentError(f"{what}does not take argument(s) {names}; it takes: {takes}")


def argument(args: dict[str, Any], key: str, kind: type, required: bool = True) -> Any:
    """``args[key]`` checked to be a ``kind`` (an int is taken as a float); None when an
    optional one is missing. Raises :class:`ArgumentError` naming the key."""
    if key not in args:
        if required:
            raise ArgumentError(f"missing argument {key!r}")
        if isinstance(args, Args):
            args.used.add(key)
        return None
    value = args[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ArgumentError(f"argument {key!r} is too large: {quote(value, 40)}") from None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ArgumentError(f"argument {key!r} must be a {kind.__name__}, got {quote(value)}")
    return value


@dataclass
class LoopCall:
    """A command for the control loop, prepared (and checked) by a handler. The server
    submits it, so a prepared call whose client gave up is never sent.

    Attributes:
        name, args: The loop command.
        urgent: Applied before every other command of its tick (e-stop, relax).
        then: Turns the loop's result into the reply's result.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    urgent: bool = False
    then: Callable[[dict[str, Any]], Any] | None = None


Handler = Callable[[dict[str, Any]], Any]

_current = threading.local()


def current_connection() -> int | None:
    """An id of the connection whose request this thread is handling (None outside one).

    A command that holds state for its client (the calibration wizard's session) keys it
    by this id and is told through ``on_disconnect`` when that connection closes.
    """
    return getattr(_current, "connection", None)


def set_current_connection(connection: int | None) -> None:
    _current.connection = connection


def mark_socket_thread() -> None:
    """Called by the socket thread once: nothing it runs may wait for the control loop."""
    _current.socket_thread = True


def check_may_wait(what: str) -> None:
    """Raise if this is the socket thread, where waiting would hold up every client."""
    if getattr(_current, "socket_thread", False):
        raise RuntimeError(f"{what} would wait on the socket thread; return a LoopCall instead")


def _big_int(text: str) -> int:
    value = int(text) if len(text) <= 24 else MAX_INT
    if abs(value) >= MAX_INT:
        raise RequestError(f"an integer in the request is too large ({min(len(text), 9999)} digits)")
    return value


def _constant(name: str) -> float:
    raise RequestError(f"{name} is not a JSON number; send finite numbers only")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (JSON leaves a repeated key's meaning open)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RequestError(f"key {quote(key, 40)} appears twice in one object; give each key once")
        out[key] = value
    return out


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise RequestError(f"a number in the request is too large: {quote(text, 40)}")
    return value


def _check_value(value: object) -> None:
    """Refuse nesting past MAX_DEPTH and strings that are not valid Unicode (surrogates)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (list, dict)):
            if depth >= MAX_DEPTH:
                raise RequestError(f"the request is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            "the request holds a string that is not valid Unicode (a lone surrogate)"
        ) from None


def decode(line: bytes) -> tuple[str, Args]:
    """The command name and arguments of a request line, strictly checked."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"request is not valid UTF-8 (byte {exc.start})") from None
    try:
        request = json.loads(
            text, parse_int=_big_int, parse_constant=_constant, parse_float=_float, object_pairs_hook=_object
        )
    except RecursionError:
        raise RequestError(f"the request is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"request is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # e.g. a number too long to parse
        if isinstance(exc, RequestError):
            raise
        raise RequestError("request holds a value JSON cannot carry (a number too long?)") from None
    _check_value(request)
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str) or not request["cmd"]:
        raise RequestError('a request is a JSON object with a "cmd" string, e.g. {"cmd": "status"}')
    extra = sorted(set(request) - set(REQUEST_KEYS))
    if extra:
        names = ", ".join(quote(k, 40) for k in extra[:5])
        raise RequestError(f"unknown request key(s) {names}; a request has only v, cmd and args")
    version = request.get("v", PROTOCOL_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RequestError(
            f"protocol version {quote(version, 40)} is not supported; this plend speaks {PROTOCOL_VERSION}"
        )
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise RequestError('"args" must be a JSON object')
    return request["cmd"], Args(args)


class Dispatcher:
    """Maps command names to handlers and exceptions to error codes.

    Args:
        handlers: Command name -> handler taking the arguments.
        inline: Commands whose handlers are quick and never wait (answered on the socket
            thread); every other one runs on a worker thread.
        priority: Commands still served when the daemon is full of connections.
    """

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

    def __init__(
        self,
        handlers: dict[str, Handler],
        inline: frozenset[str] = frozenset(),
        priority: frozenset[str] = frozenset({"estop", "relax", "status", "version"}),
    ):
        self.handlers = handlers
        self.inline = inline
        self.priority = priority

    def check_command(self, name: str) -> None:
        if name not in self.handlers:
            known = ", ".join(sorted(self.handlers))
            raise UnknownCommandError(f"unknown command {quote(name, 60)}; known: {known}")

    def run(self, name: str, args: Args) -> Any:
        """Run a handler; arguments it did not look at are refused (before a LoopCall is
        submitted, so a refused request changes nothing)."""
        self.check_command(name)
        result = self.handlers[name](args)
        unused = args.unused()
        if unused:
            only(args, *sorted(args.used & set(args)), command=name)
        return result

    def ok_reply(self, result: Any) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "ok": True, "result": result}

    def error_reply(self, exc: BaseException) -> dict[str, Any]:
        # An error may name its own code (``error_code``); else its class decides.
        code = getattr(exc, "error_code", None) or next(
            (c for cls, c in self.ERROR_CODES if isinstance(exc, cls)), "internal"
        )
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if not isinstance(message, str):
            message = str(message)
        if code == "internal":
            log.exception("internal error while handling a request", exc_info=exc)
            message = (
                f"plend failed unexpectedly ({type(exc).__name__}: {message[:200]}); the daemon's log "
                "(journalctl -u plend) has the details; please report it"
            )
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        return {"v": PROTOCOL_VERSION, "ok": False, "error": code, "message": message}
