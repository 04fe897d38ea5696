"""``plenctl drive``: drive the robot from a terminal's keys or a gamepad.

The terminal is put in cbreak mode (keys arrive at once, unechoed; Ctrl-C still
interrupts) and restored on every way out. One line shows the command, the robot's
motion and its faults, rewritten in place. Quitting stops the walk first.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from plend.core.errors import ConnectionLostError, PlendError
from plend.drive.gamepad import Gamepad, GamepadGoneError, PadEvent
from plend.drive.keys import KEY_ACTIONS, Command, KeyDecoder, apply, changes_command
from plend.drive.link import Link
from plend.drive.settings import DriveConfig

HELP = (
    "drive: Up/Down or w/s speed, Left/Right or a/d turn, q/e side step, space stop, Enter stand, "
    "x or Esc e-stop, Ctrl-C quit"
)
PAD_HELP = "gamepad: left stick speed and turn, right stick side step; buttons: stop, stand, e-stop, quit"
REFRESH_S = 0.1


class Quit(Exception):
    """The driver asked to quit (Ctrl-C, the quit button, a signal)."""


@contextlib.contextmanager
def cbreak(stream: TextIO) -> Iterator[None]:
    """Keys at once and unechoed while inside; the terminal as it was afterwards, always."""
    if not stream.isatty():
        yield
        return
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    main = threading.current_thread() is threading.main_thread()

    def resumed(signum: int, frame: object) -> None:  # after Ctrl-Z and fg the shell's mode is back
        with contextlib.suppress(termios.error):
            tty.setcbreak(fd, termios.TCSANOW)

    previous = signal.signal(signal.SIGCONT, resumed) if main else None
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if main:
            signal.signal(signal.SIGCONT, previous)


@contextlib.contextmanager
def quit_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) end the drive like Ctrl-C does."""

    def stop(signum: int, frame: object) -> None:
        raise Quit(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def status_line(command: Command, heard: dict[str, Any], note: str, driving: bool) -> str:
    """The live line: mode, command, measured speed, yaw rate, tilt, faults (or a note)."""
    mode = heard.get("mode") or "?"
    asked = f"cmd speed {command.speed:+.2f} turn {command.turn:+.2f} side {command.side:+.2f}"
    if not driving:
        asked = "cmd -"
    m = heard.get("motion") or {}
    speed = "-" if m.get("speed_m_s") is None else f"{m['speed_m_s']:+.3f}"
    yaw = "-" if m.get("yaw_rate_deg_s") is None else f"{m['yaw_rate_deg_s']:+.1f}"
    tilt = "-" if m.get("tilt_deg") is None else f"{m['tilt_deg']:.1f}"
    faults = ",".join(heard.get("faults") or []) or "none"
    took = heard.get("took")
    ignored = "  (walks as trained)" if driving and took == [] and heard.get("walker") == "policy" else ""
    told = f"{note} | " if note else ""  # first: a refusal or an e-stop matters most
    return (
        f"{mode:<7} {told}{asked}{ignored} | {speed} m/s  yaw {yaw} deg/s  tilt {tilt} deg | faults {faults}"
    )


class Driver:
    """Reads keys (and a gamepad), updates the link, e-stops on its own connection."""

    def __init__(self, link: Link, estop_client: Any, config: DriveConfig, out: TextIO):
        self.link, self.estop_client, self.config, self.out = link, estop_client, config, out
        self.decoder = KeyDecoder()
        self.shown = ""

    def key(self, name: str) -> None:
        action = KEY_ACTIONS.get(name)
        if action is None:
            return
        if changes_command(action):
            self.link.set(apply(self.link.command, action, self.config))
            self.link.wake()
        else:
            self.button(action)

    def pad(self, event: PadEvent) -> None:
        if event.kind in ("speed", "turn", "side"):
            self.link.set(replace(self.link.command, **{event.kind: event.value}))
            self.link.wake()
        else:
            self.button(event.kind)

    def button(self, action: str) -> None:
        if action == "estop":
            self.estop()
        elif action == "quit":
            raise Quit("quit")
        else:  # stop, stand
            self.link.act(action)

    def estop(self) -> None:
        """Straight to the daemon on the spare connection; never behind an update."""
        self.link.forget("E-STOP sent; 'plenctl reset' clears it")
        try:
            self.estop_client.request("estop")
        except PlendError as exc:
            self.link.note = f"E-STOP NOT SENT: {exc}"
        self.show(force=True)

    def show(self, force: bool = False) -> None:
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
        link = self.link
        line = status_line(link.command, link.heard, link.note, link.driving)[:width]
        if force or line != self.shown:
            self.out.write("\r\x1b[K" + line)
            self.out.flush()
            self.shown = line


def drive(
    client: Any, estop_client: Any, config: DriveConfig, options: Any, stdin: TextIO, out: TextIO
) -> int:
    """Run a drive session until the driver quits; returns the exit code."""
    gamepad = Gamepad(options.gamepad_path, config.gamepad) if options.gamepad_path else None
    keyboard = stdin.isatty()
    if gamepad is None and not keyboard:
        raise PlendError("plenctl drive needs a terminal for its keys, or a gamepad (--gamepad)")
    link = Link(client, 1.0 / config.update_hz, options.walker)
    driver = Driver(link, estop_client, config, out)
    thread = threading.Thread(target=link.run, name="plenctl-drive-link", daemon=True)
    code = 0
    try:
        with cbreak(stdin), quit_on_signals():
            # Only now: keys typed before cbreak mode would wait for a newline.
            out.write("\n".join([HELP] * keyboard + [PAD_HELP] * (gamepad is not None)) + "\n")
            thread.start()
            code = _loop(driver, stdin if keyboard else None, gamepad)
    except (Quit, KeyboardInterrupt):
        pass
    finally:
        link.close()
        _stop_walking(link, estop_client)
        thread.join(timeout=2.0)
        if gamepad is not None:
            gamepad.close()
        out.write("\n")
    return code


def _loop(driver: Driver, keys: TextIO | None, gamepad: Gamepad | None) -> int:
    sources: list[Any] = [s for s in (keys, gamepad) if s is not None]
    last_show = 0.0
    while True:
        if driver.link.error is not None:
            raise driver.link.error
        ready, _, _ = select.select(sources, [], [], 0.02)
        now = time.monotonic()
        if keys is not None and keys in ready:
            for name in driver.decoder.feed(os.read(keys.fileno(), 64), now):
                driver.key(name)
        for name in driver.decoder.flush(now):
            driver.key(name)
        if gamepad is not None and gamepad in ready:
            try:
                events = gamepad.read()
            except GamepadGoneError as exc:
                driver.link.note = f"{exc}; the robot stops"
                driver.show(force=True)
                driver.out.write(f"\nplenctl: {driver.link.note}")  # in full, whatever the width
                return 1
            for event in events:
                driver.pad(event)
        if now - last_show >= REFRESH_S:
            driver.show()
            last_show = now


def _stop_walking(link: Link, estop_client: Any) -> None:
    """On the way out: stop a walk this client started, on the spare connection (the
    link may be in the middle of a request)."""
    if not link.driving:
        return
    link.forget("")
    with contextlib.suppress(PlendError, OSError):
        estop_client.request("stop")


def run(args: Any, connect: Any, config: DriveConfig) -> int:
    """``plenctl drive`` once its arguments are parsed: find the gamepad, connect twice
    (drive updates; e-stop and the last stop), drive."""
    gamepad_path = None
    if args.gamepad is not None:
        from plend.drive.gamepad import find_gamepad

        gamepad_path = Path(args.gamepad) if args.gamepad else find_gamepad()
    client = connect()
    try:
        estop_client = SpareConnection(connect)
        try:
            options = Options(gamepad_path, "policy" if args.policy else "sine")
            return drive(client, estop_client, config, options, sys.stdin, sys.stdout)
        finally:
            estop_client.close()
    finally:
        client.close()


class SpareConnection:
    """The connection for e-stop and the last stop. It asks something at once (the daemon
    closes a connection that asks nothing within a few seconds) and, found closed when it
    is needed (idle for long, the daemon restarted), is opened again and asked again."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._client = connect()
        self._client.request("version")

    def request(self, cmd: str, **args: Any) -> Any:
        try:
            return self._client.request(cmd, **args)
        except ConnectionLostError:
            self._client.close()
            self._client = self._connect()
            return self._client.request(cmd, **args)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Options:
    """What to drive with, and what starts from standing."""

    gamepad_path: Path | None = None
    walker: str = "sine"
