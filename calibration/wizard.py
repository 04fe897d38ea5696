"""``plenctl calibrate``: the servo and IMU calibration wizard.

It drives the running daemon's calibration mode through the control socket and walks a
person through each joint: horn fitting, zero and direction, a feedback sweep with its
fit, then the IMU, a review table and the save. The decisions come from an
operator (calibration.operators): a person at the keyboard, an answers file (scripted
mode), or, on a simulated robot, an operator that looks at the simulation's ground truth
(plend.hal.emulated.operator). The session with the daemon is calibration.session; this
module is the flow.

Nothing is written until the review is accepted; every finished joint is kept in the
daemon's draft, so an interrupted session resumes where it stopped. However the wizard
ends (done, aborted, Ctrl-C, killed) the daemon leaves calibration mode and relaxes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, TextIO

from calibration.describe import describe
from calibration.drafts import Draft
from calibration.joint_steps import JointSteps, now
from calibration.operators import (
    KeyboardOperator,
    Operator,
    WatchesTruth,
    wrapped,
)
from calibration.session import Aborted, Link, Session, WizardError
from calibration.store import (
    CALIBRATION_VERSION,
    CalibrationError,
    CalibrationRecord,
    JointRecord,
    ServoRecord,
    from_json,
)
from plend.core.errors import ConnectionLostError, PlendError
from plend.model.robot import joint

IMU_TIMEOUT_S = 300.0


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
        self.started = now()
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
        record = JointSteps(self, self.session, self.operator, self.joint_info).calibrate(
            name, n, total, fit_horns
        )
        if record is None:
            return
        self.results[name] = record
        self._keep_draft()
        self.session.op("relax")
        self.say(f"{joint(name).role} done and kept; its servo is relaxed.")

    def truth(self) -> float | None:
        """The active joint's true angle, where the robot is simulated."""
        value = self.session.op("state").get("truth")
        return None if value is None else float(value)

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
            version=CALIBRATION_VERSION, robot_id=self.session.info["robot_id"], created=now(),
            joints=joints,
            imu_offsets=self.stored.imu_offsets if keep_imu and self.stored else self.imu_offsets,
            imu_calib_status=self.stored.imu_calib_status if keep_imu and self.stored else self.imu_status,
            servos=self._servos_kept(),
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

    def _servos_kept(self) -> dict[str, ServoRecord]:
        """The stored servos (a servo's dynamics stay its own); a joint swept again has its
        sweep's feedback line, no longer the one its identification refined."""
        servos = dict(self.stored.servos) if self.stored else {}
        for name in self.results.keys() & servos.keys():
            servos[name] = dataclasses.replace(servos[name], feedback_scale=1.0, feedback_shift_deg=0.0)
        return servos


def from_draft(data: dict[str, Any]) -> Draft:
    from calibration.drafts import draft_from_json

    return draft_from_json({"version": CALIBRATION_VERSION, **data})


def run(link: Link, operator: Operator, options: Options, out: TextIO = sys.stdout) -> int:
    """Run one wizard session on the daemon behind ``link``; the exit code.

    The session always ends: on any exit the daemon is asked to leave calibration mode
    (and it does so by itself if this process dies and the connection drops).
    """
    session = Session(link)
    wizard = Wizard(session, operator, out, options)
    if isinstance(operator, WatchesTruth):
        operator.watch(wizard.truth)
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
