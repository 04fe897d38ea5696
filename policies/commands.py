"""Walking commands for policies: what the sine gait achieves for each, and drawing them.

A policy walks on a command (speed, turn, side) in the sine gait's units, each in [-1, 1].
What a command means in metres and radians per second is what the balanced sine gait
achieves for it on the nominal world: :func:`sine_reference` interpolates a table
measured with :func:`measure_reference` (``python -m policies.commands`` prints it
again). The reward asks a policy for the gait's yaw rate and side speed, and for its
forward speed times ``speed_gain`` (a policy should walk further than the gait it rides on).

:class:`CommandSampler` draws a command schedule for a training episode: a command at the
start and a new one every few seconds, each from the ranges the policy is trained for.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.contract import COMMANDS, PolicyError

# The balanced sine gait on the nominal world (python -m policies.commands): forward speed
# (m/s) and yaw rate (deg/s) for each speed (rows) and turn (columns) command.
REFERENCE_SPEEDS = (0.0, 0.25, 0.5, 0.75, 1.0)
REFERENCE_TURNS = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)
REFERENCE_FORWARD_M_S = (
    (0.0041, 0.004, 0.0038, 0.0037, 0.0032, 0.0028, 0.0024),
    (0.0168, 0.0165, 0.0163, 0.016, 0.0154, 0.0151, 0.0142),
    (0.0316, 0.031, 0.0307, 0.0304, 0.0298, 0.0294, 0.0282),
    (0.0478, 0.0478, 0.0475, 0.0474, 0.0472, 0.0466, 0.0454),
    (0.0672, 0.0669, 0.0666, 0.0665, 0.0664, 0.0652, 0.0635),
)
REFERENCE_YAW_DEG_S = (
    (-20.67, -9.28, -4.82, -0.04, 5.7, 10.72, 21.09),
    (-22.89, -11.53, -5.84, 0.0, 5.59, 11.39, 22.98),
    (-25.4, -13.1, -7.0, 0.04, 5.78, 12.27, 24.68),
    (-27.82, -14.54, -7.73, 0.01, 6.45, 13.39, 26.99),
    (-29.71, -15.19, -7.48, -0.0, 6.81, 14.31, 28.45),
)

REFERENCE_SIDE_M_S = 0.005  # sideways speed at side 1 (0.1 m in 20 s)


@dataclass(frozen=True)
class Reference:
    """What the sine gait achieves for a command: forward and sideways speed (m/s, along
    and across its heading) and yaw rate (rad/s, positive left)."""

    forward_m_s: float
    side_m_s: float
    yaw_rate: float


def _interpolate(table: Sequence[Sequence[float]], speed: float, turn: float) -> float:
    grid = np.asarray(table, float)
    by_turn = [np.interp(turn, REFERENCE_TURNS, row) for row in grid]
    return float(np.interp(speed, REFERENCE_SPEEDS, by_turn))


@functools.lru_cache(maxsize=1024)
def sine_reference(speed: float, turn: float, side: float) -> Reference:
    """The sine gait's speeds and yaw rate for ``(speed, turn, side)`` (interpolated;
    backwards mirrors forwards)."""
    forward = math.copysign(_interpolate(REFERENCE_FORWARD_M_S, abs(speed), turn), speed)
    yaw = math.radians(_interpolate(REFERENCE_YAW_DEG_S, abs(speed), turn))
    return Reference(forward, REFERENCE_SIDE_M_S * side, yaw)


def parse_range(name: str, text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` (or one value) as a command range inside [-1, 1]."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or not -1 <= values[0] <= values[1] <= 1:
        raise PolicyError(f"--{name}-range {text!r}: use LOW,HIGH within [-1, 1] (e.g. -0.5,0.5)")
    return (values[0], values[1])


Command = tuple[float, float, float]
Schedule = tuple[tuple[float, Command], ...]
"""(time in s from the start of the episode, command) pairs, in time order."""


@dataclass(frozen=True)
class CommandSampler:
    """Draws command schedules inside ``ranges`` (each command's (low, high)).

    Attributes:
        ranges: per command name, its range; a missing one is fixed at 0 (the speed at
            the middle of its range when only speed is missing).
        hold_s: a command holds for a time drawn uniformly in this range.
        straight: probability that a drawn turn (and, separately, side) is exactly 0,
            the command a robot is given most.
    """

    ranges: dict[str, tuple[float, float]]
    hold_s: tuple[float, float] = (3.0, 6.0)
    straight: float = 0.5

    def draw(self, rng: np.random.Generator, duration_s: float) -> Schedule:
        """A schedule covering ``duration_s`` seconds."""
        schedule: list[tuple[float, Command]] = []
        t = 0.0
        while t < duration_s:
            schedule.append((t, self.command(rng)))
            t += float(rng.uniform(*self.hold_s))
        return tuple(schedule)

    def command(self, rng: np.random.Generator) -> Command:
        values = []
        for name in COMMANDS:
            low, high = self.ranges.get(name, (0.0, 0.0))
            value = float(rng.uniform(low, high))
            if name != "speed" and low <= 0.0 <= high and rng.uniform() < self.straight:
                value = 0.0
            values.append(round(value, 3))
        return (values[0], values[1], values[2])


def command_at(schedule: Schedule, t: float) -> Command:
    """The command of ``schedule`` in effect at time ``t``."""
    current = schedule[0][1]
    for start, command in schedule:
        if start > t + 1e-9:
            break
        current = command
    return current


def measure_reference(seconds: float = 16.0, warmup_s: float = 4.0) -> tuple[list[list[float]], ...]:
    """The balanced sine gait's forward speed (m/s) and yaw rate (deg/s) on the nominal
    world for every speed and turn of the reference grid: the mean, after ``warmup_s``,
    of what the training reward measures (over each last gait period, along the heading)."""
    from policies.env import WalkEnv, make_spec

    env = WalkEnv(make_spec(balance=True, commands={}), randomise=False, max_episode_steps=10**6)
    forward, yaw = [], []
    for speed in REFERENCE_SPEEDS:
        rows = [_walk_reference(env, (speed, turn, 0.0), seconds, warmup_s) for turn in REFERENCE_TURNS]
        forward.append([round(v, 4) for v, _ in rows])
        yaw.append([round(math.degrees(w), 2) for _, w in rows])
    env.close()
    return forward, yaw


def _walk_reference(env: Any, command: Command, seconds: float, warmup_s: float) -> tuple[float, float]:
    env.reset(options={"schedule": ((0.0, command),)})
    samples = []
    zero = np.zeros(env.action_space.shape, np.float32)
    for tick in range(round(seconds / env.period)):
        env.step(zero)
        if tick * env.period >= warmup_s:
            samples.append(env.velocity())
    forward, _, yaw_rate = np.mean(samples, axis=0)
    return float(forward), float(yaw_rate)


def main() -> int:
    """Print the reference table (``python -m policies.commands``)."""
    forward, yaw = measure_reference()
    print("REFERENCE_FORWARD_M_S = (")
    print("\n".join(f"    {tuple(row)}," for row in forward) + "\n)")
    print("REFERENCE_YAW_DEG_S = (")
    print("\n".join(f"    {tuple(row)}," for row in yaw) + "\n)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
