"""Balance feedback under the sine gait, from the IMU.

The sine gait alone is open loop: a robot that is not the model (soles of different
heights or with rounded edges, a tilted floor, a centre of mass further back, servos that
lag) rocks, tips and falls. :class:`Balance` reads the IMU every tick and does five
things, each small and each with its own gain (:class:`BalanceGains`):

1. **Ankle damping.** Both ankle roll joints turn against the torso's roll rate (and the
   ankle pitch joints against its pitch rate), which damps rocking on the soles' edges.
2. **Levelling.** The mean roll (roll low-passed over ``mean_tau_s``) is integrated into
   a leg-length difference: the gait carries one sole higher and the other lower until
   the torso stands level (soles of different heights, a floor tilted sideways), and
   stands taller by a quarter of it so the shorter leg's knee keeps room to lift.
3. **Leaning.** The mean pitch is integrated the same way into how far the torso is
   carried ahead of (or behind) the feet, so a robot that tips backwards walks with its
   weight further forward. Behind the feet it goes only ``max_lean_back_m``: a floor
   tilted down ahead pitches the robot forward wherever its weight is, and a lean that
   followed it all the way put the weight over the heels. The sine gait also carries the
   torso ``lean_ahead_m`` ahead of the feet from the start: most robots that fall on the
   suite go over backwards. The lean adds to it up to ``max_lean_m`` in all.
4. **Step timing.** Rocking (the mean distance of roll from its 2 s mean) beyond
   ``rock_deg`` lengthens the double support of every step (the gait's duty), in
   proportion, while the swing keeps its time, so the robot spends longer on both feet
   and steps more slowly; the walk starts with ``start_duty`` extra and gives it back at
   ``duty_decay`` per second.
5. **Settling.** The first step waits until the mean roll is within ``settle_deg`` (at
   most ``settle_max_s``), so a robot that stands tilted is levelled before it lifts a foot.
6. **Recovery.** A tilt (from roll and pitch) past ``recover_deg`` stops the steps where
   they are and brings both feet down to the stand pose (:attr:`Balance.recovering`); the
   walk goes on once the tilt has stayed under half of it for ``recover_s`` (or under
   it, steadily, for :data:`STEADY_FACTOR` times that: a robot that stands a little
   tilted would otherwise stand for good). A torso
   pitched back past ``recover_back_deg`` stops the steps the same way, sooner: falling
   over backwards is how most robots on the suite went down. Standing still is not a fall.

For the sine gait the ankle pitch joints also turn against the pitch rate
(``pitch_rate_gain``), which damps a robot rocking back onto its heels on rounded soles.

:data:`SINE_GAINS` is the sine gait's tuning; ``BalanceGains()`` keeps the values the
balanced gait had when residual policies first learnt on it, and :func:`trained_gains`
gives a policy's gait those (or the ones its metadata records).

The gait stays a pure function of phase and parameters: the balance changes four
parameters (level, crouch, lean, duty and with it the cycle time) and adds joint offsets
to the ankles. Nothing here clamps
to the joint table: the targets pass the safety filter, which clamps and counts any
that would pass a joint limit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaits.sine import GaitParams
from plend.core.errors import PlendError
from plend.model.robot import LEG_JOINT_NAMES, NUM_JOINTS, joint
from plend.model.sensors import Sensors

MAX_DT_S = 0.1  # a longer gap between readings (a stall) counts as this much
ROCK_REFERENCE_TAU_S = 2.0  # rocking is measured from the roll averaged this long...
ROCK_TAU_S = 1.0  # ...and averaged itself this long
STEADY_FACTOR = 3.0  # a recovery also ends after this many recover_s under the limits
CROUCH_PER_LEVEL = 0.25


class BalanceError(PlendError, ValueError):
    """A balance gain is out of its range."""


# name: (lower, upper, meaning) of every gain; the config's [gait] keys use the same names.
GAIN_RANGES: dict[str, tuple[float, float, str]] = {
    "roll_rate_gain": (0.0, 0.3, "ankle roll (rad) per rad/s of roll rate"),
    "pitch_rate_gain": (0.0, 0.3, "ankle pitch (rad) per rad/s of pitch rate"),
    "pitch_gain": (0.0, 2.0, "ankle pitch (rad) per rad of mean pitch beyond lean_deadband_deg"),
    "level_gain": (0.0, 0.5, "leg-length difference (m/s) per rad of mean roll"),
    "max_level_m": (0.0, 0.012, "largest leg-length difference"),
    "lean_gain": (0.0, 0.5, "lean (m/s) per rad of mean pitch"),
    "max_lean_m": (0.0, 0.02, "largest lean, forward or back"),
    "max_lean_back_m": (0.0, 0.02, "largest lean back (the torso carried behind the feet)"),
    "lean_ahead_m": (-0.01, 0.01, "the torso carried this far ahead of the feet besides the lean"),
    "lean_deadband_deg": (0.0, 10.0, "mean pitch within this leaves the lean alone"),
    "mean_tau_s": (0.05, 5.0, "time constant of the mean roll and pitch"),
    "rock_deg": (0.5, 20.0, "rocking beyond this lengthens double support"),
    "duty_gain": (0.0, 20.0, "extra duty per rad of rocking beyond rock_deg"),
    "start_duty": (0.0, 0.2, "extra duty at the start of a walk"),
    "duty_decay": (0.0, 1.0, "extra duty given back per second while steady"),
    "max_duty": (0.5, 0.85, "longest double support (fraction of the cycle on the ground)"),
    "settle_deg": (0.0, 20.0, "first step once the mean roll is within this"),
    "settle_max_s": (0.0, 10.0, "...or after this long"),
    "max_correction_rad": (0.0, 0.5, "largest ankle offset"),
    "recover_deg": (0.0, 45.0, "a tilt beyond this stops the steps and stands (0: never)"),
    "recover_back_deg": (0.0, 45.0, "a torso pitched back beyond this also stops the steps (0: off)"),
    "recover_s": (0.1, 10.0, "steps again after this long under half recover_deg (3x this long under it)"),
}


@dataclass(frozen=True)
class BalanceGains:
    """How strongly each part of the balance acts (see the module docstring and
    :data:`GAIN_RANGES`). The defaults were tuned on the robustness suite."""

    roll_rate_gain: float = 0.05
    pitch_rate_gain: float = 0.0
    pitch_gain: float = 0.0
    level_gain: float = 0.05
    max_level_m: float = 0.008
    lean_gain: float = 0.15
    max_lean_m: float = 0.01
    max_lean_back_m: float = 0.01
    lean_ahead_m: float = 0.0
    lean_deadband_deg: float = 2.0
    mean_tau_s: float = 0.3
    rock_deg: float = 2.0
    duty_gain: float = 3.0
    start_duty: float = 0.1
    duty_decay: float = 0.03
    max_duty: float = 0.72
    settle_deg: float = 1.5
    settle_max_s: float = 2.0
    max_correction_rad: float = 0.3
    recover_deg: float = 0.0
    recover_back_deg: float = 0.0
    recover_s: float = 1.0

    def __post_init__(self) -> None:
        for name, (lo, hi, meaning) in GAIN_RANGES.items():
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not lo <= value <= hi:
                raise BalanceError(
                    f"balance gain {name} = {value!r} is out of range [{lo}, {hi}] ({meaning})"
                )


# The sine gait's own tuning (the [gait] defaults). BalanceGains() keeps the values the
# balanced gait had when policies first learnt on it: a policy walks on what it learnt on.
SINE_GAINS = BalanceGains(
    pitch_rate_gain=0.05, recover_deg=20.0, recover_back_deg=10.0, max_lean_back_m=0.002, lean_ahead_m=0.004
)
_ORIGINAL = BalanceGains()
RETUNED = tuple(n for n in GAIN_RANGES if getattr(SINE_GAINS, n) != getattr(_ORIGINAL, n))
"""The gains whose sine-gait default differs from what policies trained with."""


def trained_gains(gains: BalanceGains, recorded: Mapping[str, float] | None = None) -> BalanceGains:
    """``gains`` for the gait under a policy: every retuned gain (:data:`RETUNED`) at the
    value ``recorded`` in the policy's metadata, or else the original default."""
    recorded = recorded or {}
    unknown = sorted(set(recorded) - set(GAIN_RANGES))
    if unknown:
        raise BalanceError(f"unknown balance gain(s) {', '.join(unknown)}; known: {', '.join(GAIN_RANGES)}")
    kept = {name: getattr(_ORIGINAL, name) for name in RETUNED}
    kept.update(recorded)
    return dataclasses.replace(gains, **kept)


def _joints(role: str, axis: int) -> tuple[list[int], np.ndarray]:
    """Both legs' joints of ``role``, and the sign that turns a rotation about the torso's
    ``axis`` (0: x, 1: y) into each joint's own angle."""
    found = [joint(n) for side in ("right", "left") for n in LEG_JOINT_NAMES[side]]
    chosen = [j for j in found if j.role.endswith(role)]
    return [j.index for j in chosen], np.array([j.axis[axis] for j in chosen])


_ANKLE_ROLL = _joints("ankle roll", 0)
_ANKLE_PITCH = _joints("ankle pitch", 1)


def _low_pass(value: float, sample: float, dt: float, tau: float) -> float:
    return value + min(1.0, dt / tau) * (sample - value)


class Balance:
    """IMU feedback for one walk; :meth:`observe` once a tick, then :meth:`shape` the
    gait's parameters and add :attr:`offsets` to its joint targets."""

    def __init__(self, gains: BalanceGains | None = None):
        self.gains = gains or BalanceGains()
        self.mean_roll = self.mean_pitch = 0.0
        self._rock_reference = 0.0
        self.level = self.lean = 0.0
        self.rock = 0.0
        self.extra_duty = self._start = self.gains.start_duty
        self.offsets = np.zeros(NUM_JOINTS)
        self.ready = False
        self._waited = 0.0
        self._stamp: float | None = None
        self._ankle = (0.0, 0.0)
        self._tipping = 0.0
        self.recovering = False
        self.recoveries = 0
        self.recovery_cause = ""  # what stopped the steps last: "tilt" or "pitched back"
        self._calm = self._steady = 0.0

    def observe(self, sensors: Sensors | None) -> None:
        """Take this tick's IMU reading (None: no sensors, nothing changes)."""
        if sensors is None:
            return
        last, self._stamp = self._stamp, sensors.stamp
        dt = 0.0 if last is None else min(MAX_DT_S, max(0.0, sensors.stamp - last))
        if dt <= 0.0:
            return
        roll, pitch, _ = sensors.imu.euler
        self._follow_means(roll, pitch, dt)
        self._adapt_duty(dt)
        self._damp(sensors.imu.gyro[0], sensors.imu.gyro[1])
        self._settle(dt)
        self._watch_tilt(roll, pitch, dt)

    def _follow_means(self, roll: float, pitch: float, dt: float) -> None:
        g = self.gains
        self.mean_roll = _low_pass(self.mean_roll, roll, dt, g.mean_tau_s)
        self.mean_pitch = _low_pass(self.mean_pitch, pitch, dt, g.mean_tau_s)
        self._rock_reference = _low_pass(self._rock_reference, roll, dt, ROCK_REFERENCE_TAU_S)
        self.rock = _low_pass(self.rock, abs(roll - self._rock_reference), dt, ROCK_TAU_S)
        # A torso rolled left (negative) wants the left leg longer: the right sole higher.
        self.level = _clip(self.level - g.level_gain * self.mean_roll * dt, g.max_level_m)
        # A torso pitched back (negative) wants the feet further back: more lean. A walk
        # pitches a little by itself, and the IMU has a bias: only beyond a dead band.
        self._tipping = _dead_band(self.mean_pitch, math.radians(g.lean_deadband_deg))
        lean = self.lean - g.lean_gain * self._tipping * dt
        # The lean ahead counts toward max_lean_m: an IMU that reads the pitch back winds
        # the lean up to its limit, and 14 mm ahead carried world 24 of the suite 0.36 m aside.
        ahead = g.max_lean_m - max(0.0, g.lean_ahead_m)
        self.lean = max(-min(g.max_lean_m, g.max_lean_back_m), min(ahead, lean))

    def _adapt_duty(self, dt: float) -> None:
        g = self.gains
        self._start = max(0.0, self._start - g.duty_decay * dt)
        excess = max(0.0, self.rock - math.radians(g.rock_deg))
        self.extra_duty = min(self._start + g.duty_gain * excess, g.max_duty)

    def _damp(self, roll_rate: float, pitch_rate: float) -> None:
        g = self.gains
        roll = _clip(g.roll_rate_gain * roll_rate, g.max_correction_rad)
        pitch = _clip(g.pitch_rate_gain * pitch_rate + g.pitch_gain * self._tipping, g.max_correction_rad)
        offsets = np.zeros(NUM_JOINTS)
        for (rows, signs), angle in ((_ANKLE_ROLL, roll), (_ANKLE_PITCH, pitch)):
            offsets[rows] = signs * angle
        self.offsets = offsets
        self._ankle = (roll, pitch)

    def _settle(self, dt: float) -> None:
        if self.ready:
            return
        self._waited += dt
        level = abs(self.mean_roll) <= math.radians(self.gains.settle_deg)
        # The mean needs a time constant to mean anything.
        self.ready = (level and self._waited >= self.gains.mean_tau_s) or (
            self._waited >= self.gains.settle_max_s
        )

    def _watch_tilt(self, roll: float, pitch: float, dt: float) -> None:
        """Recovery: a tilt past ``recover_deg`` (or, with ``recover_back_deg``, a torso
        pitched back past that) stops the steps until both have stayed under half of
        their limit for ``recover_s``, or under the limits themselves for
        ``STEADY_FACTOR`` x ``recover_s``."""
        limit = math.radians(self.gains.recover_deg)
        if limit <= 0.0:
            return
        tilt = math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch))))
        back = math.radians(self.gains.recover_back_deg) or math.inf
        if tilt > limit or -pitch > back:
            if not self.recovering:
                self.recoveries += 1
                self.recovery_cause = "tilt" if tilt > limit else "pitched back"
            self.recovering, self._calm, self._steady = True, 0.0, 0.0
        elif self.recovering:
            calm = tilt < 0.5 * limit and -pitch < 0.5 * back
            self._calm = self._calm + dt if calm else 0.0
            # A robot that stands steadily between half the limit and the limit (some
            # stand a few degrees back on their own) would otherwise stand for good.
            self._steady += dt
            self.recovering = (
                self._calm < self.gains.recover_s and self._steady < STEADY_FACTOR * self.gains.recover_s
            )

    def _duty(self, params: GaitParams) -> float:
        return min(max(params.duty, self.gains.max_duty), params.duty + self.extra_duty)

    def period_s(self, params: GaitParams) -> float:
        """The cycle time :meth:`shape` gives ``params``: the time on both feet grows, the
        swing keeps its time."""
        return params.period_s * (1.0 - params.duty) / (1.0 - self._duty(params))

    def shape(self, params: GaitParams) -> GaitParams:
        """``params`` with the levelling, the lean and the step timing applied."""
        duty = self._duty(params)
        period = self.period_s(params)
        lean = _clip(params.lean_m + self.gains.lean_ahead_m + self.lean, 0.02)
        # The shortened leg would fold its knee past the limit at the top of its swing:
        # stand a little taller, sharing the difference between the legs.
        crouch = max(0.004, params.crouch_m - CROUCH_PER_LEVEL * abs(self.level))
        return dataclasses.replace(
            params, level_m=self.level, lean_m=lean, duty=duty, period_s=period, crouch_m=crouch
        )

    def report(self) -> dict[str, Any]:
        """What the balance is doing, in degrees and millimetres."""
        return {
            "ready": self.ready,
            "ankle_roll_deg": round(math.degrees(self._ankle[0]), 2),
            "ankle_pitch_deg": round(math.degrees(self._ankle[1]), 2),
            "level_mm": round(1000.0 * self.level, 2),
            "lean_mm": round(1000.0 * self.lean, 2),
            "extra_duty": round(self.extra_duty, 3),
            "mean_roll_deg": round(math.degrees(self.mean_roll), 2),
            "mean_pitch_deg": round(math.degrees(self.mean_pitch), 2),
            "rocking_deg": round(math.degrees(self.rock), 2),
            "recovering": self.recovering,
            "recoveries": self.recoveries,
            "recovery_cause": self.recovery_cause,
        }


def _dead_band(value: float, band: float) -> float:
    return value - band if value > band else value + band if value < -band else 0.0


def _clip(value: float, limit: float) -> float:
    return float(max(-limit, min(limit, value)))
