"""The servos of the simulated robot, between the commands and PyBullet's joint motors.

A hobby feedback servo is not PyBullet's ideal position motor. Per joint, and for every
physics step, :class:`ServoBank` takes the command written ``delay`` ago (transport
delay; one that arrives within a physics step counts for the rest of that step, so the
delay is kept exactly, not rounded up to the next step), holds it still while it moves
less than the dead band (a play operator: the servo stops as soon as its error is
inside the band), and moves the servo's output towards it
as a first-order lag. PyBullet's motor then moves the link to that output at no more
than the servo's no-load speed (its velocity cap, set once per joint when the world is
built) and with no more than its stall torque, so the link sags under load.
With backlash the link is coupled to the output only at the two ends of the gear train's
free play: in between, the motor lets go (a little gear friction remains) and the link
moves as the load takes it. A residual offset error puts the link that far from the
output, where neither the command nor the feedback can see it.
"""

from __future__ import annotations

import math

import numpy as np

from plend.model.sim_world import ServoTable

# An unpowered hobby servo still resists through its gear train: a small friction torque.
GEAR_FRICTION_NM = 0.002
# PyBullet's position motor gains: fraction of the error corrected per step, and velocity
# gain. Tuned so the link follows the servo's output without chattering on the light links.
POSITION_GAIN = 0.35
VELOCITY_GAIN = 1.0


class ServoBank:
    """The servo state of all joints.

    Args:
        table: the servo model per joint.
        dt: the physics step, s.
        initial: the joint angles the servos start at (as the robot believes them), rad.
    """

    def __init__(self, table: ServoTable, dt: float, initial: np.ndarray):
        self.table = table
        self.dt = dt
        self._alpha = np.where(
            table.time_constant_s > 0, 1.0 - np.exp(-dt / np.maximum(table.time_constant_s, 1e-12)), 1.0
        )
        self._zeros = [0.0] * len(table.delay_s)
        self._half_play = table.backlash_rad / 2.0
        self._grip = np.minimum(self._half_play / 4.0, math.radians(0.2))
        self._columns = np.arange(len(table.delay_s))
        self.has_backlash = bool(np.any(self._half_play > 0))
        self.reset(initial)

    def reset(self, angles: np.ndarray) -> None:
        """Servos at rest at ``angles`` (rad), powered, with no command in flight."""
        q = np.asarray(angles, float).copy()
        self._times: list[float] = [-math.inf]
        self._commands: list[np.ndarray] = [q.copy()]
        self._history = (np.asarray(self._times), np.asarray(self._commands))
        self._held = q.copy()  # after the dead band
        self.output = q.copy()  # the servo's output shaft (as the robot believes it)
        self.powered = np.ones(q.shape, bool)

    def command(
        self, t: float, targets: np.ndarray, powered: np.ndarray, link_angles: np.ndarray,
        at: float | None = None,
    ) -> None:  # fmt: skip
        """Targets (rad) written at time ``t``; ``powered`` joints are driven, the others
        let go. A servo powered again starts from where its link is (``link_angles``).
        With ``at`` (at or after ``t``) the targets reach the servos only then, as a
        PCA9685 applies a new pulse at its next frame; the delay counts from there."""
        woken = powered & ~self.powered
        if woken.any():
            start = link_angles - self.table.offset_rad
            self.output[woken] = start[woken]
            self._held[woken] = start[woken]
        self.powered = powered.copy()
        horizon = t - float(self.table.delay_s.max()) - self.dt
        while len(self._times) > 1 and self._times[1] <= horizon:
            del self._times[0], self._commands[0]
        self._times.append(t if at is None else max(at, t, self._times[-1]))
        self._commands.append(np.asarray(targets, float).copy())
        self._history = (np.asarray(self._times), np.asarray(self._commands))

    def _delayed(self, t: float) -> np.ndarray:
        """The command each servo acts on over the step from ``t``: the one that reached it
        ``delay`` after it was written; one that reaches it within the step counts for the
        part of the step after that, so a delay is kept exactly, not rounded to a step."""
        times, commands = self._history
        start = t - self.table.delay_s
        first = np.searchsorted(times, start + 1e-9, side="right") - 1
        last = np.searchsorted(times, start + self.dt - 1e-9, side="right") - 1
        wanted = commands[first, self._columns]
        switching = last > first
        if switching.any():
            arrives = times[np.minimum(first + 1, len(times) - 1)]
            before = np.clip((arrives - start) / self.dt, 0.0, 1.0)
            mixed = before * wanted + (1.0 - before) * commands[last, self._columns]
            wanted = np.where(switching, mixed, wanted)
        return wanted

    def step(self, t: float) -> None:
        """Advance the servos' outputs over the physics step starting at ``t``."""
        wanted = self._delayed(t)
        half_band = self.table.dead_band_rad / 2.0
        self._held = np.minimum(np.maximum(self._held, wanted - half_band), wanted + half_band)
        # Without lag the output is the command itself, not a sum that rounds differently.
        lagged = np.where(
            self._alpha >= 1.0, self._held, self.output + (self._held - self.output) * self._alpha
        )
        self.output = np.where(self.powered, lagged, self.output)

    def motor_targets(self, link_angles: np.ndarray | None) -> dict[str, list[float]]:
        """PyBullet motor settings for this step (``setJointMotorControlArray`` keywords).

        ``link_angles`` (the links' true angles) are needed only with backlash.
        """
        target = self.output + self.table.offset_rad
        driven = self.powered.copy()
        if self.has_backlash and link_angles is not None:
            low, high = target - self._half_play, target + self._half_play
            inside = (link_angles > low + self._grip) & (link_angles < high - self._grip)
            target = np.minimum(np.maximum(link_angles, low), high)
            driven &= ~inside
        force = np.where(driven, self.table.torque_nm, GEAR_FRICTION_NM)
        return {
            "targetPositions": target.tolist(),
            "targetVelocities": self._zeros,
            "forces": force.tolist(),
            "positionGains": np.where(driven, POSITION_GAIN, 0.0).tolist(),
            "velocityGains": [VELOCITY_GAIN] * len(target),
        }
