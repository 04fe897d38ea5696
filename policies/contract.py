"""The policy contract: what a policy file says it needs, and the one observation builder.

A policy is an ONNX model with one float input (the observation) and one float output
(the action), and a JSON document in its metadata under ``plend.policy`` naming the
observation fields in order, the action joints and how actions become radians, and the
control rate it was trained at. The same :class:`ObservationBuilder` runs in training and
in the daemon, so the robot feeds the network exactly what the simulator did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaits.balance import SINE_GAINS, BalanceError, trained_gains
from gaits.sine import GaitError, SpeedMap, stand_pose
from plend.core.errors import PlendError
from plend.core.files import parse_json
from plend.hal.base import Sensors
from plend.model.robot import JOINT_NAMES, NUM_JOINTS

FORMAT_VERSION = 1
METADATA_KEY = "plend.policy"
# The sine gait's options (``[gait]`` names) a policy may record, and what a policy that
# does not record one walks on: the gait as it was before the option existed.
GAIT_OPTIONS: dict[str, float | bool] = {"stride_exponent": 1.0, "heading_average": False}
# The range of each number in the metadata that a walking policy can use, with its unit.
# A value outside (NaN, infinite, 1e308) is refused at load: the safety filter would
# otherwise clip every tick, or the robot fall.
NUMBER_RANGES: dict[str, tuple[float, float, str]] = {
    "action.scale": (-math.pi, math.pi, "rad per action unit"),
    "action.offset": (-math.pi, math.pi, "rad"),
    "rate_hz": (5.0, 200.0, "Hz, what the loop can run"),
    "gait_speed": (-1.0, 1.0, "the sine gait's speed"),
    "observation size": (1, 1000, "values"),
}


class PolicyError(PlendError, ValueError):
    """A policy file cannot be used; the message says why."""


@dataclass
class ObsContext:
    """Everything an observation source may read on one tick."""

    sensors: Sensors
    last_action: np.ndarray
    gait_phase: float = 0.0
    speed: float = 0.0
    # The torso's pose: ground truth in simulation, the camera's estimate on the robot
    # (plend.daemon.pose.PoseEstimate); either way position, euler and velocity in the floor frame.
    truth: Any = None
    # The walking command (speed, turn, side), each in [-1, 1] as for the sine gait.
    command: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _gravity(ctx: ObsContext) -> np.ndarray:
    w, x, y, z = ctx.sensors.imu.quat
    # World -z expressed in the torso frame: third row of R^T, negated.
    return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])


def _joints(ctx: ObsContext) -> np.ndarray:
    q = ctx.sensors.joint_pos
    return np.where(np.isfinite(q), q, stand_pose())  # no feedback (elbows): their stand value


def _phase(phase: float) -> np.ndarray:
    return np.array([math.sin(2 * math.pi * phase), math.cos(2 * math.pi * phase)])


def _truth(index: Callable[[Any], float]) -> Callable[[ObsContext], np.ndarray]:
    return lambda ctx: np.array([index(ctx.truth)])


# name -> (size or None for "number of actions", unit, needs the torso's pose, builder).
# The torso's pose is ground truth in simulation; on the robot it comes from the camera.
SOURCES: dict[str, tuple[int | None, str, bool, Callable[[ObsContext], np.ndarray]]] = {
    "joint_pos": (NUM_JOINTS, "rad", False, _joints),
    "torso_euler": (3, "rad", False, lambda c: np.asarray(c.sensors.imu.euler)),
    "roll_pitch": (2, "rad", False, lambda c: np.asarray(c.sensors.imu.euler[:2])),
    "gyro": (3, "rad/s", False, lambda c: np.asarray(c.sensors.imu.gyro)),
    "projected_gravity": (3, "1", False, _gravity),
    "foot_contacts": (2, "bool", False, lambda c: np.asarray(c.sensors.contacts, float)),
    "last_action": (None, "1", False, lambda c: c.last_action),
    "gait_phase": (2, "1", False, lambda c: _phase(c.gait_phase)),
    "command_speed": (1, "1", False, lambda c: np.array([c.speed])),
    "command": (3, "1", False, lambda c: np.asarray(c.command)),
    "torso_height": (1, "m", True, _truth(lambda t: t.position[2])),
    "forward_velocity": (1, "m/s", True, _truth(lambda t: t.velocity[0])),
    "lateral_position": (1, "m", True, _truth(lambda t: t.position[1])),
    "world_yaw": (1, "rad", True, _truth(lambda t: t.euler[2])),
}  # fmt: skip

LEGACY_LAYOUT = (
    ("joint_pos", NUM_JOINTS),
    ("torso_height", 1),
    ("forward_velocity", 1),
    ("torso_euler", 3),
    ("lateral_position", 1),
    ("foot_contacts", 2),
)
"""The original 26-value observation: 18 joint angles, torso height, forward velocity,
roll, pitch, yaw, lateral position, right and left contact."""

COMMANDS = ("speed", "turn", "side")
"""The walking command a policy takes, in the sine gait's units: each in [-1, 1],
positive forward and to the left."""


def sources_without_truth() -> frozenset[str]:
    """Sources a real robot can provide without a camera."""
    return frozenset(n for n, (_, _, truth, _) in SOURCES.items() if not truth)


def pose_sources() -> frozenset[str]:
    """Sources that need the torso's pose: ground truth, or a camera on the robot."""
    return frozenset(n for n, (_, _, truth, _) in SOURCES.items() if truth)


@dataclass(frozen=True)
class PolicySpec:
    """What a policy needs and how its actions become joint targets.

    Attributes:
        observation: (source name, size) in input order.
        action_joints: the joints the action drives, in output order.
        action_mode: "absolute" (targets = offset + scale * action) or "residual"
            (targets = sine gait at ``gait_speed`` + scale * action).
        action_scale: radians per action unit, one per action joint.
        action_offset: radians at action 0 in absolute mode, one per action joint.
        rate_hz: the control rate it was trained at.
        gait_balance: in residual mode, the sine gait under the policy runs with its
            balance layer (gaits.balance), as it did in training.
        commands: the range (low, high) of each command (speed, turn, side) the policy
            was trained for; a command it does not name is fixed: the speed at
            ``gait_speed``, turn and side at 0.
        gait_heading: the heading hold of the gait it trained on: (gain, bias gain,
            largest steering in rad per step); empty: the gait's original (0.5, 0, 0.12).
        gait_gains: the balance gains (gaits.balance.GAIN_RANGES names) the gait had
            when the policy trained, by name; under the policy the gait runs with these.
            A gain it does not name and that was retuned since policies first learnt on
            the balanced gait (gaits.balance.RETUNED) runs at its original value; empty:
            all of those at their original values (policies trained before it existed).
        gait_options: the sine gait's options (:data:`GAIT_OPTIONS` names: the ``[gait]``
            stride exponent and heading averaging) it trained with, by name; under the
            policy the gait runs with these whatever ``[gait]`` says. One it does not
            name runs as before the option existed (stride in proportion to speed, heading
            sampled at step boundaries).
    """

    observation: tuple[tuple[str, int], ...]
    action_joints: tuple[str, ...]
    action_mode: str = "residual"
    action_scale: tuple[float, ...] = ()
    action_offset: tuple[float, ...] = ()
    rate_hz: float = 50.0
    gait_speed: float = 0.5
    gait_balance: bool = False
    commands: dict[str, tuple[float, float]] = field(default_factory=dict)
    gait_heading: tuple[float, ...] = ()
    gait_gains: dict[str, float] = field(default_factory=dict)
    gait_options: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def observation_size(self) -> int:
        return sum(size for _, size in self.observation)

    def to_json(self) -> str:
        data = {
            "format_version": self.format_version,
            "observation": [{"name": n, "size": s, "unit": SOURCES[n][1]} for n, s in self.observation],
            "action": {
                "joints": list(self.action_joints), "mode": self.action_mode,
                "scale": list(self.action_scale), "offset": list(self.action_offset),
            },
            "rate_hz": self.rate_hz,
            "gait_speed": self.gait_speed,
            "gait_balance": self.gait_balance,
            "notes": self.notes,
        }  # fmt: skip
        if self.commands:
            data["commands"] = {k: list(v) for k, v in self.commands.items()}
        if self.gait_heading:
            data["gait_heading"] = list(self.gait_heading)
        if self.gait_gains:
            data["gait_gains"] = dict(self.gait_gains)
        if self.gait_options:
            data["gait_options"] = dict(self.gait_options)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> PolicySpec:
        try:
            data = parse_json(text, f"its '{METADATA_KEY}' metadata")
            action = data["action"]
            spec = cls(
                observation=tuple((f["name"], int(f["size"])) for f in data["observation"]),
                action_joints=tuple(action["joints"]), action_mode=action["mode"],
                action_scale=tuple(float(v) for v in action["scale"]),
                action_offset=tuple(float(v) for v in action.get("offset", ())),
                rate_hz=float(data["rate_hz"]), gait_speed=float(data.get("gait_speed", 0.5)),
                gait_balance=data.get("gait_balance", False),
                commands={str(k): (float(v[0]), float(v[1])) for k, v in data.get("commands", {}).items()},
                gait_heading=tuple(float(v) for v in data.get("gait_heading", ())),
                gait_gains={str(k): float(v) for k, v in data.get("gait_gains", {}).items()},
                gait_options={str(k): v for k, v in dict(data.get("gait_options", {})).items()},
                format_version=int(data["format_version"]), notes=dict(data.get("notes", {})),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise PolicyError(
                f"its '{METADATA_KEY}' metadata is malformed ({type(exc).__name__}: {exc})"
            ) from None
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise :class:`PolicyError` unless the spec fits this robot."""
        if self.format_version != FORMAT_VERSION:
            raise PolicyError(
                f"policy format {self.format_version} is not supported (this plend reads {FORMAT_VERSION})"
            )
        self._validate_numbers()
        n = len(self.action_joints)
        for name, size in self.observation:
            expected = SOURCES[name][0] if name in SOURCES else -1
            if name not in SOURCES:
                raise PolicyError(f"unknown observation source {name!r}; known: {', '.join(SOURCES)}")
            if size != (n if expected is None else expected):
                raise PolicyError(
                    f"observation {name} has size {size}, expected {n if expected is None else expected}"
                )
        unknown = [j for j in self.action_joints if j not in JOINT_NAMES]
        if unknown or len(set(self.action_joints)) != n or n == 0:
            raise PolicyError(
                f"action joints {unknown or list(self.action_joints)} do not match this robot's joints"
            )
        if self.action_mode not in ("absolute", "residual"):
            raise PolicyError(f"action mode {self.action_mode!r} is not 'absolute' or 'residual'")
        if len(self.action_scale) != n or (self.action_mode == "absolute" and len(self.action_offset) != n):
            raise PolicyError("action scale (and offset, in absolute mode) need one value per action joint")
        if not isinstance(self.gait_balance, bool):
            raise PolicyError(f"gait_balance must be true or false, got {self.gait_balance!r}")
        self._validate_commands()

    def _validate_numbers(self) -> None:
        """Refuse the first number outside :data:`NUMBER_RANGES`, naming it, its value and the range."""
        values: list[tuple[str, str, Any]] = [
            *(("observation size", f"observation size ({name})", size) for name, size in self.observation),
            *(("action.scale", f"action.scale[{i}]", v) for i, v in enumerate(self.action_scale)),
            *(("action.offset", f"action.offset[{i}]", v) for i, v in enumerate(self.action_offset)),
            ("rate_hz", "rate_hz", self.rate_hz), ("gait_speed", "gait_speed", self.gait_speed),
        ]  # fmt: skip
        for key, label, value in values:
            check_number(label, value, NUMBER_RANGES[key])

    def _validate_commands(self) -> None:
        for name, bounds in self.commands.items():
            if name not in COMMANDS:
                raise PolicyError(f"unknown command {name!r} in its metadata; known: {', '.join(COMMANDS)}")
            low, high = bounds
            if not (math.isfinite(low) and math.isfinite(high) and -1.0 <= low <= high <= 1.0):
                raise PolicyError(f"command range {name} {list(bounds)} must lie within [-1, 1], low first")
        if self.commands and self.action_mode != "residual":
            raise PolicyError("commands need a residual policy (the sine gait under it takes them)")
        heading = self.gait_heading
        if heading and not (len(heading) == 3 and all(math.isfinite(v) and 0 <= v <= 2 for v in heading)):
            raise PolicyError(
                f"gait_heading {list(heading)} must be [gain, bias gain, max turn rad], each in [0, 2]"
            )
        self._validate_gains()
        self._validate_options()

    def _validate_gains(self) -> None:
        if not self.gait_gains:
            return
        if not self.gait_balance:
            raise PolicyError("gait_gains need gait_balance: the gains are the balance layer's")
        try:
            trained_gains(SINE_GAINS, self.gait_gains)
        except BalanceError as exc:
            raise PolicyError(f"gait_gains: {exc}") from None

    def _validate_options(self) -> None:
        options = self.gait_options
        unknown = sorted(set(options) - set(GAIT_OPTIONS))
        if unknown:
            raise PolicyError(
                f"gait_options: unknown option(s) {', '.join(unknown)}; known: {', '.join(GAIT_OPTIONS)}"
            )
        if options and self.action_mode != "residual":
            raise PolicyError("gait_options need a residual policy (they shape the sine gait under it)")
        try:
            SpeedMap(stride_exponent=options.get("stride_exponent", 1.0))
        except GaitError as exc:
            raise PolicyError(f"gait_options: {exc}") from None
        if not isinstance(options.get("heading_average", False), bool):
            raise PolicyError(
                f"gait_options: heading_average must be true or false, got {options['heading_average']!r}"
            )

    def gait_option(self, name: str) -> Any:
        """The gait option ``name`` the policy trained with: recorded, or as before it existed."""
        return self.gait_options.get(name, GAIT_OPTIONS[name])

    def command_range(self, name: str) -> tuple[float, float]:
        """The range of command ``name`` the policy was trained for."""
        if name in self.commands:
            return self.commands[name]
        fixed = self.gait_speed if name == "speed" else 0.0
        return (fixed, fixed)

    def default_command(self) -> tuple[float, float, float]:
        """What the policy walks on when started without a command: its gait speed (within
        its range), no turn, no side step."""
        low, high = self.command_range("speed")
        speed = min(max(self.gait_speed, low), high)
        turn, side = (min(max(0.0, lo), hi) for lo, hi in map(self.command_range, COMMANDS[1:]))
        return (speed, turn, side)

    def check_command(self, speed: float, turn: float, side: float) -> tuple[float, float, float]:
        """The command, checked against the ranges the policy was trained for; a value
        outside its range (or not finite) raises :class:`PolicyError` naming the range."""
        for name, value in zip(COMMANDS, (speed, turn, side), strict=True):
            low, high = self.command_range(name)
            number = isinstance(value, (int, float)) and math.isfinite(value)
            if not (number and low - 1e-9 <= value <= high + 1e-9):
                trained = f"[{low:g}, {high:g}]" if low != high else f"only {low:g}"
                raise PolicyError(f"{name} {value!r} is outside what this policy was trained for: {trained}")
        return (float(speed), float(turn), float(side))


def _shown_number(value: Any) -> str:
    text = repr(value)
    if len(text) <= 24:
        return text
    try:
        return f"{float(value):g}"  # an integer of hundreds of digits (1e308 made whole) as 1e+308
    except (OverflowError, TypeError, ValueError):
        return f"{text[:12]}... ({len(text)} characters)"


def check_number(label: str, value: Any, allowed: tuple[float, float, str]) -> None:
    """Raise :class:`PolicyError` unless ``value`` is a finite number within ``allowed``
    (low, high, meaning); the message names ``label``, the value and the range."""
    low, high, meaning = allowed
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and low <= value <= high):
        raise PolicyError(
            f"{label} = {_shown_number(value)} is outside the allowed range [{low:.4g}, {high:.4g}] "
            f"({meaning}); export the policy again with a value in that range"
        )


class ObservationBuilder:
    """Builds the observation vector of a spec, identically in training and on the robot."""

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self._builders = [(SOURCES[name][3], size) for name, size in spec.observation]

    def build(self, ctx: ObsContext) -> np.ndarray:
        parts = [np.asarray(builder(ctx), dtype=np.float32).reshape(size) for builder, size in self._builders]
        return np.concatenate(parts)[None, :]


def legacy_spec(rate_hz: float = 50.0) -> PolicySpec:
    """The original project's layout: 26 observations, 18 absolute joint targets."""
    return PolicySpec(
        observation=LEGACY_LAYOUT, action_joints=JOINT_NAMES, action_mode="absolute",
        action_scale=(1.0,) * NUM_JOINTS, action_offset=(0.0,) * NUM_JOINTS, rate_hz=rate_hz,
    )  # fmt: skip
