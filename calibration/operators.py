"""Who answers the calibration wizard's questions: a person at the keyboard, or an answers
file (scripted mode, for tests and for many robots). The operator that looks at a
simulated robot lives next to the emulated robot (plend.hal.emulated.operator)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

from calibration.session import WizardError
from plend.core.checks import shown
from plend.core.files import FileRefusedError, nothing_at, parse_toml, read_limited

FINE_DEG = 0.5
COARSE_DEG = 5.0
JOG_KEYS = {"+": FINE_DEG, "-": -FINE_DEG, ">": COARSE_DEG, "<": -COARSE_DEG}
MAX_ANSWERS_BYTES = 1 << 20  # an answers file is a few lines; this only bounds a bad one
ANSWERS_READ_S = 2.0


@dataclasses.dataclass
class JogView:
    """What the person sees while jogging a joint to its reference pose."""

    joint: str
    jog_deg: float
    pulse_us: float
    truth_rad: float | None  # the simulation's true angle, where there is one
    blocked: int = 0  # +1 or -1: the way the last move found the joint would not follow


class Operator(Protocol):
    """Answers the wizard's questions."""

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        """One answer among the letters of ``choices`` (lower case)."""

    def jog(self, view: JogView) -> str:
        """A jog key (``+ - > <``), ``enter`` when the link matches the pose, or ``q``."""

    def imu(self, status: int) -> str | None:
        """``enter`` to store the IMU offsets now, ``s`` to skip, ``q``; None to keep waiting."""


_ARROWS = {b"[C": "+", b"[D": "-", b"[A": ">", b"[B": "<"}  # right, left, up, down


def _answer(typed: str, choices: str, default: str) -> str | None:
    """The choice a typed line gives: one choice letter (``yes``/``no`` for y/n), the
    default for an empty line, None for anything else."""
    word = typed.strip().lower()
    if not word:
        return default
    if len(word) == 1 and word in choices:
        return word
    if word in ("yes", "no") and word[0] in choices:
        return word[0]
    return None


class KeyboardOperator:
    """A person at a terminal: single keys to jog, answers confirmed with Enter.

    Used as a context manager: the terminal stays in cbreak mode (keys arrive at once and
    are not echoed) for the whole session, so keys typed while a joint moves queue up
    instead of being lost; the terminal is restored on the way out, Ctrl-C included.
    """

    def __init__(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout):
        self.stdin, self.stdout = stdin, stdout
        self._fd = stdin.fileno()
        self._saved: list[Any] | None = None

    def __enter__(self) -> KeyboardOperator:
        import termios
        import tty

        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _key(self, timeout: float | None = None) -> str | None:
        import os
        import select

        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        ch = os.read(self._fd, 1)
        if ch == b"\x1b":  # an arrow key sends ESC [ A..D
            seq = b""
            while len(seq) < 2 and select.select([self._fd], [], [], 0.05)[0]:
                seq += os.read(self._fd, 1)
            return _ARROWS.get(seq, "")
        return ch.decode("utf-8", "replace")

    def _forget_typed_ahead(self) -> None:
        """Drop keys typed before a question, so a stray Enter cannot answer it."""
        import termios

        termios.tcflush(self._fd, termios.TCIFLUSH)

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        """A line answer: a choice key, then Enter (Enter alone takes the default). The
        whole line is consumed, so the Enter that confirms an answer can never reach the
        next step (where it would accept a joint's zero unjogged)."""
        shown = "/".join(c.upper() if c == default else c for c in choices)
        self._forget_typed_ahead()
        self.stdout.write(wrapped(f"{question} [{shown}]") + " ")
        self.stdout.flush()
        typed = ""
        while True:
            ch = self._key()
            if ch == "\x04":  # Ctrl-D: leave, as Ctrl-C does
                raise KeyboardInterrupt
            if ch in ("\n", "\r"):
                answer = _answer(typed, choices, default)
                self.stdout.write(("" if typed else default) + "\n")
                self._forget_typed_ahead()  # a CR LF pair, or keys typed past the answer
                if answer is not None:
                    self.stdout.flush()
                    return answer
                # Anything but one of the choices is no answer: "no way" must not be a yes.
                names = " or ".join(choices)
                self.stdout.write(
                    wrapped(f"answer {names} (Enter alone: {default}). {question} [{shown}]") + " "
                )
                typed = ""
            elif ch in ("\x7f", "\b") and typed:
                typed = typed[:-1]
                self.stdout.write("\b \b")
            elif ch and ch.isprintable() and len(typed) < 40:
                self.stdout.write(ch)
                typed += ch
            self.stdout.flush()

    def jog(self, view: JogView) -> str:
        while True:
            ch = self._key()
            if ch in ("\n", "\r"):
                return "enter"
            if ch in JOG_KEYS or ch == "q":
                return ch
            if ch == "=":  # + without shift
                return "+"
            if ch == ".":  # > without shift
                return ">"
            if ch == ",":
                return "<"

    def imu(self, status: int) -> str | None:
        ch = self._key(0.2)
        if ch in ("\n", "\r"):
            return "enter"
        return ch if ch in ("s", "q") else None


class ScriptedOperator:
    """Answers from an answers file or options: for tests and for many robots.

    Keys of the answers (TOML): ``resume`` (bool), ``horns`` (bool: fit the horns),
    ``imu`` (bool), ``save`` (bool), ``bad_feedback`` ("skip" or "quit"), and
    ``[joints.NAME]`` tables with ``offset_deg`` and ``direction`` for joints whose zero
    was measured another way (a jig). A question the answers do not cover stops the
    wizard with a message naming the key to add.
    """

    def __init__(self, answers: dict[str, Any]):
        self.answers = answers
        self.current_joint: str | None = None

    @classmethod
    def from_file(cls, path: Path) -> ScriptedOperator:
        """The answers of the TOML file ``path``, read as any file a person names is (a FIFO,
        ``/dev/zero`` or a file nested a thousand deep is refused, not waited on)."""
        if nothing_at(path):
            raise WizardError(f"answers file {path} does not exist")
        try:
            data = read_limited(path, MAX_ANSWERS_BYTES, ANSWERS_READ_S, "answers file")
            return cls(parse_toml(data.decode("utf-8"), f"answers file {path}"))
        except FileRefusedError as exc:
            raise WizardError(f"{exc}; {exc.advice or 'give a UTF-8 TOML answers file'}") from None
        except UnicodeDecodeError as exc:
            raise WizardError(
                f"answers file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML"
            ) from None

    def known(self, name: str) -> dict[str, Any] | None:
        """The zero and direction the answers give for a joint, checked, or None."""
        joints = self.answers.get("joints", {})
        if not isinstance(joints, dict):
            raise WizardError("answers: joints must be tables [joints.NAME] of offset_deg and direction")
        given = joints.get(name)
        if given is None:
            return None
        if not isinstance(given, dict):
            raise WizardError(f"answers: [joints.{name}] must be a table of offset_deg and direction")
        offset, direction = given.get("offset_deg"), given.get("direction")
        if not isinstance(offset, int | float) or direction not in (1, -1):
            raise WizardError(f"answers: [joints.{name}] needs offset_deg (a number) and direction (1 or -1)")
        return {"offset_deg": float(offset), "direction": int(direction)}

    def _flag(self, key: str, question: str) -> bool:
        if key not in self.answers:
            raise WizardError(f"the answers do not say {question!r}: add '{key} = true' or 'false'")
        value = self.answers[key]
        if not isinstance(value, bool):
            raise WizardError(f"answers: {key} must be true or false, got {shown(value)}")
        return value

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        if key == "relax_first":
            return "y" if self.answers.get(key, True) else "n"
        if key in ("resume", "horns", "save", "imu"):
            return "y" if self._flag(key, question) else "n"
        if key == "bad_feedback":
            choice = self.answers.get("bad_feedback", "quit")
            return {"skip": "s", "quit": "q", "retry": "r"}.get(str(choice), "q")
        if key == "horn_done":
            return "y"  # scripted: the horns are on
        raise WizardError(f"the answers cannot say {question!r} ({key}); run the wizard interactively")

    def jog(self, view: JogView) -> str:
        raise WizardError(
            f"the answers give no zero for {view.joint}: add [joints.{view.joint}] offset_deg and direction, "
            "or on a simulated robot use --operator sim"
        )

    def imu(self, status: int) -> str | None:
        return "enter" if status == 0xFF else None


@runtime_checkable
class KnowsZeros(Protocol):
    """An operator that may already know a joint's zero and direction (measured another
    way, with a jig): the wizard then skips finding them."""

    def known(self, name: str) -> dict[str, Any] | None:
        """``offset_deg`` and ``direction`` of joint ``name``, or None to find them."""


@runtime_checkable
class WatchesTruth(Protocol):
    """An operator who sees the simulated robot's true joint angles."""

    def watch(self, truth: Callable[[], float | None]) -> None:
        """Read the active joint's true angle (rad; None on a real robot) through ``truth``."""


def wrapped(text: str) -> str:
    """``text`` wrapped at words to the terminal's width, each line keeping its indent."""
    width = max(60, shutil.get_terminal_size().columns - 1)
    lines = []
    for line in text.split("\n"):
        indent = line[: len(line) - len(line.lstrip())]
        lines += textwrap.wrap(
            line, width, subsequent_indent=indent + "  ",
            break_long_words=False, break_on_hyphens=False,  # paths stay whole
        ) or [""]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)
