"""Calibration mode: the daemon's side of ``plenctl calibrate``.

While the wizard holds the session, this is the running behaviour. Only the wizard's
commands move joints, one joint at a time, slowly, inside calibration-safe limits, and
the loop's safety filter still clamps and slews every target (its limits and speed are
narrowed for the session). A joint not yet zeroed may only move within
:data:`JOG_WINDOW_DEG` of its starting zero, because its true angle is not known yet;
once its zero and direction are confirmed it may move within its joint limits less
:data:`SAFE_MARGIN_DEG`.

The wizard changes the working calibration of a joint as it learns it; the joint is
re-expressed in the new calibration so that its servo does not move. Leaving the mode
(the wizard ends, aborts or disconnects, or the daemon is told to relax or e-stop)
unpowers every joint and restores the stored calibration unless a new one was applied.
Everything here runs on the control thread.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from plend.control.safety import SafetyFilter
from plend.control.servo_recording import ExcitationError, ExcitationRecord, check_targets
from plend.control.stall_guard import (
    FOLLOW_WINDOW_S,
    IDENTIFY_STALL_TRAVEL_DEG,
    STALL_TRAVEL_DEG,
    StallGuard,
    Sweep,
)
from plend.core.errors import PlendError
from plend.hal.base import Calibratable, Sensors, ServoTruth
from plend.model.robot import JOINTS, NUM_JOINTS, joint
from plend.model.servo_map import SERVO_FIELDS, Calibration, angle_to_pulse_us, pulse_us_to_angle

log = logging.getLogger("plend.calibration")

JOG_WINDOW_DEG = 30.0
SAFE_MARGIN_DEG = 3.0
MOVE_SPEED_RAD_S = 0.5  # about 30 deg/s: slow enough to stop a joint by hand
FILTER_SPEED_RAD_S = 1.0  # the safety filter's cap for the session
SETTLE_S = 0.3
SAMPLES = 5
MAX_SWEEP_POINTS = 41
STALL_GRACE_S = 0.2  # servo identification: a joint that has not followed this long is stopped
IDLE_RELAX_S = 120.0
POWER_ON_S = 0.2  # a servo jumps to its first pulse: hold that long before moving on
SETTABLE = set(SERVO_FIELDS)


class CalibrationCommandError(PlendError, ValueError):
    """A calibration command cannot be carried out; the robot stays as it was."""


class JointBlockedError(CalibrationCommandError):
    """The move would push a joint further into what stopped it (socket error "blocked")."""

    error_code = "blocked"


class CalibrationMode:
    """The behaviour that runs while a calibration wizard holds the daemon."""

    name = "calibrate"
    finished = False

    def __init__(
        self,
        hal: Calibratable,
        safety: SafetyFilter,
        limits: tuple[np.ndarray, np.ndarray],
        truth: Callable[[], np.ndarray] | None = None,
    ):
        self.hal = hal
        self.safety = safety
        self.lower, self.upper = (np.asarray(v, float).copy() for v in limits)
        self.truth = truth
        self.stored = hal.calibration
        self.working = dict(hal.calibration.joints)
        self.confirmed: set[int] = set()
        self.applied = False
        self.active: int | None = None
        self.goal = 0.0
        self.target = np.zeros(NUM_JOINTS)
        self.sweep: Sweep | None = None
        self.settled_s = 0.0
        self.guard: StallGuard | None = None
        self._power_on_s = 0.0
        self.blocked: tuple[int, float, float, str] | None = None  # joint, where, which way, why
        self._measured = np.zeros(NUM_JOINTS)
        self._now = 0.0
        self._last_command = 0.0
        self._idle_relaxed = False
        self._closed = False
        self._ops: dict[str, Callable[..., dict[str, Any]]] = {
            "move": self._op_move, "relax": self._op_relax, "set": self._op_set, "sweep": self._op_sweep,
            "state": self._op_state, "imu_offsets": self._op_imu_offsets, "identify": self._op_identify,
        }  # fmt: skip
        self.excitation: ExcitationRecord | None = None  # servo identification's, while it plays
        self._servo_truth = hal.true_servo if isinstance(hal, ServoTruth) else None  # hidden servos
        self._stamps_seen = np.full(NUM_JOINTS, -np.inf)
        self._stalled_ticks = 0
        self._window = max(1, round(FOLLOW_WINDOW_S / safety.period_s))  # the stall guard's, in ticks

    # -- behaviour -----------------------------------------------------------------------

    def start(self, measured: np.ndarray) -> None:
        self._measured = np.asarray(measured, float).copy()
        self.target = self._measured.copy()
        self.safety.override(FILTER_SPEED_RAD_S, {j.index: self.safe_range(j.index) for j in JOINTS})
        log.info("calibration mode: servos relaxed; only the wizard moves joints")

    def update(self, sensors: Sensors, dt: float) -> np.ndarray | None:
        self._now = sensors.stamp
        self._measured = sensors.joint_pos
        if self.active is None:
            return None
        if self._now - self._last_command > IDLE_RELAX_S:
            log.info("calibration: %s relaxed after %.0f s without a command", JOINTS[self.active].name,
                     IDLE_RELAX_S)  # fmt: skip
            self.active, self.sweep, self._idle_relaxed = None, None, True
            self._end_excitation()
            return None
        j = self.active
        if self._power_on_s > 0:  # let the servo reach its first pulse before judging it
            self._power_on_s -= dt
            return self.target.copy()
        if self.sweep is not None and not self.sweep.done:
            self._sweep_tick(self.sweep, dt)
        record = self.excitation
        if record is not None and not record.done:
            self._excitation_tick(record, sensors, dt)
        playing = record is not None and record.started and not record.done
        self._watch_stall(j, round(STALL_GRACE_S / dt) if playing else 0)
        step = MOVE_SPEED_RAD_S * dt
        self.target[j] += max(-step, min(step, self.goal - self.target[j]))
        self.settled_s = self.settled_s + dt if self.target[j] == self.goal else 0.0
        return self.target.copy()

    def _watch_stall(self, j: int, patience: int = 0) -> None:
        """Stop a joint that no longer follows (pushing on a hard stop heats and strips the
        servo): send it back to where its feedback last moved and refuse to go further.
        With ``patience`` (servo identification's fast steps) the joint is judged with more
        travel, and stopped only when it has not followed for that many ticks in a row."""
        code, target = self.hal.raw_code(j), float(self.target[j])
        if self.guard is None:
            travel = IDENTIFY_STALL_TRAVEL_DEG if patience else STALL_TRAVEL_DEG
            self.guard, self._stalled_ticks = (
                StallGuard(target, code, travel_deg=travel, window_ticks=self._window),
                0,
            )
            return
        # At rest (not while an excitation plays), judged again from where the link last followed.
        at_rest = not patience and target == self.goal and self.settled_s >= SETTLE_S
        if self.guard.stalled(target, code):
            self._stalled_ticks += 1
            if self._stalled_ticks <= patience:
                return
            where, way = self.guard.moved_target, math.copysign(1.0, target - self.guard.target)
            travel = self.guard.travel_deg
        elif at_rest and self.guard.pushing(target):
            where, way = self.guard.followed_target, self.guard.followed_way
            travel = abs(math.degrees(target - where))
        else:
            self._stalled_ticks = 0
            return
        why = (
            f"{JOINTS[j].name} stopped following near {math.degrees(where):+.1f} deg: its feedback did not "
            f"change over {travel:.0f} deg of travel. It is against a hard stop or an "
            "obstacle, or its feedback wire is loose; it went back to where it last moved"
        )
        log.warning("calibration: %s", why)
        self.blocked = (j, where, way, why)
        self.goal = where
        self.guard = StallGuard(where, code, free_way=-way, armed=True, window_ticks=self._window)
        if self.sweep is not None and not self.sweep.done:
            self.sweep.error, self.sweep.done = why, True
        if self.excitation is not None and not self.excitation.done:
            self.excitation.error, self.excitation.done = why, True
            self.safety.override(FILTER_SPEED_RAD_S)

    def powered(self) -> np.ndarray:
        mask = np.zeros(NUM_JOINTS, bool)
        if self.active is not None:
            mask[self.active] = True
        return mask

    def stop(self) -> None:
        self.active, self.sweep = None, None
        self._end_excitation()

    def close(self) -> None:
        """Leave the mode: joints unpowered, safety filter and stored calibration restored."""
        if self._closed:
            return
        self._closed = True
        self.active, self.sweep = None, None
        self.safety.restore()
        if not self.applied:
            self.hal.set_calibration(self.stored)
        log.info(
            "calibration mode left: %s",
            "new calibration in use" if self.applied else "stored calibration kept",
        )

    # -- limits ----------------------------------------------------------------------------

    def safe_range(self, index: int) -> tuple[float, float]:
        """Where joint ``index`` may go now, in its working calibration (rad)."""
        if index in self.confirmed:
            margin = math.radians(SAFE_MARGIN_DEG)
            return float(self.lower[index] + margin), float(self.upper[index] - margin)
        window = math.radians(JOG_WINDOW_DEG)
        return -window, window

    # -- commands --------------------------------------------------------------------------

    def handle(self, op: str, **args: Any) -> dict[str, Any]:
        """Carry out one wizard command; raises :class:`CalibrationCommandError` to refuse."""
        if self._closed:
            raise CalibrationCommandError("the calibration session has ended")
        self._last_command = self._now
        handler = self._ops.get(op)
        if handler is None:
            raise CalibrationCommandError(f"unknown calibration command {op!r}")
        return handler(**args)

    def _joint_index(self, name: str) -> int:
        try:
            j = joint(name)
        except KeyError as exc:
            raise CalibrationCommandError(str(exc.args[0])) from None
        if not j.wired:
            raise CalibrationCommandError(f"{name} has no servo; nothing to calibrate")
        return j.index

    def _check_inside(self, index: int, angle: float) -> None:
        lo, hi = self.safe_range(index)
        if not (math.isfinite(angle) and lo - 1e-9 <= angle <= hi + 1e-9):
            raise CalibrationCommandError(
                f"{JOINTS[index].name}: {math.degrees(angle):+.1f} deg is outside its calibration-safe "
                f"range {math.degrees(lo):+.1f}..{math.degrees(hi):+.1f} deg"
            )

    def _op_move(self, joint: str, angle: float) -> dict[str, Any]:
        index = self._joint_index(joint)
        self._check_inside(index, angle)
        if self.blocked is not None and self.blocked[0] == index:
            _, where, way, why = self.blocked
            if (angle - where) * way > 1e-9:
                raise JointBlockedError(f"{why}; move it the other way")
            self.blocked = None
        if (self.sweep is not None and not self.sweep.done) or (
            self.excitation is not None and not self.excitation.done
        ):
            raise CalibrationCommandError("a feedback sweep is running; wait for it or relax the joint")
        self._power(index)
        self.goal = float(angle)
        self.settled_s = 0.0
        return {"joint": joint, "goal": self.goal}

    def _power(self, index: int) -> None:
        if self.active != index:
            # The joint starts from where its feedback says it is; a reading outside its safe
            # range is not believed (a dead wire reads anything): it starts at its zero then.
            lo, hi = self.safe_range(index)
            here = float(self._measured[index])
            believable = math.isfinite(here) and lo <= here <= hi
            self.target[index] = here if believable else min(hi, max(lo, 0.0))
            self.safety.rebase(index, self.target[index])
            self.active = index
            self.sweep, self.guard, self.blocked = None, None, None
            self._end_excitation()
            self._power_on_s = POWER_ON_S
        self._idle_relaxed = False

    def _op_relax(self) -> dict[str, Any]:
        self.active, self.sweep, self.blocked = None, None, None
        self._end_excitation()
        return {"relaxed": True}

    def _op_set(self, joint: str, confirmed: bool = False, **changes: Any) -> dict[str, Any]:
        """Change a joint's working calibration without moving its servo."""
        index = self._joint_index(joint)
        unknown = set(changes) - SETTABLE
        if unknown:
            raise CalibrationCommandError(
                f"cannot set {', '.join(sorted(unknown))}; settable: {sorted(SETTABLE)}"
            )
        old = self.working[joint]
        try:
            new = dataclasses.replace(old, **changes)
        except (TypeError, ValueError) as exc:
            raise CalibrationCommandError(f"{joint}: {exc}") from None

        def same_servo_position(angle: float) -> float:
            return pulse_us_to_angle(angle_to_pulse_us(angle, old), new)

        self.target[index] = same_servo_position(float(self.target[index]))
        if self.active == index:
            self.goal = same_servo_position(self.goal)
            self.safety.rebase(index, float(self.target[index]))
            self.guard, self.blocked = None, None  # angles in the old calibration mean nothing now
        self.working[joint] = new
        if confirmed:
            self.confirmed.add(index)
        lo, hi = self.safe_range(index)
        self.safety.override(limits={index: (lo, hi)})
        self.hal.set_calibration(self._working_calibration())
        return {"joint": joint, "calibration": new.servo(), "safe_range": [lo, hi]}

    def _working_calibration(self) -> Calibration:
        return Calibration(
            dict(self.working), measured=self.stored.measured,
            source="calibration in progress", imu_offsets=self.stored.imu_offsets,
        )  # fmt: skip

    def _op_sweep(self, joint: str, low: float, high: float, points: int) -> dict[str, Any]:
        index = self._joint_index(joint)
        if index not in self.confirmed:
            raise CalibrationCommandError(f"{joint}: find its zero and direction before sweeping it")
        if not 5 <= points <= MAX_SWEEP_POINTS or not low < high:
            raise CalibrationCommandError(f"a sweep needs low < high and 5..{MAX_SWEEP_POINTS} points")
        self._check_inside(index, low)
        self._check_inside(index, high)
        self._power(index)
        self.sweep = Sweep(index, np.linspace(low, high, points))
        self.goal, self.settled_s = self.sweep.goal(), 0.0
        return {"joint": joint, "points": self.sweep.points}

    def _sweep_tick(self, sweep: Sweep, dt: float) -> None:
        if self.target[sweep.joint] != self.goal:
            return
        sweep.settled_s += dt
        if sweep.settled_s < SETTLE_S:
            return
        code = self.hal.raw_code(sweep.joint)
        sweep.samples.append(code)
        if len(sweep.samples) < SAMPLES:
            return
        value = float(np.mean(sweep.samples))
        if sweep.step < len(sweep.angles):
            sweep.up.append(value)
            # Where the servo was sent: the pulse is whole PCA9685 counts (0.4 servo degrees
            # each), so the exact angle differs from the asked one by up to 0.2 degrees.
            sweep.actual.append(self._sent_angle(sweep.joint, self.goal))
        else:
            sweep.down.append(value)
        sweep.samples, sweep.settled_s = [], 0.0
        sweep.step += 1
        if sweep.step >= sweep.points:
            sweep.done = True
            return
        self.goal = sweep.goal()

    def _sent_angle(self, index: int, angle: float) -> float:
        """The angle the servo is actually sent to for ``angle``, in the working calibration."""
        return pulse_us_to_angle(self.hal.pulse_us(index, angle), self.working[JOINTS[index].name])

    def _op_state(self, imu: bool = False) -> dict[str, Any]:
        state: dict[str, Any] = {"active": None if self.active is None else JOINTS[self.active].name,
                                 "now": self._now}  # fmt: skip
        if self.active is not None:
            j = self.active
            target = float(self.target[j])
            state.update(
                goal=self.goal, target=target, pulse_us=self.hal.pulse_us(j, target),
                moving=bool(self.target[j] != self.goal), settled=bool(self.settled_s >= SETTLE_S),
                code=_finite(self.hal.raw_code(j)), measured=_finite(float(self._measured[j])),
            )  # fmt: skip
            if self.truth is not None:
                state["truth"] = float(self.truth()[j])
        if self.sweep is not None:
            s = self.sweep
            state["sweep"] = {
                "joint": JOINTS[s.joint].name, "done": s.done, "error": s.error,
                "progress": min(s.step, s.points) / s.points,
                "angles": s.actual if s.done else s.angles.tolist(),
                "up": s.up, "down": list(reversed(s.down)),
            }  # fmt: skip
        if self.excitation is not None:
            state["identify"] = {"joint": JOINTS[self.excitation.joint].name, **self.excitation.state()}
        if self._idle_relaxed:
            state["idle_relaxed"] = True
        if self.blocked is not None and self.blocked[0] == self.active:
            state["blocked"] = self.blocked[3]
        if imu:
            state["imu_calib_status"] = self.hal.imu_calibration_status()
        return state

    def _op_imu_offsets(self) -> dict[str, Any]:
        try:
            offsets = self.hal.read_imu_offsets()
        except PlendError as exc:
            raise CalibrationCommandError(str(exc)) from None
        return {"offsets": list(offsets), "calib_status": self.hal.imu_calibration_status()}

    # -- servo identification ------------------------------------------------------------

    def _op_identify(self, joint: str, targets: list[float], runs: int = 1) -> dict[str, Any]:
        """Play one excitation of a calibrated joint (see :mod:`plend.control.servo_recording`)."""
        index = self._joint_index(joint)
        if JOINTS[index].adc is None:
            raise CalibrationCommandError(f"{joint} has no feedback wire: nothing to measure")
        self._confirm_stored(index)
        if index not in self.confirmed:
            raise CalibrationCommandError(
                f"{joint} is not calibrated: calibrate it before measuring its servo"
            )
        if self.sweep is not None and not self.sweep.done:
            raise CalibrationCommandError("a feedback sweep is running; wait for it or relax the joint")
        lo, hi = self.safe_range(index)
        step = self.safety.configured_speed_rad_s * self.safety.period_s  # the robot's own slew limit
        try:
            values = check_targets(targets, lo, hi, step, self.safety.period_s, joint)
        except ExcitationError as exc:
            raise CalibrationCommandError(str(exc)) from None
        if not 1 <= runs <= 4 or len(values) % runs:
            raise CalibrationCommandError(f"runs must be 1..4 and divide the {len(values)} targets")
        self._power(index)
        self.goal, self.settled_s = float(values[0]), 0.0
        self.excitation = ExcitationRecord(index, values, runs)
        return {"joint": joint, "ticks": len(values), "seconds": len(values) * self.safety.period_s}

    def _confirm_stored(self, index: int) -> None:
        """A joint of a measured calibration, not changed in this session, may move within
        its joint limits (less the margin): its zero and direction are known."""
        name = JOINTS[index].name
        if self.stored.measured and self.working[name] == self.stored.joints.get(name):
            self.confirmed.add(index)
            self.safety.override(limits={index: self.safe_range(index)})

    def _excitation_tick(self, record: ExcitationRecord, sensors: Sensors, dt: float) -> None:
        j = record.joint
        if not record.started:  # first settle where it starts, then play at the robot's slew limit
            if self.target[j] != self.goal or self.settled_s < SETTLE_S:
                return
            record.started = True
            self.safety.override(self.safety.configured_speed_rad_s)
            self.guard = None  # judged from here on against the delayed target, with more travel
        target = float(record.targets[record.tick])
        stamp = self.hal.feedback_stamp(j)
        fresh, self._stamps_seen[j] = bool(stamp > self._stamps_seen[j]), stamp
        sent = self._sent_angle(j, target)
        self.target[j] = self.goal = record.record(
            float(sensors.joint_pos[j]), self.hal.raw_code(j), fresh, sensors.stamp, sent, dt
        )
        if record.done:
            self.safety.override(FILTER_SPEED_RAD_S)
            self.guard = None
            if self._servo_truth is not None:
                record.truth = [self._servo_truth(j, a, b) for a, b in record.run_bounds()]

    def _end_excitation(self) -> None:
        if self.excitation is not None and not self.excitation.done:
            self.safety.override(FILTER_SPEED_RAD_S)
        self.excitation = None

    def apply(self, calibration: Calibration) -> None:
        """Use ``calibration`` (just saved) from now on, also after the session."""
        self.active, self.sweep = None, None  # relaxed: nothing to re-express
        self._end_excitation()
        self.stored = calibration
        self.working = dict(calibration.joints)
        self.confirmed = {j.index for j in JOINTS if j.wired}
        self.applied = True
        self.hal.set_calibration(calibration)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
