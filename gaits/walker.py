"""The sine gait as a controller: phase, start and stop ramps, commands, heading hold."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from gaits.balance import Balance
from gaits.sine import GaitParams, SpeedMap, blend, check_command, check_speed, joint_targets, validate
from plend.model.sensors import Sensors

HALT_S = 0.3  # a recovering gait brings its feet down within this


@cache
def validate_speed_map(speed_map: SpeedMap, max_turn_rad: float) -> None:
    """Check the corners of the commands against the joint limits (once per map: ~0.2 s)."""
    turns = {0.0, max_turn_rad, speed_map.max_turn_rad}
    for speed in (-1.0, 0.0, 1.0):
        for turn in turns:
            for sign in (1.0, -1.0):
                for side in (1.0, -1.0):
                    validate(speed_map.params(speed, sign * turn, side))


class SineGait:
    """Walks on the sinewave gait.

    The walk starts from the stand pose with every amplitude ramped up over
    ``ramp_steps`` steps. A new command (speed, turn, side) is taken at the next step
    boundary and blended in over one step; :meth:`stop` ramps every amplitude down from
    the next step boundary, after which :attr:`standing` is true and the output is the
    stand pose. While the turn command is 0 and ``heading_gain`` is non-zero, the gait
    steers with the hip yaw joints (at most ``max_turn_rad`` a step) to keep the IMU
    heading it had when it last stopped turning; ``heading_bias_gain`` adds what a robot
    that keeps turning one way needs, learnt step by step. With ``heading_average`` the
    steering answers the heading error averaged over the step just walked rather than the
    error at the step boundary: a robot that rocks and slips swings its heading within
    every step, and one sample steers by the swing as much as by the drift. With a
    ``balance`` (:class:`gaits.balance.Balance`) the IMU also shapes every step, the first step
    waits until the balance is ready, and while the balance recovers from a dangerous
    tilt the phase holds and both feet come down to the stand pose; the steps ramp back
    up from where they stopped.
    """

    def __init__(
        self,
        speed: float = 0.5,
        speed_map: SpeedMap | None = None,
        ramp_steps: int = 2,
        heading_gain: float = 0.5,
        max_turn_rad: float = 0.12,
        turn: float = 0.0,
        side: float = 0.0,
        balance: Balance | None = None,
        heading_bias_gain: float = 0.0,
        heading_average: bool = False,
    ):
        self.speed_map = speed_map or SpeedMap()
        validate_speed_map(self.speed_map, max_turn_rad)
        self.balance = balance
        self.ramp_steps = ramp_steps
        self.heading_gain = heading_gain
        self.heading_bias_gain = heading_bias_gain
        self.heading_average = heading_average
        self._error_sum = self._error_time = 0.0  # the heading error over this step, integrated
        self._bias = 0.0
        self.max_turn_rad = max_turn_rad
        self.speed = check_speed(speed)
        self.turn = check_command("turn", turn)
        self.side = check_command("side", side)
        self.phase = 0.0
        self.envelope = 0.0
        self._target_envelope = 1.0
        self._heading: float | None = None
        self._yaw = 0.0
        self._from = self._to = self._command_params()
        self._blend = 1.0
        self._pending: tuple[float, float, float] | None = None
        self._stopping = False

    @property
    def params(self) -> GaitParams:
        """The parameters in effect now."""
        return blend(self._from, self._to, self._blend)

    @property
    def stopping(self) -> bool:
        """True once asked to stop: it walks to the next step boundary, then stands."""
        return self._stopping

    @property
    def standing(self) -> bool:
        """True once a stop has finished and the output is the stand pose."""
        return self._stopping and self.envelope <= 0.0

    def set_speed(self, speed: float) -> None:
        """Walk at ``speed`` from the next step on (validated now); turn and side stay."""
        self.set_command(speed, *(self._pending or (self.speed, self.turn, self.side))[1:])

    def set_command(self, speed: float, turn: float = 0.0, side: float = 0.0) -> None:
        """Walk at ``speed``, turning ``turn`` and stepping ``side`` (each in [-1, 1],
        positive turn and side to the left) from the next step on; all are validated
        now, and nothing changes if one is refused."""
        self._pending = (check_speed(speed), check_command("turn", turn), check_command("side", side))

    def stop(self) -> None:
        """Come to the stand pose, starting at the next step boundary."""
        self._stopping = True

    def update(self, sensors: Sensors | None, dt: float) -> np.ndarray:
        """Advance by ``dt`` seconds and return the 18 joint targets."""
        if sensors is not None:
            self._yaw = sensors.imu.euler[2]
            if self._heading is None:
                self._heading = self._yaw
            self._error_sum += self._heading_error() * dt
            self._error_time += dt
        if self.balance is None:
            self.advance(dt)
            return joint_targets(self.phase, self.params, self.envelope)
        self.balance.observe(sensors)
        if self.balance.recovering:
            self._halt(dt)
        else:
            self.advance(dt if self.balance.ready else 0.0, self.balance.period_s(self.params))
        # Feedback cannot be validated in advance: past a limit, the safety filter clamps.
        q = joint_targets(self.phase, self.balance.shape(self.params), self.envelope, check_limits=False)
        return q + self.balance.offsets

    def advance(self, dt: float, period_s: float | None = None) -> None:
        """Move the phase, the command blend and the envelope on by ``dt`` seconds of a
        cycle of ``period_s`` (default: the parameters' own)."""
        dphase = dt / (period_s or self.params.period_s)
        before = self.phase
        self.phase = (self.phase + dphase) % 1.0
        if (before < 0.5 <= self.phase) or self.phase < before:
            self._on_step_boundary()
        self._blend = min(1.0, self._blend + dphase / 0.5)
        ramp = dphase / (0.5 * self.ramp_steps)
        target = self._target_envelope
        self.envelope = max(min(target, self.envelope + ramp), self.envelope - ramp)

    def _halt(self, dt: float) -> None:
        """Stop stepping where the phase is and bring both feet down to the stand pose
        within ``HALT_S``; :meth:`advance` ramps the steps back up afterwards."""
        self.envelope = max(0.0, self.envelope - dt / HALT_S)

    def next_command(self) -> dict[str, float] | None:
        """The command to be taken at the next step boundary, if one is waiting."""
        if self._pending is None:
            return None
        speed, turn, side = self._pending
        return {"speed": speed, "turn": turn, "side": side}

    def report(self) -> dict[str, Any]:
        """The command in effect, the phase and what the balance is doing."""
        report: dict[str, Any] = {
            "speed": self.speed, "turn": self.turn, "side": self.side,
            "phase": round(self.phase, 3), "stopping": self._stopping,
        }  # fmt: skip
        report["balance"] = None if self.balance is None else self.balance.report()
        return report

    def _on_step_boundary(self) -> None:
        if self._stopping:
            self._target_envelope = 0.0
        if self._pending is not None:
            was_turning = self.turn != 0.0
            self.speed, self.turn, self.side = self._pending
            self._pending = None
            if was_turning and self.turn == 0.0:
                self._heading = self._yaw  # hold the heading the turn ended on
                self._error_sum = self._error_time = 0.0
        self._from = self.params
        self._to = self._command_params()
        self._error_sum = self._error_time = 0.0
        self._blend = 0.0

    def _command_params(self) -> GaitParams:
        turn = self.speed_map.turn_rad(self.turn) if self.turn else self._hold()
        return self.speed_map.params(self.speed, turn, self.side)

    def _hold(self) -> float:
        """Steering for the next step: proportional to the heading error, plus what a
        robot that keeps turning one way has been found to need (integrated each step)."""
        if self._heading is None or not self.heading_gain:
            return 0.0
        averaged = self.heading_average and self._error_time > 0.0
        error = self._error_sum / self._error_time if averaged else self._heading_error()
        limit = self.max_turn_rad
        self._bias = max(-limit, min(limit, self._bias + self.heading_bias_gain * error))
        return max(-limit, min(limit, self.heading_gain * error + self._bias))

    def _heading_error(self) -> float:
        assert self._heading is not None
        return math.atan2(math.sin(self._heading - self._yaw), math.cos(self._heading - self._yaw))
