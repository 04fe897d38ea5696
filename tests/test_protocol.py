"""Request decoding and dispatch: strict about what a client sends, brief about what it quotes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plend.daemon.protocol import (
    QUOTE_CHARS,
    ArgumentError,
    Dispatcher,
    LoopCall,
    RequestError,
    UnknownCommandError,
    argument,
    decode,
)


def gait(args: dict[str, Any]) -> LoopCall:
    speed = argument(args, "speed", float)
    argument(args, "name", str, required=False)
    return LoopCall("gait", {"speed": speed})


DISPATCHER = Dispatcher({"status": lambda args: {"mode": "stand"}, "gait": gait})


def reply(line: bytes) -> dict[str, Any]:
    try:
        name, args = decode(line)
        return DISPATCHER.ok_reply(DISPATCHER.run(name, args))
    except Exception as exc:
        return DISPATCHER.error_reply(exc)


SPEED = b'{"cmd": "gait", "args": {"speed": '
BAD_REQUESTS = {
    "nested 1000 deep": (b"[" * 1000 + b"]" * 1000, "bad_request", "nested deeper"),
    "nested object 100 deep": (
        b'{"cmd": "status", "args": ' + b'{"a": ' * 100 + b"1" + b"}" * 101, "bad_request", "nested"
    ),
    "400-digit integer": (SPEED + b"9" * 400 + b"}}", "bad_request", "too large"),
    "5000-digit integer": (SPEED + b"1" + b"0" * 5000 + b"}}", "bad_request", "too large"),
    "float overflow": (b'{"cmd": "gait", "args": {"speed": 1e999}}', "bad_request", "too large"),
    "NaN": (b'{"cmd": "gait", "args": {"speed": NaN}}', "bad_request", "not a JSON number"),
    "Infinity": (b'{"cmd": "gait", "args": {"speed": -Infinity}}', "bad_request", "not a JSON number"),
    "v true": (b'{"v": true, "cmd": "status"}', "bad_request", "protocol version True"),
    "v 1.0": (b'{"v": 1.0, "cmd": "status"}', "bad_request", "protocol version"),
    "lone surrogate": (b'{"cmd": "gait", "args": {"name": "\\ud800"}}', "bad_request", "surrogate"),
    "invalid UTF-8": (b'{"cmd": "st\xffatus"}', "bad_request", "not valid UTF-8"),
    "UTF-16": ('{"cmd": "status"}'.encode("utf-16"), "bad_request", "not valid UTF-8"),
    "unknown key": (b'{"cmd": "status", "pad": 1}', "bad_request", "unknown request key(s) 'pad'"),
    "empty cmd": (b'{"cmd": ""}', "bad_request", '"cmd" string'),
    "unknown argument": (b'{"cmd": "gait", "args": {"speed": 0.5, "sped": 1}}', "bad_argument", "'sped'"),
    "argument to status": (b'{"cmd": "status", "args": {"all": true}}', "bad_argument", "'all'"),
    "args a list": (b'{"cmd": "status", "args": []}', "bad_request", '"args" must be a JSON object'),
    "cmd twice": (b'{"cmd": "status", "cmd": "estop"}', "bad_request", "'cmd' appears twice"),
    "argument twice": (SPEED + b'0.1, "speed": 0.9}}', "bad_request", "'speed' appears twice"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_what_is_not_a_request_is_refused_never_internal(case: tuple[bytes, str, str]) -> None:
    line, code, fragment = case
    answer = reply(line)
    assert answer["ok"] is False and answer["error"] == code, answer
    assert fragment in answer["message"] and "\n" not in answer["message"]


def test_a_good_request_and_its_loop_call() -> None:
    answer = reply(b'{"v": 1, "cmd": "gait", "args": {"speed": 1}}')
    assert answer["ok"] and answer["result"] == LoopCall("gait", {"speed": 1.0})


def test_errors_quote_at_most_a_hundred_characters_of_input() -> None:
    huge = "x" * 20_000
    for line in (
        json.dumps({"cmd": huge}),
        json.dumps({"cmd": "gait", "args": {"speed": huge}}),
        json.dumps({"cmd": "gait", "args": {"speed": 0.5, huge: 1}}),
        json.dumps({"v": huge, "cmd": "status"}),
    ):
        message = reply(line.encode())["message"]
        assert "x" * (QUOTE_CHARS + 1) not in message, message[:200]
        assert len(message) < 700


def test_argument_checks_types_and_big_numbers() -> None:
    assert argument({"a": 2}, "a", float) == 2.0
    assert argument({}, "a", float, required=False) is None
    with pytest.raises(ArgumentError, match="'a' must be a float"):
        argument({"a": True}, "a", float)
    with pytest.raises(ArgumentError, match="too large"):
        argument({"a": 10**400}, "a", float)  # only a Python caller can pass one this big
    with pytest.raises(ArgumentError, match="missing argument 'a'"):
        argument({}, "a", int)


def test_unknown_commands_are_named_briefly() -> None:
    with pytest.raises(UnknownCommandError, match="unknown command 'dance'; known: gait, status"):
        DISPATCHER.check_command("dance")
    with pytest.raises(RequestError):
        decode(b"{not json")
