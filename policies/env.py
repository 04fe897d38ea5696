"""A gymnasium environment for learning to walk: the daemon's own robot, filter and observations.

:class:`WalkEnv` steps the same :class:`~plend.hal.sim.SimHal`, joint table,
:class:`~plend.control.safety.SafetyFilter` and :class:`~policies.contract.ObservationBuilder` the
daemon uses, and turns an action into joint targets exactly as
:class:`~policies.runner.PolicyBehaviour` does: in residual mode (the default) the targets
are the sine gait's plus ``action_scale * action`` on the action joints, the gait walking
on the policy's command (with its balance layer when the spec says so). A policy trained
here therefore sees on the robot what it saw in training.

Commands: each episode draws a schedule (:class:`~policies.commands.CommandSampler`): a
command at the start and a new one every 3-6 s, from the ranges in the spec. The
observation carries the command; the gait takes it at its next step, as on the robot.

Reward: command tracking and the bio-inspired terms of the original PLEN TD3 work, with
its defects fixed (see :mod:`policies.reward` for every term and weight).

An episode ends in a fall when the torso tilts more than 50 degrees from upright in any
direction or its origin drops below 0.09 m, or when the gait cannot go on (the balance
layer asked for a foot out of reach: the daemon would stop walking with a fault); either
costs the fall penalty. It is truncated after ``max_episode_steps``.

On reset the simulation is reopened with the robot standing (the old one is closed
first), held in the stand pose for ``settle_ticks`` ticks as the daemon's blend does, and
the gait starts from standing. With ``randomise`` the world is world N of the robustness
suite (:func:`plend.model.worlds.draw_world`, every factor) for an N drawn from the env's
``np_random`` above the numbers evaluations use; a share of episodes (``nominal_share``)
walk the nominal world.

Ground truth (torso pose, foot link orientation) feeds only the reward and the fall
check; the default observation uses nothing a real robot lacks. The foot orientation and
the joints' true angles come from the simulation's state (plend.hal.base.SimulationState).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from gaits.balance import GAIN_RANGES
from gaits.sine import SpeedMap, stand_pose
from plend.control.safety import SafetyFilter
from plend.core.config import GaitConfig, SafetyConfig, SimWorld
from plend.core.errors import PlendError
from plend.hal.base import Sensors
from plend.hal.sim import SimHal, TorsoTruth
from plend.model.robot import JOINT_NAMES, LEG_JOINT_NAMES
from plend.model.worlds import draw_world
from policies.commands import CommandSampler, Schedule, command_at, sine_reference
from policies.contract import LEGACY_LAYOUT, ObsContext, ObservationBuilder, PolicySpec
from policies.reward import (
    RewardWeights,
    Tracking,
    fall_direction,
    leg_similarity,
    tracking_terms,
    wrap,
)
from policies.runner import policy_gait

__all__ = ["RewardWeights", "WalkEnv", "fall_direction", "leg_similarity", "make_spec", "random_world"]

LEG_JOINTS: tuple[str, ...] = LEG_JOINT_NAMES["right"] + LEG_JOINT_NAMES["left"]
DEFAULT_OBSERVATION: tuple[tuple[str, int], ...] = (
    ("joint_pos", 18), ("projected_gravity", 3), ("gyro", 3),
    ("last_action", len(LEG_JOINTS)), ("gait_phase", 2), ("command", 3),
)  # fmt: skip
DEFAULT_COMMANDS: dict[str, tuple[float, float]] = {"speed": (0.0, 1.0), "turn": (-0.5, 0.5)}
SETTLE_TICKS = 15  # the supervisor's minimum blend: 0.3 s at 50 Hz
TRAINING_WORLDS = (1000, 2**31)  # suite numbers training draws from; evaluations use others

# Hip pitch, knee, ankle pitch of each leg. Their axes mirror between the legs, so the
# left angles are negated to compare them with the right ones.
_PITCH = [JOINT_NAMES.index(n) for side in ("right", "left") for n in LEG_JOINT_NAMES[side][2:5]]
_MIRROR = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])


def make_spec(
    legacy_obs: bool = False,
    speed: float = 0.5,
    rate_hz: float = 50.0,
    balance: bool = False,
    commands: dict[str, tuple[float, float]] | None = None,
) -> PolicySpec:
    """The default training spec: 12 leg residuals of 0.1 rad on the sine gait, taking the
    command (speed, turn, side) within ``commands`` (default :data:`DEFAULT_COMMANDS`).

    With ``legacy_obs`` the observation is the original 26-value layout (it needs ground
    truth, so such a policy runs in simulation only) and the gait walks at ``speed``; with
    ``balance`` the gait under the residuals runs its balance layer (and so will it on the
    robot) with every balance gain at the sine gait's value today, recorded by name. The
    gait's stride exponent and heading averaging are recorded as the sine gait has them
    today (``[gait]`` defaults), so the policy trains and runs on that gait.
    """
    gait = GaitConfig()  # the daemon's heading hold, recorded: the policy runs on it wherever it goes
    # Every balance gain as the gait has it today, by name: the gait under the policy keeps
    # them however the defaults change later.
    gains = gait.sine_gains()
    recorded = {name: float(getattr(gains, name)) for name in GAIN_RANGES} if balance else {}
    return PolicySpec(
        observation=LEGACY_LAYOUT if legacy_obs else DEFAULT_OBSERVATION,
        action_joints=LEG_JOINTS, action_mode="residual", action_scale=(0.1,) * len(LEG_JOINTS),
        rate_hz=rate_hz, gait_speed=speed, gait_balance=balance,
        commands={} if legacy_obs else dict(DEFAULT_COMMANDS if commands is None else commands),
        gait_heading=(gait.heading_gain, gait.heading_bias_gain, SpeedMap().max_turn_rad),
        gait_gains=recorded,
        gait_options={"stride_exponent": gait.stride_exponent, "heading_average": gait.heading_average},
    )  # fmt: skip


def random_world(rng: np.random.Generator, nominal_share: float = 0.0) -> SimWorld:
    """A training world: world N of the robustness suite for a random N (or, with
    probability ``nominal_share``, the nominal world)."""
    n = int(rng.integers(*TRAINING_WORLDS))
    return SimWorld(seed=n) if rng.uniform() < nominal_share else draw_world(n)


def _tilt_of(quat_xyzw: tuple[float, ...]) -> float:
    x, y = quat_xyzw[0], quat_xyzw[1]
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y))))  # angle of the local z axis


class WalkEnv(gym.Env):  # type: ignore[misc]
    """Walking in simulation under a :class:`PolicySpec` (``policy_spec``; gymnasium owns
    ``spec``); actions in [-1, 1].

    Args:
        spec: the policy contract (default :func:`make_spec`).
        legacy_obs: with no ``spec``, use the original 26-value observation.
        randomise: draw a world of the suite on every reset; otherwise use ``world``.
        world: the world when not randomising (default: the nominal one).
        max_episode_steps: ticks before truncation (600 = 12 s at 50 Hz).
        settle_ticks: ticks holding the stand pose before the gait starts.
        weights: reward weights.
        nominal_share: with ``randomise``, the share of episodes on the nominal world.

    ``reset(options={"world": SimWorld, "schedule": ((t, (speed, turn, side)), ...)})``
    walks a given world and command schedule (evaluations do).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        spec: PolicySpec | None = None,
        *,
        legacy_obs: bool = False,
        randomise: bool = True,
        world: SimWorld | None = None,
        max_episode_steps: int = 600,
        settle_ticks: int = SETTLE_TICKS,
        weights: RewardWeights | None = None,
        nominal_share: float = 0.1,
    ):
        spec = self.policy_spec = spec or make_spec(legacy_obs)
        spec.validate()
        self.randomise = randomise
        self.world = world or SimWorld()
        self.max_episode_steps = max_episode_steps
        self.settle_ticks = settle_ticks
        self.weights = weights or RewardWeights()
        self.nominal_share = nominal_share
        self.sampler = CommandSampler(spec.commands)
        self.period = 1.0 / spec.rate_hz
        n = len(spec.action_joints)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.observation_size,), np.float32)
        self._builder = ObservationBuilder(spec)
        self._columns = [JOINT_NAMES.index(j) for j in spec.action_joints]
        self._scale = np.asarray(spec.action_scale, float)
        self._offset = np.asarray(spec.action_offset or np.zeros(n), float)
        self._residual = spec.action_mode == "residual"
        self._hal: SimHal | None = None
        self._gait = policy_gait(self.policy_spec)
        self._last = np.zeros(n)

    # -- gymnasium API ----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, Any]:
        super().reset(seed=seed)
        options = options or {}
        world = options.get("world") or (
            random_world(self.np_random, self.nominal_share) if self.randomise else self.world
        )
        self._schedule: Schedule = options.get("schedule") or self._draw_schedule()
        self._open(world)
        assert self._hal is not None
        for _ in range(self.settle_ticks):
            self._hal.write(self._safety.apply(stand_pose()))
        self._command = command_at(self._schedule, 0.0)
        self._gait = policy_gait(self.policy_spec, None, self._command)
        self._last = np.zeros(len(self._columns))
        self._ticks = 0
        self._double = 0
        self._history = np.zeros((0, 6))
        self._pitch = self._pitch_angles()
        truth = self._hal.truth()
        self._heading = truth.euler[2]
        self._forward = np.array([math.cos(self._heading), math.sin(self._heading)])
        self._start = np.asarray(truth.position[:2])
        self._tracking = Tracking(truth, self.period)
        obs = self._obs = self._observe(self._hal.read(), truth)
        return obs, {"world": world, "schedule": self._schedule}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        assert self._hal is not None, "call reset() first"
        a = np.clip(np.asarray(action, float).reshape(-1), -1.0, 1.0)
        phase = self._gait.phase
        targets = self._base.copy()
        if self._residual:
            targets[self._columns] += self._scale * a
        else:
            targets[self._columns] = self._offset + self._scale * a
        self._hal.write(self._safety.apply(targets))
        previous, self._last = self._last, a
        self._ticks += 1
        sensors, truth = self._hal.read(), self._hal.truth()
        fell = fall_direction(truth)
        terms = self._reward_terms(a, previous, phase, sensors, truth)
        self._follow_schedule()
        try:
            obs = self._obs = self._observe(sensors, truth)
        except PlendError:  # the gait cannot go on (a foot out of reach): on the robot the walk ends
            obs, fell = self._obs, fell or "gait fault"
        if fell:
            terms["fall"] = self.weights.fall
        reward = float(sum(terms.values()))
        truncated = not fell and self._ticks >= self.max_episode_steps
        info = {"terms": terms, "fell": fell, "ticks": self._ticks, **self._progress(truth)}
        return obs, reward, fell is not None, truncated, info

    def close(self) -> None:
        if self._hal is not None:
            self._hal.close()
            self._hal = None

    def velocity(self) -> tuple[float, float, float]:
        """Forward and sideways speed (m/s) and yaw rate (rad/s) over the last gait period
        (ground truth), as the reward measures them."""
        return self._tracking.velocity(2 * self._half_period_ticks())

    # -- internals --------------------------------------------------------------------

    def _draw_schedule(self) -> Schedule:
        if not self.policy_spec.commands:
            return ((0.0, self.policy_spec.default_command()),)
        return self.sampler.draw(self.np_random, self.max_episode_steps * self.period)

    def _follow_schedule(self) -> None:
        command = command_at(self._schedule, self._ticks * self.period)
        if command != self._command:
            self._command = command
            if self._residual:
                self._gait.set_command(*command)

    def _progress(self, truth: TorsoTruth) -> dict[str, float]:
        moved = np.asarray(truth.position[:2]) - self._start
        across = np.array([-self._forward[1], self._forward[0]])
        yaw = math.degrees(wrap(truth.euler[2] - self._heading))
        return {"distance_m": float(moved @ self._forward), "lateral_m": float(moved @ across),
                "yaw_deg": yaw}  # fmt: skip

    def _open(self, world: SimWorld) -> None:
        self.close()
        hal = SimHal(world, initial_pose=stand_pose())
        hal.open(self.period)
        self._hal = hal
        self._safety = SafetyFilter.from_config(SafetyConfig(), self.period)
        self._safety.reset(hal.read().joint_pos)

    def _observe(self, sensors: Sensors, truth: TorsoTruth) -> np.ndarray:
        """Advance the gait as PolicyBehaviour does and build the observation after it."""
        gait = self._gait.update(sensors, self.period)
        self._base = gait if self._residual else stand_pose()
        ctx = ObsContext(sensors, self._last, self._gait.phase, self._command[0], truth, self._command)
        return self._builder.build(ctx)[0]

    def _pitch_angles(self) -> np.ndarray:
        assert self._hal is not None
        return self._hal.link_angles()[_PITCH] * _MIRROR

    def _reward_terms(
        self, a: np.ndarray, previous: np.ndarray, phase: float, sensors: Sensors, truth: TorsoTruth
    ) -> dict[str, float]:
        w = self.weights
        gait = self._gait
        self._tracking.update(truth, turning=gait.turn != 0.0)
        reference = sine_reference(gait.speed, gait.turn, gait.side)  # the command in effect
        roll, pitch, _ = truth.euler
        pitch_now = self._pitch_angles()
        frozen = float(np.mean(np.abs(pitch_now - self._pitch) < 2e-4))
        self._pitch = pitch_now
        return {
            **tracking_terms(w, self._tracking, reference, 2 * self._half_period_ticks()),
            "alive": w.alive,
            "upright": w.upright * (roll * roll + pitch * pitch),
            "symmetry": w.symmetry * self._symmetry(pitch_now),
            **self._contact_terms(phase, sensors.contacts),
            "frozen": w.frozen * frozen,
            "flat_feet": w.flat_feet * self._foot_tilt(sensors.contacts),
            "action": w.action * float(np.mean(a * a)),
            "action_rate": w.action_rate * float(np.mean((a - previous) ** 2)),
        }

    def _half_period_ticks(self) -> int:
        return max(1, round(0.5 * self._gait.params.period_s / self.period))

    def _symmetry(self, pitch_now: np.ndarray) -> float:
        """Right leg over [t - T, t - T/2) against the mirrored left leg over [t - T/2, t)."""
        half = self._half_period_ticks()
        self._history = np.vstack((self._history[-(2 * half - 1) :], pitch_now))
        if len(self._history) < 2 * half:
            return 0.0  # less than a period walked: nothing to compare yet
        return leg_similarity(self._history[:half, :3], self._history[half:, 3:])

    def _contact_terms(self, phase: float, contacts: tuple[bool, bool]) -> dict[str, float]:
        right, left = contacts
        # The right foot swings in the first half of the gait cycle, the left in the second.
        single = (left and not right) if phase < 0.5 else (right and not left)
        self._double = self._double + 1 if right and left else 0
        too_long = self._double > 2 * self._half_period_ticks() / 3
        return {
            "contact": self.weights.contact * float(single),
            "double_support": self.weights.double_support * float(too_long),
        }

    def _foot_tilt(self, contacts: tuple[bool, bool]) -> float:
        if not (contacts[0] or contacts[1]):
            return 0.0
        assert self._hal is not None
        feet = self._hal.foot_orientations()
        return sum(_tilt_of(quat) for quat, down in zip(feet, contacts, strict=True) if down)
