"""A seeded generator of hostile control-socket requests, and a harness that sends them to a
live daemon and checks every reply (used by tests/test_fuzz.py and the hostile-clients
benchmark).

Requests come in kinds: random bytes; random JSON (deep, wide, odd numbers and strings);
real commands with wrong, missing, extra or oversized arguments, odd protocol versions and
keys; and mutations of valid requests (a flipped byte, a cut). The daemon is e-stopped
first, so every move is refused and the mode must stay ``estop`` whatever is sent: a
refused request that changed it, an ``internal`` error, a reply that is not JSON, or a
daemon that died, all count as failures.
"""

from __future__ import annotations

import json
import random
import socket
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMANDS = (
    "status", "version", "stand", "relax", "stop", "estop", "reset", "gait", "replay", "policy_load",
    "policy_start", "record_start", "record_stop", "calibrate_begin", "calibrate_move", "calibrate_set",
    "calibrate_sweep", "calibrate_state", "calibrate_draft", "calibrate_save", "calibrate_end",
)  # fmt: skip
ARG_NAMES = ("name", "speed", "path", "rate_hz", "out", "joint", "angle", "draft", "record", "points", "low")
CODES = {"bad_request", "unknown_command", "bad_argument", "refused", "loop_stalled", "busy", "timeout"}


def _number(rng: random.Random) -> Any:
    return rng.choice([
        0, -1, 1, 0.5, -0.5, 2, 1e308, -1e308, 5e-324, 2**53, 2**63 - 1, -(2**63) + 1, 10**18, 3.0, 1e-9,
    ])  # fmt: skip


def _text(rng: random.Random) -> str:
    pool = string.printable + "\u00e9\u4e2d\U0001f600\u202e\x00"
    return "".join(rng.choice(pool) for _ in range(rng.choice([0, 1, 5, 40, 300])))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 40 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return _number(rng)
    if kind in (3, 4):
        return _text(rng)
    if kind in (5, 6):
        return [_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 3]))]
    return {_text(rng)[:20]: _value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 3]))}


def _path(rng: random.Random, files: dict[str, Path]) -> Any:
    choices: list[Any] = [str(p) for p in files.values()] + [
        "/dev/zero", "/etc/passwd", "/", "relative.csv", "../../etc/shadow", "", "/nonexistent/x.csv",
        "/proc/self/mem", "x" * 5000,
    ]  # fmt: skip
    return rng.choice([*choices, _value(rng)])


def _structured(rng: random.Random, files: dict[str, Path]) -> dict[str, Any]:
    cmd = rng.choice(COMMANDS)
    args: dict[str, Any] = {}
    for name in rng.sample(ARG_NAMES, rng.randrange(4)):
        args[name] = _path(rng, files) if name in ("path", "out") else _value(rng)
    request: dict[str, Any] = {"cmd": cmd, "args": args}
    twist = rng.randrange(10)
    if twist == 0:
        request["v"] = rng.choice([0, 2, True, "1", 1.0, None, [1]])
    elif twist == 1:
        request[_text(rng)[:10] or "x"] = _value(rng)
    elif twist == 2:
        request["cmd"] = rng.choice([cmd.upper(), cmd + " ", "", cmd * 100, _text(rng)])
    elif twist == 3:
        request["args"] = _value(rng)
    elif twist == 4 and cmd == "reset":
        request["args"] = {}  # a valid reset would leave the e-stop: the harness puts it back
    return request


def _mutated(rng: random.Random) -> bytes:
    line = bytearray(json.dumps({"v": 1, "cmd": rng.choice(COMMANDS), "args": {"speed": 0.5}}).encode())
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(line))
        if rng.random() < 0.5:
            line[i] = rng.randrange(256)
        else:
            del line[i:]
            break
    return bytes(line)


def request_line(rng: random.Random, files: dict[str, Path]) -> bytes:
    """One request line (never blank, a single line ending in a newline)."""
    kind = rng.randrange(10)
    if kind == 0:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    elif kind == 1:
        data = json.dumps(_value(rng), ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    elif kind == 2:
        depth = rng.choice([33, 100, 1000, 5000])
        data = b"[" * depth + b"]" * depth
    elif kind == 3:
        data = _mutated(rng)
    elif kind == 4:
        data = b'{"cmd": "gait", "args": {"speed": ' + b"9" * rng.choice([19, 20, 400, 5000]) + b"}}"
    else:
        text = json.dumps(_structured(rng, files), ensure_ascii=rng.random() < 0.5)
        data = text.encode("utf-8", "surrogatepass")
    data = data.replace(b"\n", b" ").replace(b"\r", b" ")
    return (data if data.strip() else b"?") + b"\n"


@dataclass
class Tally:
    """What a fuzz run saw."""

    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    internal: list[str] = field(default_factory=list)
    mode_changes: list[str] = field(default_factory=list)
    not_json: int = 0


class Session:
    """One connection to the daemon, one request at a time."""

    def __init__(self, path: Path, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, line: bytes) -> Any:
        self.sock.sendall(line)
        reply = self.file.readline()
        try:
            return json.loads(reply)
        except ValueError:
            return None

    def mode(self) -> str:
        reply = self.send(b'{"cmd": "status"}\n')
        return str(reply["result"]["mode"])

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def run(path: Path, n: int, seed: int, files: dict[str, Path]) -> Tally:
    """Send ``n`` fuzzed requests to the daemon at ``path`` (e-stopping it first)."""
    rng = random.Random(seed)
    tally = Tally()
    session = Session(path)
    try:
        session.send(b'{"cmd": "estop"}\n')
        for _ in range(n):
            _one(session, request_line(rng, files), tally)
        session.send(b'{"cmd": "record_stop"}\n')
    finally:
        session.close()
    return tally


def _one(session: Session, line: bytes, tally: Tally) -> None:
    tally.sent += 1
    reply = session.send(line)
    if not isinstance(reply, dict) or reply.get("v") != 1 or "ok" not in reply:
        tally.not_json += 1
        return
    if reply["ok"]:
        tally.ok += 1
        if session.mode() != "estop":  # a valid reset (or relax) got through: e-stop again
            session.send(b'{"cmd": "estop"}\n')
        return
    code = str(reply.get("error"))
    tally.errors[code] = tally.errors.get(code, 0) + 1
    if code == "internal" or code not in CODES:
        tally.internal.append(f"{line[:200]!r} -> {reply.get('message', '')[:200]}")
    if session.mode() != "estop":
        tally.mode_changes.append(repr(line[:200]))
        session.send(b'{"cmd": "estop"}\n')
