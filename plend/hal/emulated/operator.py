"""The operator who sees the simulated robot, for the calibration wizard on the emulated
hardware: it jogs each joint to its true zero and judges the direction check by the true
angle, as a person looking at the robot would. Tests and rehearsals use it
(``plenctl calibrate --operator sim``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from calibration.operators import COARSE_DEG, JogView, ScriptedOperator
from calibration.session import WizardError


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

    def watch(self, truth: Callable[[], float | None]) -> None:
        self.truth = truth

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
