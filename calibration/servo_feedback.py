"""A joint's feedback line refined from its identified servo.

The calibration wizard fits each joint's feedback line (ADC code against angle) to a slow
sweep up and down, against the angle it *commanded*. The potentiometer reads the link,
which is not where it was commanded: it sits at one side of its gears' play, the side its
load pulls it to, and where the load turns over inside the sweep the link crosses the
play, so the line's slope takes a share of the play (1-2 % on a knee), and its offset is
off by up to half the play and dead band (where the jog that set the horn left the link).

Servo identification measures exactly that: its fitted model (dead band, lag, motor,
play, load and friction; :mod:`calibration.servo_replay`) says where the link was at every
tick of the excitation. So the runs' raw codes are regressed against the model's link
angles (the replay of what was commanded), and that line replaces the sweep's: the
feedback then reads the angle of the link as the simulation, driven by the same commands
through the same model, has it. Only readings where the target had been still for a few
ticks are regressed: the link has settled at the side of its play that the model gives
it. The excitation spans up to 40 deg (its fast step out and back, held at both ends),
around where the joint rests. A line is only replaced when the runs span enough angle to
fix a slope and the change is one a sweep can be off by; else the sweep's line stays, and
the wizard says why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from calibration.servo_id import FEEDBACK_SCALE, SKIP_S, Run, RunFit
from calibration.servo_replay import replay
from plend.model.servo_map import JointCalibration

SETTLED_TICKS = 5  # the readings regressed: the target still this long (83 ms at 60 Hz)
MIN_SPAN_DEG = 15.0  # less than this and a slope is not known well enough to replace the sweep's
MAX_SCALE_CHANGE = FEEDBACK_SCALE[1] - 1.0  # a sweep's slope is this good (the fit allows as much)
MAX_SHIFT_DEG = 5.0  # its offset: within the play and dead band (up to 3.5 deg together)


@dataclass(frozen=True)
class LineRefinement:
    """A refined feedback line and what it changes.

    Attributes:
        code_at_zero, codes_per_rad: the refined line (``code = code_at_zero +
            codes_per_rad * angle``).
        scale: its codes per radian over the old line's.
        shift_deg: how much more it reads than the old line where the old line read 0.
        before_deg, after_deg: rms difference of the angles the old and the new line read
            from the model's link angles over the runs.
        span_deg: the range of link angles the runs covered.
        refused: why the line was not replaced (empty when it is).
    """

    code_at_zero: float
    codes_per_rad: float
    scale: float
    shift_deg: float
    before_deg: float
    after_deg: float
    span_deg: float
    refused: str = ""


def link_angles(run: Run, fit: RunFit) -> np.ndarray:
    """The link's angle at the start of every tick of ``run`` as its fitted model replays it."""
    params = np.asarray(fit.params, float)
    if params.shape != (10,):
        raise ValueError("the fit holds no replay parameters")
    return replay(run.sent, run.period_s, run.substeps, params[None], run.frame_s)[:, 0]


def refine_line(
    runs: Sequence[Run], codes: Sequence[np.ndarray], fits: Sequence[RunFit], line: JointCalibration
) -> LineRefinement:
    """The feedback line that reads the model's link angles from the runs' raw codes.

    Args:
        runs: one joint's runs (their ``measured`` NaN where a reading was not fresh).
        codes: each run's raw ADC codes, one per tick.
        fits: each run's fitted servo model (with its replay parameters).
        line: the joint's calibration, whose line read ``measured``.

    Returns:
        The refinement; its ``refused`` says why the old line should stay, if it should.
    """
    link, raw = [], []
    for run, code, fit in zip(runs, codes, fits, strict=True):
        use = np.isfinite(run.measured) & np.isfinite(code) & _settled(run.sent)
        use[: round(SKIP_S / run.period_s)] = False  # the start: the play's side is not known
        link.append(link_angles(run, fit)[use])
        raw.append(np.asarray(code, float)[use])
    angles, values = np.concatenate(link), np.concatenate(raw)
    slope, intercept = (float(v) for v in np.polyfit(angles, values, 1))
    old = (values - line.code_at_zero) / line.codes_per_rad
    new = (values - intercept) / slope
    refinement = LineRefinement(
        code_at_zero=intercept,
        codes_per_rad=slope,
        scale=slope / line.codes_per_rad,
        shift_deg=math.degrees((line.code_at_zero - intercept) / slope),
        before_deg=math.degrees(float(np.sqrt(np.mean((old - angles) ** 2)))),
        after_deg=math.degrees(float(np.sqrt(np.mean((new - angles) ** 2)))),
        span_deg=math.degrees(float(np.ptp(angles))),
    )
    return _checked(refinement)


def _settled(sent: np.ndarray) -> np.ndarray:
    """Ticks whose target has been still for :data:`SETTLED_TICKS`: there the link rests
    where its play and load put it, which the model knows best; in a fast swing a heavy
    link's inertia and limp neighbours matter more than a one-joint model follows."""
    held = np.ones(len(sent), bool)
    for lag in range(1, SETTLED_TICKS + 1):
        held[lag:] &= sent[lag:] == sent[:-lag]
    held[:SETTLED_TICKS] = False
    return held


def _checked(r: LineRefinement) -> LineRefinement:
    why = ""
    if r.span_deg < MIN_SPAN_DEG:
        why = f"its runs spanned {r.span_deg:.0f} deg, under the {MIN_SPAN_DEG:.0f} deg a slope needs"
    elif abs(r.scale - 1.0) > MAX_SCALE_CHANGE:
        why = f"it would change the slope by {100 * (r.scale - 1):+.1f} %, more than a sweep is off by"
    elif abs(r.shift_deg) > MAX_SHIFT_DEG:
        why = f"it would move the reading by {r.shift_deg:+.1f} deg, more than the play explains"
    elif r.after_deg >= r.before_deg:
        why = "it reads the model's link angles no better than the sweep's line"
    return dataclasses.replace(r, refused=why)


def refined_joint(line: JointCalibration, refinement: LineRefinement) -> JointCalibration:
    """``line`` with the refined feedback line (as it was when the refinement was refused)."""
    if refinement.refused:
        return line
    return dataclasses.replace(
        line, code_at_zero=refinement.code_at_zero, codes_per_rad=refinement.codes_per_rad
    )


def change_from_sweep(
    line: JointCalibration, before: tuple[float, float], refinement: LineRefinement
) -> tuple[float, float]:
    """The scale and shift (deg) of the line to be saved from the sweep's, as the servo's
    record keeps them, when ``line`` (in use while the runs were recorded) was itself
    ``before`` (scale, shift) from the sweep's: a joint identified again refines the line
    refined the last time, and its record still tells how far it is from the sweep's."""
    scale, shift_deg = before
    if refinement.refused:
        return scale, shift_deg
    swept_at_zero = line.code_at_zero + line.codes_per_rad * math.radians(shift_deg)
    shift = math.degrees((swept_at_zero - refinement.code_at_zero) / refinement.codes_per_rad)
    return scale * refinement.scale, shift
