"""A gymnasium environment for learning to walk: the daemon's own robot, filter and observations.

:class:`WalkEnv` steps the same :class:`~plend.hal.sim.SimHal`, joint table,
:class:`~plend.control.safety.SafetyFilter` and :class:`~policies.contract.ObservationBuilder` the
daemon uses, and turns an action into joint targets exactly as
:class:`~policies.runner.PolicyBehaviour` does: in residual mode (the default) the targets
are the sine gait's plus ``action_scale * action`` on the action joints. A policy trained
here therefore sees on the robot what it saw in training.

Reward: the biologically inspired terms of the original PLEN TD3 work, with its defects
fixed. Per 50 Hz tick, with weights from :class:`RewardWeights`:

========================  ======  ============================================================
term                      weight  what it measures
========================  ======  ============================================================
``forward``               20      torso displacement along its starting heading over the tick,
                                  divided by the tick (m/s, ground truth), clipped to +-0.1 m/s;
                                  linear, so walking backwards is penalised (the original
                                  rewarded it). The clip (over 3x the sine gait's speed) keeps
                                  a lunge or a fall forward, which moves the torso fast, from
                                  paying more than walking.
``drift``                 -10     sideways drift: the torso's displacement across its starting
                                  heading over the last gait period, divided by the period
                                  (m/s, ground truth), absolute. Over a whole period the
                                  gait's side-to-side sway cancels, so only walking off
                                  course costs.
``alive``                 0.2     for every tick not fallen, so ending an episode early by
                                  falling never pays.
``upright``               -2      roll^2 + pitch^2 of the torso (rad^2, ground truth).
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
``fall``                  -50     once, when the episode ends in a fall: more than a lunge
                                  forward can earn before the fall is detected.
========================  ======  ============================================================

An episode ends in a fall when the torso tilts more than 50 degrees from upright in any
direction (forward, backward or sideways: the original checked only one side) or its
origin drops below 0.09 m. It is truncated after ``max_episode_steps`` ticks.

On reset the simulation is reopened with the robot standing (the old one is closed
first), held in the stand pose for ``settle_ticks`` ticks as the daemon's blend does, and
the gait starts from standing. With ``randomise`` the world is drawn from the env's
``np_random``: friction in [0.5, 1.0], per-link mass jitter up to 20 %, an actuation delay
of 0 or 1 tick, and joint and gyro noise.

Ground truth (torso pose, foot link orientation) feeds only the reward and the fall
check; the default observation uses nothing a real robot lacks. The foot orientation and
the joints' true angles come from the simulation's state (plend.hal.base.SimulationState).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from gaits.sine import stand_pose
from plend.control.safety import SafetyFilter
from plend.core.config import SafetyConfig, SimWorld
from plend.hal.base import Sensors
from plend.hal.sim import SimHal, TorsoTruth
from plend.model.robot import JOINT_NAMES, LEG_JOINT_NAMES
from policies.contract import LEGACY_LAYOUT, ObsContext, ObservationBuilder, PolicySpec
from policies.runner import policy_gait

LEG_JOINTS: tuple[str, ...] = LEG_JOINT_NAMES["right"] + LEG_JOINT_NAMES["left"]
DEFAULT_OBSERVATION: tuple[tuple[str, int], ...] = (
    ("joint_pos", 18), ("projected_gravity", 3), ("gyro", 3),
    ("last_action", len(LEG_JOINTS)), ("gait_phase", 2), ("command_speed", 1),
)  # fmt: skip
FALL_TILT_RAD = math.radians(50.0)
FALL_HEIGHT_M = 0.09
SETTLE_TICKS = 15  # the supervisor's minimum blend: 0.3 s at 50 Hz

# Hip pitch, knee, ankle pitch of each leg. Their axes mirror between the legs, so the
# left angles are negated to compare them with the right ones.
_PITCH = [JOINT_NAMES.index(n) for side in ("right", "left") for n in LEG_JOINT_NAMES[side][2:5]]
_MIRROR = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])


def make_spec(
    legacy_obs: bool = False, speed: float = 0.5, rate_hz: float = 50.0, balance: bool = False
) -> PolicySpec:
    """The default training spec: 12 leg residuals of 0.1 rad on the sine gait at ``speed``.

    With ``legacy_obs`` the observation is the original 26-value layout (it needs ground
    truth, so such a policy runs in simulation only); with ``balance`` the gait under the
    residuals runs its balance layer (and so will it on the robot).
    """
    return PolicySpec(
        observation=LEGACY_LAYOUT if legacy_obs else DEFAULT_OBSERVATION,
        action_joints=LEG_JOINTS, action_mode="residual", action_scale=(0.1,) * len(LEG_JOINTS),
        rate_hz=rate_hz, gait_speed=speed, gait_balance=balance,
    )  # fmt: skip


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (see the module docstring); penalties are negative."""

    forward: float = 20.0
    max_speed_m_s: float = 0.1  # the forward term's clip
    drift: float = -10.0
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


def random_world(rng: np.random.Generator) -> SimWorld:
    """A world drawn for domain randomisation."""
    return SimWorld(
        friction=float(rng.uniform(0.5, 1.0)), mass_jitter=float(rng.uniform(0.0, 0.2)),
        actuation_delay_ticks=int(rng.integers(0, 2)), seed=int(rng.integers(0, 2**31)),
        joint_noise_rad=float(rng.uniform(0.0, 0.01)), gyro_noise_rad_s=float(rng.uniform(0.0, 0.05)),
    )  # fmt: skip


def _tilt_of(quat_xyzw: tuple[float, ...]) -> float:
    x, y = quat_xyzw[0], quat_xyzw[1]
    return math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y))))  # angle of the local z axis


class WalkEnv(gym.Env):  # type: ignore[misc]
    """Walking in simulation under a :class:`PolicySpec` (``policy_spec``; gymnasium owns
    ``spec``); actions in [-1, 1].

    Args:
        spec: the policy contract (default :func:`make_spec`).
        legacy_obs: with no ``spec``, use the original 26-value observation.
        randomise: draw a new world on every reset; otherwise use ``world``.
        world: the world when not randomising (default: the nominal one).
        max_episode_steps: ticks before truncation (500 = 10 s at 50 Hz).
        settle_ticks: ticks holding the stand pose before the gait starts.
        weights: reward weights.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        spec: PolicySpec | None = None,
        *,
        legacy_obs: bool = False,
        randomise: bool = True,
        world: SimWorld | None = None,
        max_episode_steps: int = 500,
        settle_ticks: int = SETTLE_TICKS,
        weights: RewardWeights | None = None,
    ):
        spec = self.policy_spec = spec or make_spec(legacy_obs)
        spec.validate()
        self.randomise = randomise
        self.world = world or SimWorld()
        self.max_episode_steps = max_episode_steps
        self.settle_ticks = settle_ticks
        self.weights = weights or RewardWeights()
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
        world = random_world(self.np_random) if self.randomise else self.world
        self._open(world)
        assert self._hal is not None
        for _ in range(self.settle_ticks):
            self._hal.write(self._safety.apply(stand_pose()))
        self._gait = policy_gait(self.policy_spec)
        self._last = np.zeros(len(self._columns))
        self._ticks = 0
        self._double = 0
        self._history = np.zeros((0, 6))
        self._pitch = self._pitch_angles()
        truth = self._hal.truth()
        self._heading = truth.euler[2]
        self._forward = np.array([math.cos(self._heading), math.sin(self._heading)])
        self._start = np.asarray(truth.position[:2])
        self._position = self._start.copy()
        self._lateral: list[float] = []
        obs = self._observe(self._hal.read(), truth)
        return obs, {"world": world}

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
        if fell:
            terms["fall"] = self.weights.fall
        reward = float(sum(terms.values()))
        obs = self._observe(sensors, truth)
        truncated = not fell and self._ticks >= self.max_episode_steps
        distance = float((self._position - self._start) @ self._forward)
        info = {"terms": terms, "fell": fell, "distance_m": distance, "ticks": self._ticks}
        return obs, reward, fell is not None, truncated, info

    def close(self) -> None:
        if self._hal is not None:
            self._hal.close()
            self._hal = None

    # -- internals --------------------------------------------------------------------

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
        ctx = ObsContext(sensors, self._last, self._gait.phase, self.policy_spec.gait_speed, truth)
        return self._builder.build(ctx)[0]

    def _pitch_angles(self) -> np.ndarray:
        assert self._hal is not None
        return self._hal.link_angles()[_PITCH] * _MIRROR

    def _reward_terms(
        self, a: np.ndarray, previous: np.ndarray, phase: float, sensors: Sensors, truth: TorsoTruth
    ) -> dict[str, float]:
        w = self.weights
        position = np.asarray(truth.position[:2])
        velocity = float((position - self._position) @ self._forward) / self.period
        velocity = max(-w.max_speed_m_s, min(w.max_speed_m_s, velocity))
        self._position = position
        roll, pitch, _ = truth.euler
        pitch_now = self._pitch_angles()
        frozen = float(np.mean(np.abs(pitch_now - self._pitch) < 2e-4))
        self._pitch = pitch_now
        return {
            "forward": w.forward * velocity,
            "drift": w.drift * self._drift(position),
            "alive": w.alive,
            "upright": w.upright * (roll * roll + pitch * pitch),
            "symmetry": w.symmetry * self._symmetry(pitch_now),
            **self._contact_terms(phase, sensors.contacts),
            "frozen": w.frozen * frozen,
            "flat_feet": w.flat_feet * self._foot_tilt(sensors.contacts),
            "action": w.action * float(np.mean(a * a)),
            "action_rate": w.action_rate * float(np.mean((a - previous) ** 2)),
        }

    def _drift(self, position: np.ndarray) -> float:
        """Sideways speed over the last gait period (0 until a period is walked)."""
        across = np.array([-self._forward[1], self._forward[0]])
        period = 2 * self._half_period_ticks()
        self._lateral = [*self._lateral[-period:], float((position - self._start) @ across)]
        if len(self._lateral) <= period:
            return 0.0
        return abs(self._lateral[-1] - self._lateral[0]) / (period * self.period)

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
