"""A feedback line refined from an identified servo: on a joint whose load turns over
inside the calibration sweep, the sweep's line is off where the joint works, and the
refined one reads the link's angle; a refinement the runs cannot support is refused."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from calibration.fit import fit_sweep
from calibration.servo_excitation import choose_centre, two_runs
from calibration.servo_feedback import (
    MIN_SPAN_DEG,
    LineRefinement,
    change_from_sweep,
    refine_line,
    refined_joint,
)
from calibration.servo_id import Run, RunFit
from calibration.servo_replay import replay
from calibration.store import CALIBRATION_VERSION, SERVO_MODEL_KEYS, CalibrationRecord, ServoRecord
from calibration.wizard import Wizard
from plend.model.servo_map import JointCalibration

KNEE_NAME = "r_knee_r_shin"
PERIOD = 1.0 / 60.0
_D = math.radians
# A knee under its own weight: 2.2 deg of play, a pendulum's load that turns over at
# -20 deg (the link sits at the side of its play nearer that), a weak motor.
KNEE = np.array([0.02, 0.015, _D(0.5), _D(2.2), 8.0, 400.0, 20.0, _D(-20.0), 3.5, 0.0])
TRUE_LINE = (12000.0, -5200.0)  # code at 0 rad, codes per rad: what the potentiometer does
LOW, HIGH = _D(-85.0), _D(15.0)
STAND = _D(-60.0)  # where the joint works, outside the excitation's span


def codes_of(link: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ADC's whole codes for the link's angles, with a little noise."""
    at_zero, per_rad = TRUE_LINE
    return np.round(at_zero + per_rad * link + rng.normal(0.0, 1.5, len(link)))


def swept_line(rng: np.random.Generator) -> JointCalibration:
    """The calibration wizard's line: a slow sweep up and down, fitted against the commanded
    angles (each held 0.6 s, read at the end of the hold)."""
    angles = np.radians(np.arange(-80.0, 15.1, 5.0))
    path = np.concatenate([angles, angles[::-1]])
    sent = np.repeat(path, round(0.6 / PERIOD))
    link = replay(sent, PERIOD, 3, KNEE[None])[:, 0]
    codes = codes_of(link, rng)[round(0.6 / PERIOD) - 1 :: round(0.6 / PERIOD)]
    up, down = codes[: len(angles)], codes[len(angles) :][::-1]
    fit = fit_sweep(angles, up, down)
    return JointCalibration(code_at_zero=fit.code_at_zero, codes_per_rad=fit.codes_per_rad)


def identified(
    line: JointCalibration, low: float, high: float, rng: np.random.Generator
) -> tuple[list[Run], list[np.ndarray], list[RunFit]]:
    """The two runs of the servo's excitation as the line reads them, their raw codes, and
    the servo's fitted model (here the true one: the fit itself is tested on its own)."""
    sent = two_runs(choose_centre(_D(-20.0), low, high), low, high, PERIOD, 20.0)
    half = len(sent) // 2
    runs: list[Run] = []
    codes: list[np.ndarray] = []
    fits: list[RunFit] = []
    for part in (sent[:half], sent[half:]):
        raw = codes_of(replay(part, PERIOD, 3, KNEE[None])[:, 0], rng)
        runs.append(Run(part, (raw - line.code_at_zero) / line.codes_per_rad, PERIOD, 3))
        codes.append(raw)
        fits.append(RunFit(0.02, 0.015, _D(0.5), _D(2.2), 8.0, True, 0.001, 0.0, (), params=tuple(KNEE)))
    return runs, codes, fits


def reading_error_deg(line: JointCalibration, angle: float) -> float:
    """What ``line`` reads at the link's true ``angle``, less that angle."""
    code = TRUE_LINE[0] + TRUE_LINE[1] * angle
    return math.degrees((code - line.code_at_zero) / line.codes_per_rad - angle)


def test_the_refined_line_reads_the_link_where_the_swept_line_does_not() -> None:
    rng = np.random.default_rng(3)
    swept = swept_line(rng)
    # The load turns over inside the sweep: its line is too shallow, off by a degree where
    # the joint works.
    assert abs(swept.codes_per_rad / TRUE_LINE[1] - 1.0) > 0.01
    assert abs(reading_error_deg(swept, STAND)) > 0.7
    refinement = refine_line(*identified(swept, LOW + _D(3), HIGH - _D(3), rng), swept)
    assert not refinement.refused
    refined = refined_joint(swept, refinement)
    assert refined.codes_per_rad / TRUE_LINE[1] == pytest.approx(1.0, abs=0.003)
    for angle in (STAND, _D(-20.0), _D(0.0)):
        assert abs(reading_error_deg(refined, angle)) < 0.15
    assert refinement.after_deg < refinement.before_deg
    assert refinement.scale == pytest.approx(refined.codes_per_rad / swept.codes_per_rad)
    # The shift is what the new line reads where the old one read 0.
    assert refinement.shift_deg == pytest.approx(
        math.degrees((swept.code_at_zero - refined.code_at_zero) / refined.codes_per_rad)
    )
    assert refined.offset_deg == swept.offset_deg and refined.direction == swept.direction


def test_runs_too_narrow_to_fix_a_slope_leave_the_line_as_swept() -> None:
    rng = np.random.default_rng(5)
    swept = swept_line(rng)
    narrow = _D(MIN_SPAN_DEG * 0.45)
    refinement = refine_line(*identified(swept, _D(-20.0) - narrow, _D(-20.0) + narrow, rng), swept)
    assert "under the 15 deg a slope needs" in refinement.refused
    assert refined_joint(swept, refinement) is swept


def test_a_refinement_further_than_a_sweep_can_be_off_is_refused() -> None:
    rng = np.random.default_rng(9)
    swept = swept_line(rng)
    wrong = JointCalibration(code_at_zero=swept.code_at_zero, codes_per_rad=swept.codes_per_rad * 1.2)
    refinement = refine_line(*identified(wrong, LOW + _D(3), HIGH - _D(3), rng), wrong)
    assert "more than a sweep is off by" in refinement.refused
    assert refined_joint(wrong, refinement) is wrong


def test_a_joint_swept_again_says_its_line_is_the_sweeps_once_more() -> None:
    servo = ServoRecord(
        delay_ms=24.0, time_constant_ms=12.0, dead_band_deg=0.6, backlash_deg=2.2, speed_rad_s=9.0,
        speed_reached=True, fit_error_deg=0.1, spread=dict.fromkeys(SERVO_MODEL_KEYS, 0.0), rate_hz=60.0,
        substeps=3, identified_at="2026-01-01T00:00:00+00:00", feedback_scale=1.017, feedback_shift_deg=-0.4,
    )  # fmt: skip
    other = "l_knee_l_shin"
    stored = CalibrationRecord(
        CALIBRATION_VERSION,
        "plen-01",
        "2026-01-01T00:00:00+00:00",
        {},
        servos={KNEE_NAME: servo, other: servo},
    )
    wizard = SimpleNamespace(stored=stored, results={KNEE_NAME: JointCalibration()})
    kept = Wizard._servos_kept(wizard)  # type: ignore[arg-type]
    assert (kept[KNEE_NAME].feedback_scale, kept[KNEE_NAME].feedback_shift_deg) == (1.0, 0.0)
    assert kept[KNEE_NAME].time_constant_ms == 12.0, "the servo's dynamics stay its own"
    assert kept[other] == servo, "a joint not swept keeps its refined line"


def test_a_joint_identified_again_records_its_line_from_the_sweeps() -> None:
    swept = JointCalibration(code_at_zero=12000.0, codes_per_rad=-5100.0)
    first = JointCalibration(code_at_zero=12010.0, codes_per_rad=-5180.0)
    second = JointCalibration(code_at_zero=12004.0, codes_per_rad=-5200.0)

    def step(old: JointCalibration, new: JointCalibration) -> LineRefinement:
        shift = math.degrees((old.code_at_zero - new.code_at_zero) / new.codes_per_rad)
        return LineRefinement(new.code_at_zero, new.codes_per_rad, new.codes_per_rad / old.codes_per_rad,
                              shift, 0.2, 0.1, 40.0)  # fmt: skip

    once = change_from_sweep(swept, (1.0, 0.0), step(swept, first))
    assert once == pytest.approx((step(swept, first).scale, step(swept, first).shift_deg))
    twice = change_from_sweep(first, once, step(first, second))
    direct = step(swept, second)
    assert twice == pytest.approx((direct.scale, direct.shift_deg))
    refused = dataclasses.replace(step(first, second), refused="no")
    assert change_from_sweep(first, once, refused) == once, "a line kept is as far from the sweep's"
