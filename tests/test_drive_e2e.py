"""plenctl drive against a running daemon: keys typed in tmux, the dead-man rule with a
stalled and a killed client, a gamepad (a FIFO of evdev records) that goes away."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plend.drive.gamepad import EV_ABS, EV_KEY, event_bytes
from plend.drive.settings import AXES, BUTTONS
from tests.support import Daemon

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
ROOT = Path(__file__).resolve().parents[1]


def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


class Tmux:
    """A private tmux server running one command in a 160-column pane."""

    def __init__(self, tmp: Path, command: str):
        self.name = f"plend-test-{os.getpid()}-{id(self)}"
        self.run("new-session", "-d", "-s", "drive", "-x", "160", "-y", "12", command)

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "drive")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "drive", *keys)

    def pid(self) -> int:
        return int(self.run("list-panes", "-t", "drive", "-F", "#{pane_pid}").split()[0])

    def close(self) -> None:
        self.run("kill-server")


def drive_command(d: Daemon, *extra: str) -> str:
    return f"{sys.executable} -m plend.plenctl --socket {d.socket} drive {' '.join(extra)}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    yield d
    d.stop()


def gait(d: Daemon) -> dict[str, Any]:
    return d.status().get("gait") or {}


def test_keys_typed_in_a_terminal_drive_the_robot(daemon: Daemon, tmp_path: Path) -> None:
    stty = tmp_path / "stty.txt"
    tmux = Tmux(tmp_path, f"cd {ROOT} && {drive_command(daemon)}; stty -a > {stty}; sleep 60")
    try:
        until("the live line", lambda: "faults" in tmux.screen())
        tmux.keys("Up", "Up")
        until("a walk at 0.2", lambda: gait(daemon).get("speed") == 0.2)
        tmux.keys("Left", "q")
        until(
            "the turn and the side step",
            lambda: (gait(daemon).get("turn"), gait(daemon).get("side")) == (0.2, 0.5),
        )
        assert "cmd speed +0.20 turn +0.20 side +0.50" in tmux.screen()
        tmux.keys("Space")
        until("a stop", lambda: daemon.status()["mode"] == "stand")
        until("the idle line", lambda: "cmd -" in tmux.screen())
        tmux.keys("w")
        until("walking again", lambda: daemon.status()["mode"] == "sine")
        tmux.keys("Enter")
        until("standing", lambda: daemon.status()["mode"] == "stand", timeout=3)
        tmux.keys("s")  # backwards
        until("walking backwards", lambda: gait(daemon).get("speed") == -0.1)
        tmux.keys("x")
        until("the e-stop", lambda: daemon.status()["mode"] == "estop", timeout=2)
        until("the e-stop on the line", lambda: "E-STOP sent" in tmux.screen())
        tmux.keys("Up")  # refused while latched, and said so
        until("the refusal", lambda: "e-stop is latched" in tmux.screen())
        assert daemon.status()["mode"] == "estop"
        tmux.keys("C-c")
        until("plenctl to quit", stty.exists)
        settings = until("the terminal settings", lambda: stty.read_text())
        assert " icanon " in f" {settings} " and " echo " in f" {settings} "  # restored
    finally:
        tmux.close()


class Pty:
    """plenctl drive on a pseudo-terminal of the test's own (tmux would wake a stopped
    client: it sends SIGCONT to a pane's process that stops)."""

    def __init__(self, command: list[str]):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True
        )
        self.slave = slave
        self.text = ""

    def read(self) -> str:
        while select.select([self.master], [], [], 0)[0]:
            try:
                self.text += os.read(self.master, 65536).decode(errors="replace")
            except OSError:
                break
        return self.text

    def type(self, key: str) -> None:
        until(
            "cbreak mode",
            lambda: self.read() is not None and not termios.tcgetattr(self.slave)[3] & termios.ICANON,
        )
        os.write(self.master, key.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def drive_faults(d: Daemon) -> list[dict[str, Any]]:
    return [f for f in d.status()["faults"] if f["code"] == "drive"]


def test_a_stalled_client_stops_the_walk_by_the_lease_and_a_killed_one_at_once(daemon: Daemon) -> None:
    term = Pty(drive_command(daemon).split())
    try:
        term.type("\x1b[A")
        until("a walk", lambda: term.read() and daemon.status()["mode"] == "sine")
        time.sleep(1.0)
        term.proc.send_signal(signal.SIGSTOP)  # alive and connected, but sending nothing
        stopped = time.monotonic()
        faults = until("the dead-man stop", lambda: drive_faults(daemon))
        began = time.monotonic() - stopped
        assert "no drive update for 0.5 s" in faults[0]["message"]
        until("standing", lambda: daemon.status()["mode"] == "stand")
        standing = time.monotonic() - stopped
        print(f"stalled client: stop began after {began:.2f} s, standing after {standing:.2f} s")
        term.proc.send_signal(signal.SIGCONT)
        until("the client told", lambda: "drive session ended: no drive update" in term.read())
        assert daemon.status()["mode"] == "stand"  # it does not walk off again by itself
        term.type("w")  # a new key press is a new session
        until("a walk", lambda: term.read() and daemon.status()["mode"] == "sine")
        term.proc.send_signal(signal.SIGKILL)
        faults = until("the stop", lambda: drive_faults(daemon))
        assert "connection closed" in faults[0]["message"]
        until("standing", lambda: daemon.status()["mode"] == "stand")
    finally:
        term.close()


def test_a_gamepad_drives_and_its_disappearance_stops_the_robot(daemon: Daemon, tmp_path: Path) -> None:
    fifo = tmp_path / "event7"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)
    config = tmp_path / "pad.toml"
    config.write_text("[drive.gamepad]\ndead_zone = 0.0\n")
    client = subprocess.Popen(
        [sys.executable, "-m", "plend.plenctl", "--socket", str(daemon.socket), "drive",
         "--gamepad", str(fifo), "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:

        def send(kind: int, code: int, value: int) -> None:
            os.write(writer, event_bytes(kind, code, value))

        send(EV_ABS, AXES["ABS_Y"], -16384)  # left stick half forward
        until("a walk at 0.5", lambda: gait(daemon).get("speed") == 0.5)
        send(EV_ABS, AXES["ABS_X"], -32768)  # and fully left
        until("a left turn", lambda: gait(daemon).get("turn") == 1.0)
        send(EV_KEY, BUTTONS["BTN_SOUTH"], 1)  # stop
        until("a stop", lambda: daemon.status()["mode"] == "stand")
        send(EV_ABS, AXES["ABS_Y"], -32768)
        until("walking again", lambda: daemon.status()["mode"] == "sine")
        os.close(writer)  # unplugged
        writer = -1
        out, _ = client.communicate(timeout=10)
        assert client.returncode == 1
        assert f"the gamepad {fifo} went away (its device closed); the robot stops" in out
        until("standing", lambda: daemon.status()["mode"] == "stand")
    finally:
        if writer >= 0:
            os.close(writer)
        if client.poll() is None:
            client.kill()
            client.communicate()


def test_a_refused_update_for_another_session_does_not_hide_the_one_that_walks(daemon: Daemon) -> None:
    from plend.plenctl import Client, ClientError

    client = Client(daemon.socket)
    client.request("drive", session="walking", speed=0.5, lease_s=5.0)
    until("a walk", lambda: daemon.status()["mode"] == "sine")
    with pytest.raises(ClientError, match="another plenctl drive is driving"):
        client.request("drive", session="other", speed=0.5, lease_s=5.0)
    client.close()
    closed = time.monotonic()
    faults = until("the stop", lambda: drive_faults(daemon), timeout=4.0)  # well within the 5 s lease
    assert "connection closed" in faults[0]["message"], faults
    print(f"walk stopped {time.monotonic() - closed:.2f} s after the client closed")


def test_the_estop_key_works_long_into_a_session_and_after_a_suspend(daemon: Daemon) -> None:
    """The spare connection outlives the daemon's 'asks nothing' timeout (5 s); after
    Ctrl-Z and fg the terminal is back in key-at-a-time mode."""
    term = Pty(drive_command(daemon).split())
    try:
        term.type("w")
        until("a walk", lambda: daemon.status()["mode"] == "sine")
        time.sleep(6.0)  # past socket.request_timeout_s
        attrs = termios.tcgetattr(term.slave)
        attrs[3] |= termios.ICANON | termios.ECHO  # what a shell leaves after Ctrl-Z and fg
        termios.tcsetattr(term.slave, termios.TCSANOW, attrs)
        term.proc.send_signal(signal.SIGCONT)
        term.type("x")  # waits for key-at-a-time mode first
        status = until("the e-stop", lambda: (s := daemon.status())["estop"] and s)
        assert status["mode"] == "estop" and "E-STOP NOT SENT" not in term.read()
    finally:
        term.close()


def test_the_spare_connection_is_opened_again_when_found_closed() -> None:
    from plend.core.errors import ConnectionLostError
    from plend.drive.client import SpareConnection

    asked: list[tuple[int, str]] = []

    class Fake:
        def __init__(self, n: int):
            self.n = n

        def request(self, cmd: str) -> dict[str, Any]:
            if self.n == 0 and cmd == "estop":
                raise ConnectionLostError("lost the connection to plend: Broken pipe")
            asked.append((self.n, cmd))
            return {}

        def close(self) -> None:
            pass

    made = iter(range(2))
    spare = SpareConnection(lambda: Fake(next(made)))
    spare.request("estop")
    assert asked == [(0, "version"), (1, "estop")]
