"""The training reward: tracking the walking command, and the bio-inspired terms.

Per 50 Hz tick, with weights from :class:`RewardWeights` (penalties negative). Speeds
and the yaw rate are measured over the last gait period (ground truth), in the frame of
the torso's heading, so the side-to-side sway of a step cancels; the targets come from
:func:`policies.commands.sine_reference` for the command the gait is walking on.

========================  ======  ============================================================
term                      weight  what it measures
========================  ======  ============================================================
``speed``                 1.5     forward speed tracking: exp(-(err / 0.025 m/s)^2), the
                                  target being the sine gait's speed times ``speed_gain``
                                  (1.3): a policy should walk further than its gait.
``yaw_rate``              1.0     yaw rate tracking: exp(-(err / 0.05 rad/s)^2) (0.05 rad/s
                                  is 2.9 deg/s), the target the gait's yaw rate.
``lateral``               -10     |sideways speed - the side command's| (m/s).
``heading``               -1      |heading error| (rad, at most 0.5) while told to go
                                  straight: from the heading the robot had when the turn
                                  command last became 0.
``alive``                 0.2     for every tick not fallen, so falling never pays.
``upright``               -2      roll^2 + pitch^2 of the torso (rad^2).
``symmetry``              0.2     left/right similarity of the hip pitch, knee and ankle pitch
                                  histories half a gait period apart, exp(-(rms/0.1 rad)^2):
                                  bounded in [0, 1] and finite on flat or zero histories (the
                                  original's cosine similarity divided by a zero norm).
``contact``               0.2     the right foot alone on the ground in the half period where
                                  the left foot swings, and the left alone in the other half.
``double_support``        -0.3    each tick both feet have been down longer than a third of
                                  the gait period.
``frozen``                -0.2    fraction of the six sagittal leg joints that did not move
                                  (less than 2e-4 rad) since the last tick.
``flat_feet``             -0.5    tilt (rad) of each foot that touches the ground.
``action``                -0.5    mean squared action: a residual must pay for itself.
``action_rate``           -0.05   mean squared change of the action since the last tick.
``fall``                  -50     once, when the episode ends in a fall.
========================  ======  ============================================================
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from plend.hal.sim import TorsoTruth
from policies.commands import Reference

FALL_TILT_RAD = math.radians(50.0)
FALL_HEIGHT_M = 0.09
SPEED_SIGMA_M_S = 0.025
YAW_SIGMA_RAD_S = 0.05
MAX_HEADING_ERROR_RAD = 0.5


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (see the module docstring); penalties are negative."""

    speed: float = 1.5
    speed_gain: float = 1.3  # the forward target: the sine gait's speed times this
    yaw_rate: float = 1.0
    lateral: float = -10.0
    heading: float = -1.0
    alive: float = 0.2
    upright: float = -2.0
    symmetry: float = 0.2
    contact: float = 0.2
    double_support: float = -0.3
    frozen: float = -0.2
    flat_feet: float = -0.5
    action: float = -0.5
    action_rate: float = -0.05
    fall: float = -50.0


def leg_similarity(right: np.ndarray, left: np.ndarray, scale_rad: float = 0.1) -> float:
    """Similarity in [0, 1] of two equally shaped joint histories: exp(-(rms / scale)^2).

    Identical histories (zeros included) give 1; never NaN, whatever the norms.
    """
    diff = np.asarray(right, float) - np.asarray(left, float)
    if diff.size == 0 or not np.all(np.isfinite(diff)):
        return 0.0
    return float(np.exp(-np.mean(diff * diff) / (scale_rad * scale_rad)))


def fall_direction(truth: TorsoTruth) -> str | None:
    """How the torso has fallen ("forward", "backward", "left", "right", "down"), or None."""
    roll, pitch, _ = truth.euler
    if truth.tilt > FALL_TILT_RAD:
        if abs(pitch) >= abs(roll):
            return "forward" if pitch > 0 else "backward"  # +pitch dips the x (forward) axis
        return "right" if roll > 0 else "left"  # +roll lifts the left (+y) side
    if truth.position[2] < FALL_HEIGHT_M:
        return "down"
    return None


def wrap(angle: float) -> float:
    """``angle`` in (-pi, pi]."""
    return math.atan2(math.sin(angle), math.cos(angle))


MAX_WINDOW_TICKS = 64


class Tracking:
    """Follows the torso's recent poses: speeds along and across its heading and yaw rate
    over a window (the last gait period), and the heading error while walking straight."""

    def __init__(self, truth: TorsoTruth, tick_s: float):
        self.tick_s = tick_s
        self._yaw = truth.euler[2]  # unwrapped
        self._poses: deque[tuple[float, float, float]] = deque(maxlen=MAX_WINDOW_TICKS + 1)
        self._poses.append((truth.position[0], truth.position[1], self._yaw))
        self._hold: float | None = self._yaw

    def update(self, truth: TorsoTruth, turning: bool) -> None:
        """Take this tick's pose; ``turning`` says whether the command turns."""
        self._yaw += wrap(truth.euler[2] - self._yaw)
        self._poses.append((truth.position[0], truth.position[1], self._yaw))
        if turning:
            self._hold = None
        elif self._hold is None:
            self._hold = self._yaw  # the heading a turn ended on is the one to hold

    def velocity(self, window_ticks: int) -> tuple[float, float, float]:
        """(forward m/s, sideways m/s, yaw rate rad/s) over the last ``window_ticks``
        ticks (at most :data:`MAX_WINDOW_TICKS`); zeros until that many have passed."""
        window = min(window_ticks, MAX_WINDOW_TICKS)
        if not self.ready(window):
            return (0.0, 0.0, 0.0)
        x0, y0, yaw0 = self._poses[-1 - window]
        x1, y1, yaw1 = self._poses[-1]
        span = window * self.tick_s
        heading = 0.5 * (yaw0 + yaw1)
        dx, dy = x1 - x0, y1 - y0
        forward = dx * math.cos(heading) + dy * math.sin(heading)
        side = -dx * math.sin(heading) + dy * math.cos(heading)
        return (forward / span, side / span, (yaw1 - yaw0) / span)

    def heading_error(self) -> float:
        """How far the heading is from the one to hold (0 while turning), in rad."""
        return 0.0 if self._hold is None else self._yaw - self._hold

    def ready(self, window_ticks: int) -> bool:
        """Whether ``window_ticks`` ticks have passed."""
        return len(self._poses) > min(window_ticks, MAX_WINDOW_TICKS)


def tracking_terms(
    w: RewardWeights, tracking: Tracking, reference: Reference, window_ticks: int
) -> dict[str, float]:
    """The command-tracking terms over the last ``window_ticks`` (a gait period); zero
    until that much has been walked."""
    if not tracking.ready(window_ticks):
        return {"speed": 0.0, "yaw_rate": 0.0, "lateral": 0.0, "heading": 0.0}
    forward, side, yaw_rate = tracking.velocity(window_ticks)
    speed_error = forward - w.speed_gain * reference.forward_m_s
    yaw_error = yaw_rate - reference.yaw_rate
    heading = min(abs(tracking.heading_error()), MAX_HEADING_ERROR_RAD)
    return {
        "speed": w.speed * math.exp(-((speed_error / SPEED_SIGMA_M_S) ** 2)),
        "yaw_rate": w.yaw_rate * math.exp(-((yaw_error / YAW_SIGMA_RAD_S) ** 2)),
        "lateral": w.lateral * abs(side - reference.side_m_s),
        "heading": w.heading * heading,
    }
