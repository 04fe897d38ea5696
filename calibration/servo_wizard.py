"""``plenctl calibrate --servos``: measure each servo's response and fit the simulation's model.

With the robot on its stand and calibrated, each joint in turn (alone powered, as in the
calibration wizard) is brought slowly to where it rests, then plays two identical runs
of an excitation (:mod:`calibration.servo_excitation`) that the daemon records on its
control thread. Then every run is fitted at once (:mod:`calibration.servo_id`), a joint's
two runs with one shared model: that is its result (the delay and the speed the mean of
its runs'), and the difference between each run's own fit its repeatability. A joint whose
feedback is dead, noisy or reversed, that hits a stop, hardly moves, answers later than
150 ms or does not fit the model is refused with what to check, and may be measured
again. Nothing is written until the review is accepted; then the calibration file gets
its ``servos`` section, everything else in it as it was. However the wizard ends the
daemon leaves calibration mode and relaxes the servos.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, TextIO

import numpy as np

from calibration.describe import describe_refinement, describe_servos
from calibration.fit import FeedbackError
from calibration.joint_steps import now as _now
from calibration.operators import KeyboardOperator, Operator
from calibration.servo_checks import Recording, ServoRefusedError, assess, check_feedback
from calibration.servo_excitation import RUN_S, ExcitationError, choose_centre, frame_phases, two_runs
from calibration.servo_feedback import LineRefinement, change_from_sweep, refine_line, refined_joint
from calibration.servo_id import Run, fit_runs
from calibration.session import Aborted, Link, Session, WizardError
from calibration.store import CalibrationRecord, ServoRecord, from_json
from calibration.wizard import Options, Wizard
from plend.core.errors import ConnectionLostError, PlendError
from plend.model.robot import joint

RETRIES = 2  # a refused joint may be measured again this often (scripted answers say "retry")
UNVISITED = 0.25  # of the PWM frame, between the phases a run's ticks write at: say so


class ServoWizard(Wizard):
    """One servo identification session, from the first joint to the save."""

    def __init__(self, session: Session, operator: Operator, out: TextIO, options: Options):
        super().__init__(session, operator, out, options)
        self.servos: dict[str, ServoRecord] = {}
        self.lines: dict[str, LineRefinement] = {}  # the feedback lines the servos refined
        self.truths: dict[str, list[dict[str, float]]] = {}
        self.recordings: dict[str, Recording] = {}  # the last of each joint fitted
        self.robot_time_s = 0.0  # the daemon's clock over the excitations
        self.fit_s = 0.0
        self.exit_code = 1

    def run(self) -> int:
        self._relax_first()
        info = self.session.begin()
        self.joint_info = {j["name"]: j for j in info["joints"]}
        self.calibration = _stored(info)
        self.stored = self.calibration
        names = [n for n in self._joints_to_do() if self.joint_info[n]["has_feedback"]]
        self.say(f"Measuring the servos of {info['robot_id']} ({info['hal']}, bus {info['bus']}).")
        self._frame_note(info)
        self.say(
            "Put the robot on its stand with both feet clear. Each joint alone moves quickly but only a few "
            "degrees (once up to 40 deg), for about 10 s. Ctrl-C stops: the servos relax, nothing is saved."
        )
        refused = self._measure(names)
        for _ in range(RETRIES):
            if not refused:
                break
            again = [name for name, why in refused.items() if self._again(name, why)]
            refused = {n: w for n, w in refused.items() if n not in again}
            refused.update(self._measure(again))
        for name in refused:
            self.say(f"  {name}: not measured; what was stored for it stays.")
        self.session.op("relax")
        return self._review_and_save_servos()

    # -- measuring ------------------------------------------------------------------------

    def _measure(self, names: list[str]) -> dict[str, str]:
        """Excite ``names`` one after the other, then fit them all; returns why each
        refused joint was refused."""
        recordings: dict[str, Recording] = {}
        refused: dict[str, str] = {}
        for n, name in enumerate(names, 1):
            try:
                recordings[name] = self._excite(name, n, len(names))
            except (FeedbackError, ExcitationError) as exc:
                refused[name] = str(exc)
                self.say(f"  Refused: {exc}.")
            self.session.op("relax")
        if recordings:
            refused.update(self._fit(recordings))
        return refused

    def _excite(self, name: str, n: int, total: int) -> Recording:
        info, limits = self.joint_info[name], self.session.info["limits"]
        self.say("")
        self.say(f"== Servo {n} of {total}: {joint(name).role} ({name}) ==")
        margin = math.radians(limits["safe_margin_deg"])
        low, high = info["lower"] + margin, info["upper"] - margin
        period = 1.0 / self.session.info["rate_hz"]
        targets = two_runs(choose_centre(self._resting(name), low, high), low, high, period,
                           limits["identify_speed_rad_s"])  # fmt: skip
        began = self._clock()
        reply = self.session.op("identify", joint=name, targets=[float(v) for v in targets], runs=2)
        state = self.session.wait(
            lambda s: bool(s.get("identify", {}).get("done")), self._show_progress,
            timeout_s=30.0 + 3.0 * reply["seconds"],
        )  # fmt: skip
        self.end_live()
        self.robot_time_s += self._clock() - began
        done = state["identify"]
        if done.get("error"):
            raise ServoRefusedError(done["error"])
        recording = Recording.from_state(done)
        check_feedback(recording, self.session.info["feedback_polarity"] * self._direction(name))
        if recording.truth is not None:
            self.truths[name] = recording.truth
        self.say(f"  Recorded {len(recording.sent)} ticks.")
        return recording

    def _frame_note(self, info: dict[str, Any]) -> None:
        frame, rate = info.get("pwm_frame_s"), float(info["rate_hz"])
        if frame and frame_phases(1.0 / rate, frame, int(RUN_S * rate)) > UNVISITED:
            self.say(
                f"Note: at {rate:g} Hz the loop's ticks stay at nearly one phase of the PCA9685's "
                f"{1000 * frame:.0f} ms frames, which drifts with the board's oscillator: each delay found "
                "is the one at that moment's phase, up to a frame from their average. For the average, "
                "measure with the daemon at a rate whose ticks walk through the frames (plend run --rate 60)."
            )

    def _clock(self) -> float:
        """The daemon's clock (runs faster than the wall's on a sped-up simulated robot)."""
        return float(self.session.op("state")["now"])

    def _resting(self, name: str) -> float:
        for j in self.session.link.request("status").get("joints", []):
            if j["name"] == name and j.get("measured") is not None:
                return float(j["measured"])
        return math.nan

    def _direction(self, name: str) -> int:
        joints = self.calibration.joints
        return int(joints[name].direction) if name in joints else 1

    def _show_progress(self, state: dict[str, Any]) -> None:
        ident = state.get("identify")
        if ident:
            done = int(40 * ident["progress"])
            phase = "running" if ident.get("started") else "moving to its start"
            self.live(f"  [{'#' * done}{'.' * (40 - done)}] {100 * ident['progress']:3.0f}%  {phase}")

    def _fit(self, recordings: dict[str, Recording]) -> dict[str, str]:
        info = self.session.info
        self.recordings.update(recordings)
        substeps = int(info["sim_substeps"])
        runs, owners, codes = split_recordings(recordings, substeps, info.get("pwm_frame_s"))
        self.say("")
        self.say(f"Fitting the servo model to {len(runs)} runs...")
        started = time.monotonic()
        fits = fit_runs(runs, repeats(len(runs)))
        self.fit_s = time.monotonic() - started
        refused: dict[str, str] = {}
        for name in recordings:
            mine = [i for i, owner in enumerate(owners) if owner == name]
            try:
                servo = assess([fits[i] for i in mine], info["rate_hz"], substeps, _now())
            except ServoRefusedError as exc:
                refused[name] = str(exc)
                self.say(f"  {name} refused: {exc}.")
                continue
            in_use = self.calibration.joints[name]
            line = refine_line([runs[i] for i in mine], [codes[i] for i in mine], [fits[i] for i in mine],
                               in_use)  # fmt: skip
            self.lines[name] = line
            last = self.calibration.servos.get(name)
            before = (last.feedback_scale, last.feedback_shift_deg) if last else (1.0, 0.0)
            scale, shift = change_from_sweep(in_use, before, line)
            self.servos[name] = dataclasses.replace(
                servo, feedback_scale=round(scale, 6), feedback_shift_deg=round(shift, 4)
            )
        self.say(f"  done in {self.fit_s:.0f} s.")
        return refused

    def _again(self, name: str, why: str) -> bool:
        """Explain a refused servo; True to measure it again, False to leave it."""
        self.say(f"  {name} refused: {why}.")
        adc = joint(name).adc
        if adc is not None:
            where = f"input A{adc.channel} of the ADS1115 at 0x{adc.address:02x}"
            self.say(f"  {name}'s feedback wire goes to {where}.")
        answer = self.ask("bad_feedback", "  r: measure it again, s: leave it, q: stop", "rsq", "r")
        if answer == "q":
            raise Aborted(f"stopped: {name} refused")
        return answer == "r"

    # -- review ---------------------------------------------------------------------------

    def _review_and_save_servos(self) -> int:
        if not self.servos:
            self.say("No servo was measured; nothing to save.")
            return 1
        self.say("")
        self.say("== Review ==")
        self.say("\n".join(describe_servos(self.servos)), wrap=False)
        self._describe_lines()
        self.say(
            f"Robot time: {self.robot_time_s:.0f} s for {len(self.servos)} servo(s); fit {self.fit_s:.0f} s."
        )
        if self.ask("save", f"Save to {self.session.info['path']}?", "yn", "y") != "y":
            self.say("Not saved; the stored calibration is as it was.")
            return 1
        stored = self.calibration
        joints = {name: refined_joint(j, self.lines[name]) if name in self.lines else j
                  for name, j in stored.joints.items()}  # fmt: skip
        record = dataclasses.replace(
            stored, created=_now(), joints=joints, servos={**stored.servos, **self.servos}
        )
        result = self.session.op("save", record=_as_json(record))
        self.say(
            f"Saved {result['path']}. 'plend run --servo-model {result['path']}' simulates these servos."
        )
        return 0

    def _describe_lines(self) -> None:
        """What saving does to each measured joint's feedback line (the sweep's read the
        angle the servo was sent; the refined one reads where its model puts the link)."""
        if not self.lines:
            return
        self.say("Feedback lines refined from the servos (rms from the model's link angles, before->after):")
        for name, line in self.lines.items():
            if line.refused:
                self.say(f"  {name:<20} kept as it was: {line.refused}", wrap=False)
            else:
                change = describe_refinement(line.scale, line.shift_deg)
                self.say(
                    f"  {name:<20} {change} ({line.before_deg:.2f} -> {line.after_deg:.2f} deg over "
                    f"{line.span_deg:.0f} deg)",
                    wrap=False,
                )


def _stored(info: dict[str, Any]) -> CalibrationRecord:
    if info.get("problem"):
        raise WizardError(f"the stored calibration is not usable: {info['problem']}")
    if info.get("stored") is None:
        raise WizardError(
            "the robot is not calibrated: run 'plenctl calibrate' first, then measure its servos"
        )
    return from_json(info["stored"])


def _as_json(record: CalibrationRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def run(link: Link, operator: Operator, options: Options, out: TextIO = sys.stdout) -> int:
    """Run one servo identification on the daemon behind ``link``; the exit code.

    The session always ends: on any exit the daemon is asked to leave calibration mode
    (and it does so by itself if this process dies and the connection drops).
    """
    wizard = identify(link, operator, options, out)
    return wizard.exit_code


def split_recordings(
    recordings: dict[str, Recording], substeps: int, frame_s: float | None
) -> tuple[list[Run], list[str], list[np.ndarray]]:
    """Every joint's runs in one list (a joint's two runs side by side), each run's joint,
    and each run's raw feedback codes."""
    runs, owners, codes = [], [], []
    for name, recording in recordings.items():
        for run, raw in zip(recording.split(substeps, frame_s), recording.split_codes(), strict=True):
            runs.append(run)
            owners.append(name)
            codes.append(raw)
    return runs, owners, codes


def repeats(count: int) -> list[int]:
    """For each of ``count`` runs split by :func:`split_recordings`, its repeat: the other
    run of its joint (fitted with it as one servo)."""
    return [i + 1 if i % 2 == 0 else i - 1 for i in range(count)]


def identify(link: Link, operator: Operator, options: Options, out: TextIO = sys.stdout) -> ServoWizard:
    """Like :func:`run`, but the wizard itself (its results, its truths on a simulated
    robot) comes back, with ``exit_code`` set."""
    session = Session(link)
    wizard = ServoWizard(session, operator, out, options)
    try:
        if isinstance(operator, KeyboardOperator):
            with operator:
                wizard.exit_code = wizard.run()
        else:
            wizard.exit_code = wizard.run()
    except (Aborted, KeyboardInterrupt) as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        out.write(f"\n{why}: servos relaxed, nothing saved.\n")
        wizard.exit_code = 130 if isinstance(exc, KeyboardInterrupt) else 1
    except ConnectionLostError:
        out.write("\nThe daemon went away: nothing saved.\n")
        raise
    finally:
        try:
            if session.info:
                link.request("calibrate_end")
        except PlendError:
            pass  # the daemon ends the session when the connection drops anyway
    return wizard
