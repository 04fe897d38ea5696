"""From a joint's recorded excitation to its servo record, or a refusal that says what to check.

Before anything is fitted the feedback is checked as the calibration wizard checks it (a
dead, noisy or reversed wire gets the same words); after the fit a joint is refused when
it hardly moved, when its delay is over :data:`MAX_DELAY_MS`, or when the model does not
describe its response (:data:`MAX_FIT_ERROR_DEG`). The two runs' results are averaged and
their differences kept as the repeatability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.fit import (
    MAX_NOISE_DEG,
    FeedbackError,
    _refuse_backwards,
    _refuse_constant,
    _refuse_noisy,
)
from calibration.servo_id import Run, RunFit
from calibration.store import MIN_CODES_PER_RAD, SERVO_MODEL_KEYS, ServoRecord

MAX_DELAY_MS = 150.0
MAX_FIT_ERROR_DEG = 0.5  # rms: the model does not describe a response this far off
MIN_TRAVEL = 0.3  # of the commanded travel, at least, in the feedback
SETTLED_TICKS = 4  # a target held this long: its feedback readings show the noise


class ServoRefusedError(FeedbackError):
    """A joint's servo cannot be identified from its recording; the message says what to check."""


@dataclass(frozen=True)
class Recording:
    """One joint's excitation as the daemon recorded it (``calibrate state``'s ``identify``).

    Attributes:
        period_s: the loop's period; runs: equal runs in it.
        sent: the angle each tick's pulse commanded (rad).
        measured: the feedback angle at the start of each tick (rad; NaN: no reading).
        codes: the raw feedback codes; fresh: whether each tick read the feedback anew.
        truth: per run, a simulated robot's true servo (None on a real one).
    """

    period_s: float
    runs: int
    sent: np.ndarray
    measured: np.ndarray
    codes: np.ndarray
    fresh: np.ndarray
    truth: list[dict[str, float]] | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Recording:
        """From the daemon's reply; raises ServoRefusedError for a malformed one."""
        try:
            arrays = [np.asarray([np.nan if v is None else v for v in state[k]], float)
                      for k in ("sent", "measured", "codes")]  # fmt: skip
            fresh = np.asarray(state["fresh"], bool)
            period, runs = float(state["period_s"]), int(state["runs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ServoRefusedError(f"the daemon's recording is incomplete ({exc})") from None
        if runs < 1 or any(len(a) != len(fresh) for a in arrays) or len(fresh) % runs:
            raise ServoRefusedError("the daemon's recording does not hold whole runs")
        sent, measured, codes = arrays
        return cls(period, runs, sent, measured, codes, fresh, state.get("truth"))

    def split_codes(self) -> list[np.ndarray]:
        """The raw feedback codes of each run, as :meth:`split` splits the ticks."""
        size = len(self.codes) // self.runs
        return [self.codes[r * size : (r + 1) * size] for r in range(self.runs)]

    def split(self, substeps: int, frame_s: float | None) -> list[Run]:
        """The runs to fit; a reading that was not fresh is left out."""
        size = len(self.sent) // self.runs
        measured = np.where(self.fresh, self.measured, np.nan)
        return [
            Run(
                self.sent[r * size : (r + 1) * size],
                measured[r * size : (r + 1) * size],
                self.period_s,
                substeps,
                frame_s,
            )
            for r in range(self.runs)
        ]


def check_feedback(recording: Recording, expected_sign: int | None) -> None:
    """Refuse a dead, noisy or reversed feedback wire, with the wizard's own words.

    Args:
        expected_sign: +1 or -1, which way the codes must run with the joint angle (the
            servo's potentiometer polarity times the joint's direction); None not to check.
    """
    use = recording.fresh & np.isfinite(recording.codes) & np.isfinite(recording.measured)
    sent, codes, measured = recording.sent[use], recording.codes[use], recording.measured[use]
    if len(sent) < 20:
        raise ServoRefusedError("the feedback gave too few readings: check the ADC's wiring and the bus")
    _refuse_constant(np.array([sent.min(), sent.max()]), codes, MIN_CODES_PER_RAD)
    _refuse_noisy(_noise_deg(recording), MAX_NOISE_DEG)
    slope = float(np.polyfit(sent, codes, 1)[0])
    if expected_sign is not None:
        _refuse_backwards(slope, expected_sign)
    travel, commanded = float(np.ptp(measured)), float(np.ptp(sent))
    if travel < MIN_TRAVEL * commanded:
        raise ServoRefusedError(
            f"it hardly moved: its feedback travelled {math.degrees(travel):.1f} deg while it was sent over "
            f"{math.degrees(commanded):.1f} deg: is the servo powered, and its horn tight on the spline?"
        )


def _noise_deg(recording: Recording) -> float:
    """rms noise of the feedback where the target had been still for a while, from second
    differences (which cancel a slow settling) of the readings, robustly."""
    held = np.ones(len(recording.sent), bool)
    for lag in range(1, SETTLED_TICKS + 1):
        held[lag:] &= recording.sent[lag:] == recording.sent[:-lag]
    held[:SETTLED_TICKS] = False
    values = np.where(held & recording.fresh, recording.measured, np.nan)
    d2 = values[2:] - 2 * values[1:-1] + values[:-2]
    d2 = d2[np.isfinite(d2)]
    if len(d2) < 5:
        return 0.0
    return math.degrees(float(np.median(np.abs(d2))) / (0.6745 * math.sqrt(6.0)))


def assess(fits: Sequence[RunFit], rate_hz: float, substeps: int, when: str) -> ServoRecord:
    """The servo record from a joint's fitted runs: their mean, and their differences.

    Raises:
        ServoRefusedError: a run's delay is over :data:`MAX_DELAY_MS`, or the model does not
            fit a run within :data:`MAX_FIT_ERROR_DEG`.
    """
    for fit in fits:
        if fit.delay_s * 1000.0 > MAX_DELAY_MS:
            raise ServoRefusedError(
                f"it answers {fit.delay_s * 1000:.0f} ms after a new pulse, over {MAX_DELAY_MS:.0f} ms: "
                "check the servo's signal wire and its supply (a sagging battery), and that it is a servo "
                "of the robot's kind"
            )
        error = math.degrees(fit.fit_error_rad)
        if error > MAX_FIT_ERROR_DEG:
            raise ServoRefusedError(
                f"its response does not fit a servo's (fit error {error:.2f} deg rms, limit "
                f"{MAX_FIT_ERROR_DEG:g}): the joint may rub, catch its cable or hit a stop while it "
                "moves, or its gears are worn; check that it turns freely by hand"
            )
    values = {key: np.array([_value(f, key) for f in fits]) for key in SERVO_MODEL_KEYS}
    return ServoRecord(
        **{key: round(float(v.mean()), 3) for key, v in values.items()},
        speed_reached=all(f.speed_reached for f in fits),
        fit_error_deg=round(max(math.degrees(f.fit_error_rad) for f in fits), 3),
        spread={key: round(float(np.ptp(v)), 3) for key, v in _each_alone(fits, values).items()},
        rate_hz=float(rate_hz), substeps=int(substeps), identified_at=when,
    )  # fmt: skip


def _each_alone(fits: Sequence[RunFit], values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``values`` with, where the runs were fitted with one shared model, the time
    constant, dead band and backlash that each run fits alone (their repeatability)."""
    if not all(len(f.alone) == 3 for f in fits):
        return values
    alone = np.array([f.alone for f in fits])
    return {
        **values,
        "time_constant_ms": 1000.0 * alone[:, 0],
        "dead_band_deg": np.degrees(alone[:, 1]),
        "backlash_deg": np.degrees(alone[:, 2]),
    }


def _value(fit: RunFit, key: str) -> float:
    return {
        "delay_ms": fit.delay_s * 1000.0,
        "time_constant_ms": fit.time_constant_s * 1000.0,
        "dead_band_deg": math.degrees(fit.dead_band_rad),
        "backlash_deg": math.degrees(fit.backlash_rad),
        "speed_rad_s": fit.speed_rad_s,
    }[key]
