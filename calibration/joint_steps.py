"""One joint of the calibration wizard, from its horn to its feedback fit: horn fitting,
finding its zero by jogging, the direction check and the feedback sweep with its fit.
The wizard (calibration.wizard) runs it for each joint and keeps what it measured."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Protocol

from calibration.fit import (
    FeedbackError,
    FeedbackFit,
    direction_from_check,
    fit_sweep,
    horn_offset_from_zero,
)
from calibration.operators import JOG_KEYS, JogView, KnowsZeros, Operator
from calibration.poses import positive_move, reference_pose
from calibration.session import MOVE_TIMEOUT_S, Aborted, Blocked, Session
from calibration.store import JointRecord
from plend.model.robot import joint

CHECK_DEG = 5.0  # the direction check's move
SWEEP_HALF_RANGE_DEG = 90.0  # the joint's whole safe range: the fit holds where the joint works
SWEEP_POINTS = 13


class Console(Protocol):
    """Where the wizard talks to the person (calibration.wizard.Wizard)."""

    def say(self, text: str = "", wrap: bool = True) -> None: ...

    def ask(self, key: str, question: str, choices: str, default: str) -> str: ...

    def live(self, line: str) -> None: ...

    def end_live(self) -> None: ...


def now() -> str:
    """This moment, ISO 8601 in UTC to the second: when a joint or a file was made."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class JointSteps:
    """Calibrates one joint through the daemon's calibration session."""

    def __init__(self, io: Console, session: Session, operator: Operator, joint_info: dict[str, Any]):
        self.io, self.session, self.operator, self.joint_info = io, session, operator, joint_info

    def calibrate(self, name: str, n: int, total: int, fit_horns: bool) -> JointRecord | None:
        """Joint ``name`` (the ``n``-th of ``total``) measured; None when it was skipped."""
        j = joint(name)
        info = self.joint_info[name]
        working = info["working"]
        self.io.say("")
        self.io.say(f"== Joint {n} of {total}: {j.role} ({name}) ==")
        self.io.say(f"Reference pose: {reference_pose(j)}.")
        if fit_horns:
            self._fit_horn(name, working)
        known = self.operator.known(name) if isinstance(self.operator, KnowsZeros) else None
        if known is not None:
            offset, direction = known["offset_deg"], known["direction"]
            self.io.say(
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
                self.io.say(f"  {exc}.\n  {name} skipped: it is not calibrated and nothing of it is kept.")
                return None
        fit = self._feedback(name, direction)
        if fit is None:
            return None
        return JointRecord(
            offset_deg=round(offset, 3), direction=direction, pulse_min_us=working["pulse_min_us"],
            pulse_max_us=working["pulse_max_us"], code_at_zero=round(fit.code_at_zero, 2),
            codes_per_rad=round(fit.codes_per_rad, 3), fit_error_deg=round(fit.fit_error_deg, 3),
            hysteresis_deg=round(fit.hysteresis_deg, 3), range_rad=fit.range_rad, calibrated_at=now(),
        )  # fmt: skip

    def _fit_horn(self, name: str, working: dict[str, Any]) -> None:
        self.io.say("Horn fitting: the servo turns to its neutral position (the middle of its travel).")
        self.session.op("set", joint=name, offset_deg=0.0)
        state = self.session.move(name, 0.0)
        self.io.say(
            f"  Neutral pulse {state['pulse_us']:.0f} us. Attach the horn and the link on the spline tooth "
            "that puts the link nearest its reference pose, then fit the horn screw."
        )
        answer = self.io.ask("horn_done", "  Horn fitted?", "yq", "y")
        if answer == "q":
            raise Aborted("stopped at horn fitting")

    def _find_zero(self, name: str, working: dict[str, Any]) -> float:
        self.io.say(
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
                self.io.end_live()
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
        self.io.end_live()
        offset = horn_offset_from_zero(
            state["pulse_us"], 0.0, working["pulse_min_us"], working["pulse_max_us"], working["direction"]
        )
        self.session.op("set", joint=name, offset_deg=offset)
        self.io.say(f"  Zero at {state['pulse_us']:.0f} us: horn offset {offset:+.1f} deg.")
        return offset

    def _blocked(self, exc: Blocked, wanted_deg: float) -> tuple[float, int, dict[str, Any]]:
        """Say why the joint stopped; the jog now stands where the daemon put it back."""
        self._bell(f"{exc}; jog the other way, or stop (q) and check the joint.")
        here = math.degrees(exc.state.get("goal", 0.0))
        return here, 1 if wanted_deg > here else -1, exc.state

    def _show_jog(self, view: JogView) -> None:
        self.io.live(f"  jog {view.jog_deg:+6.1f} deg   pulse {view.pulse_us:6.0f} us")

    def _bell(self, text: str) -> None:
        self.io.end_live()
        self.io.say(f"\a  {text}")

    def _check_direction(self, name: str, assumed: int) -> int:
        j = joint(name)
        self.io.say(f"Direction: the joint moves {CHECK_DEG:.0f} deg in its positive direction, then back.")
        self.io.say(f"  If the direction is right, {positive_move(j)}.")
        self.session.move(name, math.radians(CHECK_DEG))
        answer = self.io.ask("direction", f"  Did it move like that ({positive_move(j)})?", "ynq", "y")
        if answer == "q":
            raise Aborted("stopped at the direction check")
        direction = direction_from_check(assumed, answer == "y")
        self.session.op("set", joint=name, direction=direction, confirmed=True)
        self.session.move(name, 0.0)
        self.io.say(
            f"  Direction {direction:+d}{' (the servo is mounted mirrored)' if direction != assumed else ''}."
        )
        return direction

    def _feedback(self, name: str, direction: int) -> FeedbackFit | None:
        info = self.joint_info[name]
        margin = math.radians(self.session.info["limits"]["safe_margin_deg"])
        half = math.radians(SWEEP_HALF_RANGE_DEG)
        low, high = max(info["lower"] + margin, -half), min(info["upper"] - margin, half)
        expected = self.session.info["feedback_polarity"] * direction
        while True:
            self.io.say(
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
            self.io.end_live()
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
            self.io.say(
                f"  Fit: {fit.codes_per_rad:+.0f} codes/rad, error {fit.fit_error_deg:.2f} deg, hysteresis "
                f"{fit.hysteresis_deg:.2f} deg, noise {fit.noise_deg:.2f} deg over "
                f"{math.degrees(fit.range_rad[0]):+.0f}..{math.degrees(fit.range_rad[1]):+.0f} deg."
            )
            self.session.op("set", joint=name, code_at_zero=fit.code_at_zero, codes_per_rad=fit.codes_per_rad)
            state = self.session.move(name, 0.0)
            measured = state.get("measured")
            if measured is not None:
                self.io.say(f"  At its zero the feedback now reads {math.degrees(measured):+.2f} deg.")
            return fit

    def _refused(self, name: str, why: str) -> bool:
        """Explain a refused feedback; True to sweep again, False to skip the joint."""
        self.io.say(f"  Feedback refused: {why}.")
        adc = joint(name).adc
        if adc is not None:
            where = f"input A{adc.channel} of the ADS1115 at 0x{adc.address:02x}"
            self.io.say(f"  {name}'s feedback wire goes to {where}.")
        answer = self.io.ask("bad_feedback", "  r: sweep again, s: skip this joint, q: stop", "rsq", "r")
        if answer == "r":
            return True
        self.session.op("relax")
        if answer == "s":
            self.io.say(f"  {name} skipped: it is not calibrated and nothing of it is kept.")
            return False
        raise Aborted(f"stopped: bad feedback on {name}")

    def _show_sweep(self, state: dict[str, Any]) -> None:
        sweep = state.get("sweep")
        if sweep:
            done = int(40 * sweep["progress"])
            self.io.live(f"  [{'#' * done}{'.' * (40 - done)}] {100 * sweep['progress']:3.0f}%")
