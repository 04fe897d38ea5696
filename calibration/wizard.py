"""``plenctl calibrate``: the servo and IMU calibration wizard.

It drives the running daemon's calibration mode through the control socket and walks a
person through each joint: horn fitting, zero and direction, a feedback sweep with its
fit, then the IMU, a review table and the save. The decisions come from an
:class:`Operator`: a person at the keyboard, an answers file (scripted mode), or, on a
simulated robot, an operator that looks at the simulation's ground truth.

Nothing is written until the review is accepted; every finished joint is kept in the
daemon's draft, so an interrupted session resumes where it stopped. However the wizard
ends (done, aborted, Ctrl-C, killed) the daemon leaves calibration mode and relaxes.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import textwrap
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from calibration.fit import (
    FeedbackError,
    FeedbackFit,
    direction_from_check,
    fit_sweep,
    horn_offset_from_zero,
)
from calibration.poses import positive_move, reference_pose
from calibration.store import (
    CALIBRATION_VERSION,
    CalibrationError,
    CalibrationRecord,
    Draft,
    JointRecord,
    describe,
    from_json,
)
from plend.errors import ConnectionLostError, PlendError
from plend.robot import joint

FINE_DEG = 0.5
COARSE_DEG = 5.0
CHECK_DEG = 5.0  # the direction check's move
SWEEP_HALF_RANGE_DEG = 90.0  # the joint's whole safe range: the fit holds where the joint works
SWEEP_POINTS = 13
MOVE_TIMEOUT_S = 30.0  # wall clock, for one move or one sweep point
IMU_TIMEOUT_S = 300.0
POLL_S = 0.03

JOG_KEYS = {"+": FINE_DEG, "-": -FINE_DEG, ">": COARSE_DEG, "<": -COARSE_DEG}


class WizardError(PlendError, RuntimeError):
    """The wizard cannot go on; the message says why and what to do."""


class Aborted(PlendError, RuntimeError):
    """The person (or the answers) asked to stop."""


class Blocked(WizardError):
    """The joint stopped following its target (a hard stop, an obstacle or a dead feedback
    wire); the daemon moved it back. ``state`` is the session state after that."""

    def __init__(self, message: str, state: dict[str, Any]):
        super().__init__(message)
        self.state = state


# -- the daemon side ------------------------------------------------------------------------


class Link(Protocol):
    """A connection to the daemon (``plend.plenctl.Client``)."""

    def request(self, cmd: str, **args: Any) -> Any: ...


class Session:
    """The wizard's calibration session on the daemon."""

    def __init__(self, link: Link):
        self.link = link
        self.info: dict[str, Any] = {}

    def begin(self) -> dict[str, Any]:
        self.info = self.link.request("calibrate_begin")
        return self.info

    def op(self, name: str, **args: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.link.request(f"calibrate_{name}", **args)
        return result

    def move(
        self, name: str, angle_rad: float, on_wait: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Move one joint and wait until it has arrived and settled.

        Raises:
            Blocked: The joint stopped following on the way (or would be pushed further
                into what stopped it).
        """
        try:
            self.op("move", joint=name, angle=angle_rad)
        except PlendError as exc:
            if getattr(exc, "code", None) != "blocked":
                raise
            state = self.op("state")
            raise Blocked(state.get("blocked", str(exc)), state) from None
        state = self.wait(lambda s: not s.get("moving") and bool(s.get("settled")), on_wait)
        if state.get("blocked"):
            raise Blocked(state["blocked"], state)
        return state

    def wait(
        self, done: Callable[[dict[str, Any]], bool], on_wait: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = MOVE_TIMEOUT_S, imu: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.op("state", **({"imu": True} if imu else {}))
            if on_wait is not None:
                on_wait(state)
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise WizardError(f"the daemon did not finish within {timeout_s:.0f} s; is it overloaded?")
            time.sleep(POLL_S)


# -- who answers ------------------------------------------------------------------------------


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
            if ch in ("\n", "\r"):
                self.stdout.write(("" if typed else default) + "\n")
                self.stdout.flush()
                self._forget_typed_ahead()  # a CR LF pair, or keys typed past the answer
                return typed or default
            if ch in ("\x7f", "\b") and typed:
                typed = ""
                self.stdout.write("\b \b")
            elif ch and ch.lower() in choices:
                self.stdout.write(("\b" if typed else "") + ch.lower())
                typed = ch.lower()
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
        try:
            return cls(tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise WizardError(f"answers file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise WizardError(f"answers file {path} cannot be read: {exc}") from None

    def known(self, name: str) -> dict[str, Any] | None:
        """The zero and direction the answers give for a joint, checked, or None."""
        given = self.answers.get("joints", {}).get(name)
        if given is None:
            return None
        offset, direction = given.get("offset_deg"), given.get("direction")
        if not isinstance(offset, int | float) or direction not in (1, -1):
            raise WizardError(f"answers: [joints.{name}] needs offset_deg (a number) and direction (1 or -1)")
        return {"offset_deg": float(offset), "direction": int(direction)}

    def _flag(self, key: str, question: str) -> bool:
        if key not in self.answers:
            raise WizardError(f"the answers do not say {question!r}: add '{key} = true' or 'false'")
        value = self.answers[key]
        if not isinstance(value, bool):
            raise WizardError(f"answers: {key} must be true or false, got {value!r}")
        return value

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        if key == "relax_first":
            return "y" if self.answers.get(key, True) else "n"
        if key in ("resume", "horns", "save", "imu"):
            return "y" if self._flag(key, question) else "n"
        if key == "bad_feedback":
            choice = self.answers.get("bad_feedback", "quit")
            return {"skip": "s", "quit": "q", "retry": "r"}.get(choice, "q")
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


class SimulatedOperator(ScriptedOperator):
    """An operator who sees the simulated robot: it jogs each joint to its true zero and
    judges the direction check by the true angle after the check's move (it starts from
    the true zero); other answers as scripted, by default yes to everything."""

    def __init__(self, answers: dict[str, Any]):
        super().__init__({"resume": True, "horns": False, "imu": True, "save": True, **answers})
        self.truth: Callable[[], float | None] = lambda: None
        self._joint: str | None = None
        self._last_truth: float | None = None
        self._sign = 0.0  # +1 or -1: which way the link turns on a positive jog, once seen
        self._probe = 1.0
        self._still = 0
        self._window_deg = 30.0
        self._prev_off: float | None = None
        self._back_then_done = False
        self._turned = False  # tried the other way already

    def known(self, name: str) -> dict[str, Any] | None:
        return None  # it looks at the robot instead

    def jog(self, view: JogView) -> str:
        true = view.truth_rad
        if true is None:
            raise WizardError(
                "the simulated operator needs the simulation's ground truth (sim or emulated robot)"
            )
        if view.joint != self._joint:  # a new joint: nothing known about its keys yet
            self._joint, self._sign, self._probe, self._still = view.joint, 0.0, 1.0, 0
            self._prev_off, self._back_then_done, self._last_truth = None, False, None
            self._turned = False
        if view.blocked:  # it would not go that way: try the other way once, then give up
            if self._sign or self._turned:
                return "q"
            self._probe, self._still, self._last_truth, self._turned = -float(view.blocked), 0, true, True
            return ">" if self._probe > 0 else "<"
        if not self._sign and self._last_truth is not None:
            moved = true - self._last_truth
            if abs(moved) > math.radians(0.1):
                self._sign = math.copysign(1.0, moved) * self._probe
            else:  # nothing moved: against a stop, so try the other way (once)
                self._still += 1
                if self._still >= 2 and not self._turned:
                    self._probe, self._still, self._turned = -self._probe, 0, True
                elif self._still * COARSE_DEG > 2 * self._window_deg:
                    return "q"  # it never moved: a person would stop and look
        self._last_truth = true
        off = math.degrees(true)
        if not self._sign:  # first find out which way the keys move the link
            return ">" if self._probe > 0 else "<"
        crossed = self._prev_off is not None and (off > 0) != (self._prev_off > 0)
        if abs(off) <= 0.2 or self._back_then_done or (crossed and abs(off) <= abs(self._prev_off or 0.0)):
            self._prev_off, self._back_then_done = None, False
            return "enter"  # as near as the servo's steps allow
        wanted = -off * self._sign  # jog degrees that would bring the link to zero
        if crossed:  # the last fine step overshot further than it was before: one back
            self._back_then_done = True
            return "+" if wanted > 0 else "-"
        self._prev_off = off if abs(wanted) <= COARSE_DEG else None
        if abs(wanted) > COARSE_DEG:
            return ">" if wanted > 0 else "<"
        return "+" if wanted > 0 else "-"

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        if key == "direction":
            moved = self.truth()
            if moved is None:
                raise WizardError("the simulated operator needs the simulation's ground truth")
            return "y" if moved > 0 else "n"
        return super().ask(key, question, choices, default)


# -- the wizard ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    joints: tuple[str, ...] = ()  # empty: every wired joint
    imu: bool | None = None  # None: ask
    imu_only: bool = False


def _levels(status: int) -> dict[str, int]:
    return {"sys": status >> 6 & 3, "gyro": status >> 4 & 3, "accel": status >> 2 & 3, "mag": status & 3}


IMU_GUIDANCE = {
    "gyro": "keep the robot perfectly still for a few seconds",
    "accel": "set the robot down in six different steady positions (each face down in turn), "
    "a few seconds each",
    "mag": "move the robot slowly through a figure-eight in the air, away from metal and motors",
    "sys": "keep going until the fusion settles (usually right after the others)",
}


class Wizard:
    """One calibration session from the first question to the save."""

    def __init__(self, session: Session, operator: Operator, out: TextIO, options: Options):
        self.session, self.operator, self.out, self.options = session, operator, out, options
        self.results: dict[str, JointRecord] = {}
        self.imu_offsets: tuple[int, ...] | None = None
        self.imu_status: int | None = None
        self.started = _now()
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._pending_live = ""

    def live(self, line: str) -> None:
        """A line that updates in place on a terminal (shown once, when final, elsewhere)."""
        if self._tty:
            self.out.write(f"\r{line}\x1b[K")
            self.out.flush()
        else:
            self._pending_live = line

    def end_live(self) -> None:
        if not self._tty and self._pending_live:
            self.out.write(self._pending_live)
        self._pending_live = ""
        self.out.write("\n")
        self.out.flush()

    def ask(self, key: str, question: str, choices: str, default: str) -> str:
        answer = self.operator.ask(key, question, choices, default)
        if not isinstance(self.operator, KeyboardOperator):
            self.say(f"{question} -> {answer}")  # a scripted run's log shows what was answered
        return answer

    def say(self, text: str = "", wrap: bool = True) -> None:
        """Print ``text``; on a terminal, long lines wrap at words, keeping their indent."""
        self.out.write((wrapped(text) if wrap and self._tty else text) + "\n")
        self.out.flush()

    # -- flow ---------------------------------------------------------------------------

    def run(self) -> int:
        self._relax_first()
        info = self.session.begin()
        self.joint_info = {j["name"]: j for j in info["joints"]}
        self.stored = None if info["stored"] is None else from_json(info["stored"])
        wanted = [] if self.options.imu_only else self._joints_to_do()
        self._intro(info)
        self._resume(info, wanted)
        todo = [name for name in wanted if name not in self.results]
        fit_horns = bool(todo) and self.ask(
            "horns", "Are the servo horns off, to be fitted now (a new robot)?", "yn", "n"
        ) == "y"  # fmt: skip
        for n, name in enumerate(todo, 1):
            self._joint(name, n, len(todo), fit_horns)
        self.session.op("relax")
        if self._want_imu():
            self._imu()
        return self._review_and_save()

    def _relax_first(self) -> None:
        mode = self.session.link.request("status")["mode"]
        if mode == "relax":
            return
        if mode == "estop":
            raise WizardError("the e-stop is latched; run 'plenctl reset' first")
        if mode == "calibrate":
            raise WizardError(
                "another 'plenctl calibrate' is running; finish it there (or 'plenctl relax' ends it)"
            )
        if mode != "stand":
            raise WizardError(
                f"the robot is in {mode}; run 'plenctl stop', wait until it stands, then calibrate"
            )
        question = (
            "The robot is standing. Put it on its stand or hold it by the torso: calibration starts "
            "with every servo relaxed. Ready?"
        )
        if self.ask("relax_first", question, "yn", "y") != "y":
            raise Aborted("not started")
        self.session.link.request("relax")

    def _joints_to_do(self) -> list[str]:
        names = list(self.joint_info)
        for name in self.options.joints:
            if name not in self.joint_info:
                raise WizardError(f"unknown or unwired joint {name!r}; joints: {', '.join(names)}")
        return [n for n in names if n in self.options.joints] if self.options.joints else names

    def _intro(self, info: dict[str, Any]) -> None:
        self.say(f"Calibrating {info['robot_id']} ({info['hal']}, bus {info['bus']}).")
        if info.get("problem"):
            self.say(f"The stored calibration is not usable: {info['problem']}")
        self.say(
            "Put the robot on its stand with both feet clear of the table (or have someone hold it by "
            "the torso). Only one joint is powered at a time and it moves slowly; the others stay limp. "
            "Press Ctrl-C at any moment to stop: the servos relax and finished joints are kept."
        )

    def _resume(self, info: dict[str, Any], wanted: list[str]) -> None:
        draft = info.get("draft")
        if not draft or not draft.get("joints"):
            return
        done = [n for n in draft["joints"] if n in wanted]
        if not done:
            return
        question = (
            f"An unfinished calibration from {draft['started']} has {len(done)} of {len(wanted)} joints done "
            f"({', '.join(done)}). Resume it?"
        )
        if self.ask("resume", question, "yn", "y") != "y":
            return
        restored = from_draft(draft)
        self.results.update({n: r for n, r in restored.joints.items() if n in wanted})
        self.started = restored.started
        self.imu_offsets, self.imu_status = restored.imu_offsets, restored.imu_calib_status

    # -- one joint ----------------------------------------------------------------------------

    def _joint(self, name: str, n: int, total: int, fit_horns: bool) -> None:
        j = joint(name)
        info = self.joint_info[name]
        working = info["working"]
        self.say("")
        self.say(f"== Joint {n} of {total}: {j.role} ({name}) ==")
        self.say(f"Reference pose: {reference_pose(j)}.")
        if fit_horns:
            self._fit_horn(name, working)
        known = getattr(self.operator, "known", lambda _name: None)(name)
        if known is not None:
            offset, direction = known["offset_deg"], known["direction"]
            self.say(
                f"Zero and direction from the answers: offset {offset:+.1f} deg, direction {direction:+d}."
            )
            self.session.op("set", joint=name, offset_deg=offset, direction=direction, confirmed=True)
            self.session.move(name, 0.0)
        else:
            offset = self._find_zero(name, working)
            try:
                direction = self._check_direction(name, working["direction"])
            except Blocked as exc:
                self.session.op("relax")
                self.say(f"  {exc}.\n  {name} skipped: it is not calibrated and nothing of it is kept.")
                return
        fit = self._feedback(name, direction)
        if fit is None:
            return
        self.results[name] = JointRecord(
            offset_deg=round(offset, 3), direction=direction, pulse_min_us=working["pulse_min_us"],
            pulse_max_us=working["pulse_max_us"], code_at_zero=round(fit.code_at_zero, 2),
            codes_per_rad=round(fit.codes_per_rad, 3), fit_error_deg=round(fit.fit_error_deg, 3),
            hysteresis_deg=round(fit.hysteresis_deg, 3), range_rad=fit.range_rad, calibrated_at=_now(),
        )  # fmt: skip
        self._keep_draft()
        self.session.op("relax")
        self.say(f"{j.role} done and kept; its servo is relaxed.")

    def _fit_horn(self, name: str, working: dict[str, Any]) -> None:
        self.say("Horn fitting: the servo turns to its neutral position (the middle of its travel).")
        self.session.op("set", joint=name, offset_deg=0.0)
        state = self.session.move(name, 0.0)
        self.say(
            f"  Neutral pulse {state['pulse_us']:.0f} us. Attach the horn and the link on the spline tooth "
            "that puts the link nearest its reference pose, then fit the horn screw."
        )
        answer = self.ask("horn_done", "  Horn fitted?", "yq", "y")
        if answer == "q":
            raise Aborted("stopped at horn fitting")

    def _find_zero(self, name: str, working: dict[str, Any]) -> float:
        self.say(
            "Zero: jog the joint until the link matches its reference pose.\n"
            "  keys: + / - (or right / left arrow) 0.5 deg   > / < (or up / down arrow) 5 deg   "
            "Enter: it matches   q: stop"
        )
        window = self.session.info["limits"]["jog_window_deg"]
        jog, blocked = 0.0, 0
        try:
            state = self.session.move(name, 0.0)
        except Blocked as exc:
            jog, blocked, state = self._blocked(exc, 0.0)
        while True:
            view = JogView(name, jog, state["pulse_us"], state.get("truth"), blocked)
            self._show_jog(view)
            key = self.operator.jog(view)
            if key == "enter":
                break
            if key == "q":
                self.end_live()
                raise Aborted("stopped while finding a zero")
            step = JOG_KEYS.get(key, 0.0)
            if abs(jog + step) > window:
                self._bell(
                    f"the jog stops at +-{window:.0f} deg from the start: is the horn on the wrong tooth?"
                )
                continue
            try:
                state = self.session.move(name, math.radians(jog + step))
                jog, blocked = jog + step, 0
            except Blocked as exc:
                jog, blocked, state = self._blocked(exc, jog + step)
        self.end_live()
        offset = horn_offset_from_zero(
            state["pulse_us"], 0.0, working["pulse_min_us"], working["pulse_max_us"], working["direction"]
        )
        self.session.op("set", joint=name, offset_deg=offset)
        self.say(f"  Zero at {state['pulse_us']:.0f} us: horn offset {offset:+.1f} deg.")
        return offset

    def _blocked(self, exc: Blocked, wanted_deg: float) -> tuple[float, int, dict[str, Any]]:
        """Say why the joint stopped; the jog now stands where the daemon put it back."""
        self._bell(f"{exc}; jog the other way, or stop (q) and check the joint.")
        here = math.degrees(exc.state.get("goal", 0.0))
        return here, 1 if wanted_deg > here else -1, exc.state

    def _show_jog(self, view: JogView) -> None:
        self.live(f"  jog {view.jog_deg:+6.1f} deg   pulse {view.pulse_us:6.0f} us")

    def _bell(self, text: str) -> None:
        self.end_live()
        self.say(f"\a  {text}")

    def _check_direction(self, name: str, assumed: int) -> int:
        j = joint(name)
        self.say(f"Direction: the joint moves {CHECK_DEG:.0f} deg in its positive direction, then back.")
        self.say(f"  If the direction is right, {positive_move(j)}.")
        self.session.move(name, math.radians(CHECK_DEG))
        answer = self.ask("direction", f"  Did it move like that ({positive_move(j)})?", "ynq", "y")
        if answer == "q":
            raise Aborted("stopped at the direction check")
        direction = direction_from_check(assumed, answer == "y")
        self.session.op("set", joint=name, direction=direction, confirmed=True)
        self.session.move(name, 0.0)
        self.say(
            f"  Direction {direction:+d}{' (the servo is mounted mirrored)' if direction != assumed else ''}."
        )
        return direction

    def truth(self) -> float | None:
        """The active joint's true angle, where the robot is simulated."""
        value = self.session.op("state").get("truth")
        return None if value is None else float(value)

    def _feedback(self, name: str, direction: int) -> FeedbackFit | None:
        info = self.joint_info[name]
        margin = math.radians(self.session.info["limits"]["safe_margin_deg"])
        half = math.radians(SWEEP_HALF_RANGE_DEG)
        low, high = max(info["lower"] + margin, -half), min(info["upper"] - margin, half)
        expected = self.session.info["feedback_polarity"] * direction
        while True:
            self.say(
                f"Feedback: the joint sweeps slowly from {math.degrees(low):+.0f} to "
                f"{math.degrees(high):+.0f} deg "
                "and back, reading its potentiometer at each stop. Keep clear of it."
            )
            try:
                self.session.move(name, low)
            except Blocked as exc:
                if not self._refused(name, str(exc)):
                    return None
                continue
            self.session.op("sweep", joint=name, low=low, high=high, points=SWEEP_POINTS)
            state = self.session.wait(lambda s: bool(s.get("sweep", {}).get("done")), self._show_sweep,
                                      timeout_s=MOVE_TIMEOUT_S * SWEEP_POINTS)  # fmt: skip
            self.end_live()
            sweep = state["sweep"]
            if sweep.get("error"):
                if not self._refused(name, sweep["error"]):
                    return None
                continue
            try:
                fit = fit_sweep(sweep["angles"], sweep["up"], sweep["down"], expected_sign=expected)
            except FeedbackError as exc:
                if not self._refused(name, str(exc)):
                    return None
                continue
            self.say(
                f"  Fit: {fit.codes_per_rad:+.0f} codes/rad, error {fit.fit_error_deg:.2f} deg, hysteresis "
                f"{fit.hysteresis_deg:.2f} deg, noise {fit.noise_deg:.2f} deg over "
                f"{math.degrees(fit.range_rad[0]):+.0f}..{math.degrees(fit.range_rad[1]):+.0f} deg."
            )
            self.session.op("set", joint=name, code_at_zero=fit.code_at_zero, codes_per_rad=fit.codes_per_rad)
            state = self.session.move(name, 0.0)
            measured = state.get("measured")
            if measured is not None:
                self.say(f"  At its zero the feedback now reads {math.degrees(measured):+.2f} deg.")
            return fit

    def _refused(self, name: str, why: str) -> bool:
        """Explain a refused feedback; True to sweep again, False to skip the joint."""
        self.say(f"  Feedback refused: {why}.")
        adc = joint(name).adc
        if adc is not None:
            where = f"input A{adc.channel} of the ADS1115 at 0x{adc.address:02x}"
            self.say(f"  {name}'s feedback wire goes to {where}.")
        answer = self.ask("bad_feedback", "  r: sweep again, s: skip this joint, q: stop", "rsq", "r")
        if answer == "r":
            return True
        self.session.op("relax")
        if answer == "s":
            self.say(f"  {name} skipped: it is not calibrated and nothing of it is kept.")
            return False
        raise Aborted(f"stopped: bad feedback on {name}")

    def _show_sweep(self, state: dict[str, Any]) -> None:
        sweep = state.get("sweep")
        if sweep:
            done = int(40 * sweep["progress"])
            self.live(f"  [{'#' * done}{'.' * (40 - done)}] {100 * sweep['progress']:3.0f}%")

    def _keep_draft(self) -> None:
        draft = Draft(self.session.info["robot_id"], self.started, dict(self.results), self.imu_offsets,
                      self.imu_status)  # fmt: skip
        self.session.op("draft", draft=dataclasses.asdict(draft))

    # -- IMU -------------------------------------------------------------------------------

    def _want_imu(self) -> bool:
        if self.options.imu_only:
            return True
        if self.options.imu is not None:
            return self.options.imu
        if self.options.joints:
            return False  # recalibrating single joints leaves the IMU as it is
        return self.ask("imu", "Calibrate the IMU now?", "yn", "y") == "y"

    def _imu(self) -> None:
        self.say("")
        self.say("== IMU ==")
        self.say("The BNO055 rates its own calibration 0-3 for each sensor; all 3 is good.")
        self.say("Enter: store the offsets now   s: skip the IMU   q: stop")
        deadline = time.monotonic() + IMU_TIMEOUT_S
        shown = ""
        while True:
            status = self.session.op("state", imu=True).get("imu_calib_status")
            if status is None:
                raise WizardError("the BNO055 does not answer; check its wiring, then run the wizard again")
            levels = _levels(status)
            todo = [k for k in ("gyro", "accel", "mag", "sys") if levels[k] < 3]
            line = "  " + "  ".join(f"{k} {v}/3" for k, v in levels.items())
            line += f"   now: {IMU_GUIDANCE[todo[0]]}" if todo else "   all calibrated"
            if line != shown:
                self.live(line)
                shown = line
            answer = self.operator.imu(status)
            if answer is not None or time.monotonic() > deadline:
                self.end_live()
            if answer == "q":
                raise Aborted("stopped at the IMU step")
            if answer == "s":
                self.say("  IMU skipped: the stored IMU offsets (if any) stay as they are.")
                return
            if answer == "enter":
                break
            if time.monotonic() > deadline:
                self.say("  The IMU did not finish calibrating in time; its offsets are not stored.")
                return
            time.sleep(0.2)
        if status != 0xFF:
            self.say("  Not every level is 3: the offsets are stored anyway, but the IMU may drift.")
        result = self.session.op("imu_offsets")
        self.imu_offsets, self.imu_status = tuple(result["offsets"]), result["calib_status"]
        self._keep_draft()
        self.say("  IMU offsets read; they are restored at every start-up.")

    # -- review and save -------------------------------------------------------------------------

    def _review_and_save(self) -> int:
        joints = dict(self.stored.joints) if self.stored else {}
        joints.update(self.results)
        missing = [n for n in self.joint_info if n not in joints]
        if missing:
            self.say("")
            self.say(
                f"{len(missing)} joint(s) still have no calibration ({', '.join(missing)}). "
                "What was measured "
                "is kept; run 'plenctl calibrate' again to finish (it offers to resume). Nothing was saved."
            )
            return 1
        keep_imu = self.imu_offsets is None and self.stored is not None
        record = CalibrationRecord(
            version=CALIBRATION_VERSION, robot_id=self.session.info["robot_id"], created=_now(),
            joints=joints,
            imu_offsets=self.stored.imu_offsets if keep_imu and self.stored else self.imu_offsets,
            imu_calib_status=self.stored.imu_calib_status if keep_imu and self.stored else self.imu_status,
            servos=dict(self.stored.servos) if self.stored else {},  # a servo's dynamics stay its own
        )  # fmt: skip
        self.say("")
        self.say("== Review ==")
        self.say(describe(record, self.stored), wrap=False)
        if self.ask("save", f"Save to {self.session.info['path']}?", "yn", "y") != "y":
            self.say("Not saved. What was measured is kept; run 'plenctl calibrate' to resume.")
            return 1
        result = self.session.op("save", record=dataclasses.asdict(record))
        backup = f" (previous one kept as {result['backup']})" if result.get("backup") else ""
        self.say(f"Saved {result['path']}{backup}. The daemon drives the servos with it from now on.")
        self.say("The servos are relaxed. Try 'plenctl stand'.")
        return 0


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


def from_draft(data: dict[str, Any]) -> Draft:
    from calibration.store import draft_from_json

    return draft_from_json({"version": CALIBRATION_VERSION, **data})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run(link: Link, operator: Operator, options: Options, out: TextIO = sys.stdout) -> int:
    """Run one wizard session on the daemon behind ``link``; the exit code.

    The session always ends: on any exit the daemon is asked to leave calibration mode
    (and it does so by itself if this process dies and the connection drops).
    """
    session = Session(link)
    wizard = Wizard(session, operator, out, options)
    if isinstance(operator, SimulatedOperator):
        operator.truth = wizard.truth
    try:
        if isinstance(operator, KeyboardOperator):
            with operator:
                return wizard.run()
        return wizard.run()
    except (Aborted, KeyboardInterrupt) as exc:
        kept = len(wizard.results)
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        out.write(f"\n{why}: servos relaxed, nothing saved")
        out.write(f"; {kept} finished joint(s) kept for resuming.\n" if kept else ".\n")
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    except CalibrationError as exc:
        raise WizardError(str(exc)) from None
    except ConnectionLostError:
        kept = len(wizard.results)
        out.write(f"\nThe daemon went away: nothing saved; {kept} finished joint(s) are in its draft.\n")
        raise
    finally:
        try:
            if session.info:
                link.request("calibrate_end")
        except PlendError:
            pass  # the daemon ends the session when the connection drops anyway
