"""The robustness suite: seeded worlds that differ from the model as a real PLEN2 does.

World ``n`` of the suite is :func:`draw_world` ``(n)``: a :class:`~plend.model.sim_world.SimWorld`
(a plain frozen value) whose factors are drawn from ``n`` alone, each factor from its own
stream, so a world keeps its sole heights whichever other factors are drawn with it.
Drawn values are rounded, so the world printed as config (:func:`world_toml`) is exactly
the world that ran. The ranges are those of the robustness issue: what is left after
building and calibrating a real robot, not what it could survive at most.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from plend.core.errors import ConfigError
from plend.model.robot import JOINT_NAMES
from plend.model.sim_world import ServoModel, SimWorld

Draw = dict[str, Any]


def _friction(rng: np.random.Generator) -> Draw:
    return {"friction": _r(rng.uniform(0.4, 1.0), 3)}


def _rolling(rng: np.random.Generator) -> Draw:
    return {
        "rolling_friction": _r(rng.uniform(0.0, 0.002), 5),
        "spinning_friction": _r(rng.uniform(0.0, 0.005), 5),
    }


def _masses(rng: np.random.Generator) -> Draw:
    return {"mass_jitter": 0.2}  # each link's factor is drawn in the simulation from the world's seed


def _torso_com(rng: np.random.Generator) -> Draw:
    return {"torso_com_mm": tuple(_r(v, 2) for v in rng.uniform(-6.0, 6.0, 3))}


def _sole_height(rng: np.random.Generator) -> Draw:
    right, left = rng.uniform(-6.0, 6.0, 2)
    return {"sole_height_right_mm": _r(right, 2), "sole_height_left_mm": _r(left, 2)}


def _sole_shape(rng: np.random.Generator) -> Draw:
    if rng.uniform() < 0.5:
        return {"sole_edge_radius_mm": 0.0, "sole_crown_mm": 0.0}
    return {
        "sole_edge_radius_mm": _r(rng.uniform(1.0, 6.0), 2),
        "sole_crown_mm": _r(rng.uniform(0.0, 1.0), 2),
    }


def _floor(rng: np.random.Generator) -> Draw:
    return {"floor_tilt_deg": _r(rng.uniform(0.0, 3.0), 2),
            "floor_tilt_direction_deg": _r(rng.uniform(-180.0, 180.0), 1)}  # fmt: skip


def _imu_bias(rng: np.random.Generator) -> Draw:
    return {"imu_bias_deg": tuple(_r(v, 2) for v in rng.uniform(-2.0, 2.0, 3))}


def _push(rng: np.random.Generator) -> Draw:
    return {"push_impulse_ns": _r(rng.uniform(0.02, PUSH_MAX_NS), 4),
            "push_at_s": _r(rng.uniform(5.0, 15.0), 2),
            "push_direction_deg": _r(rng.uniform(-180.0, 180.0), 1)}  # fmt: skip


def _noise(rng: np.random.Generator) -> Draw:
    return {
        "joint_noise_rad": _r(rng.uniform(0.0, 0.005), 5),
        "gyro_noise_rad_s": _r(rng.uniform(0.0, 0.03), 4),
    }


def _servo_delay(rng: np.random.Generator) -> Draw:
    # Every servo gets its pulse in the same PWM frame: one delay for all.
    return {"servo": {"delay_ms": _r(rng.uniform(0.0, 40.0), 2)}}


def _per_joint(key: str, lo: float, hi: float, digits: int) -> Callable[[np.random.Generator], Draw]:
    def draw(rng: np.random.Generator) -> Draw:
        values = rng.uniform(lo, hi, len(JOINT_NAMES))
        return {
            "servo_joints": {name: {key: _r(v, digits)} for name, v in zip(JOINT_NAMES, values, strict=True)}
        }

    return draw


def _servo_strength(rng: np.random.Generator) -> Draw:
    speed, torque = rng.uniform(0.7, 1.3, (2, len(JOINT_NAMES)))
    nominal = SimWorld()
    return {"servo_joints": {
        name: {"speed_rad_s": _r(nominal.servo_speed_rad_s * s, 3),
               "torque_nm": _r(nominal.servo_torque_nm * t, 4)}
        for name, s, t in zip(JOINT_NAMES, speed, torque, strict=True)
    }}  # fmt: skip


PUSH_MAX_NS = 0.06

FACTORS: dict[str, Callable[[np.random.Generator], Draw]] = {
    "sole_height": _sole_height,
    "sole_shape": _sole_shape,
    "friction": _friction,
    "rolling": _rolling,
    "masses": _masses,
    "torso_com": _torso_com,
    "servo_backlash": _per_joint("backlash_deg", 0.0, 2.0, 3),
    "servo_dead_band": _per_joint("dead_band_deg", 0.0, 1.0, 3),
    "servo_delay": _servo_delay,
    "servo_lag": _per_joint("time_constant_ms", 5.0, 20.0, 2),
    "servo_strength": _servo_strength,
    "offsets": _per_joint("offset_deg", -1.5, 1.5, 3),
    "imu_bias": _imu_bias,
    "floor": _floor,
    "push": _push,
    "noise": _noise,
}
"""Every factor of the suite, by name: what it draws (see the module docstring)."""


def _r(value: float, digits: int) -> float:
    return round(float(value), digits)


def check_factors(names: Iterable[str]) -> tuple[str, ...]:
    """The factor names, checked; an unknown one lists the valid ones."""
    chosen = tuple(names)
    for name in chosen:
        if name not in FACTORS:
            raise ConfigError(f"unknown robustness factor {name!r}; choose from: {', '.join(FACTORS)}")
    return chosen


def draw_world(n: int, base: SimWorld | None = None, factors: Iterable[str] | None = None) -> SimWorld:
    """World ``n`` of the suite: ``base`` (default: the nominal world) with every factor in
    ``factors`` (default: all) drawn from ``n``; the world's own seed is ``n``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**32:
        raise ConfigError(f"world seed {n!r} is out of range; use an integer in [0, {2**32 - 1}]")
    base = base or SimWorld()
    changes: dict[str, Any] = {}
    servo: dict[str, Any] = {}
    joints: dict[str, dict[str, float]] = {name: dict(t) for name, t in base.servo.joints.items()}
    chosen = check_factors(FACTORS if factors is None else factors)
    for index, name in enumerate(FACTORS):
        if name not in chosen:
            continue
        draw = FACTORS[name](np.random.default_rng([n, index]))
        servo.update(draw.pop("servo", {}))
        for joint, table in draw.pop("servo_joints", {}).items():
            joints.setdefault(joint, {}).update(table)
        changes.update(draw)
    model = dataclasses.replace(base.servo, **servo, joints=joints)
    return dataclasses.replace(base, **changes, servo=model, seed=n)


# -- printing a world as config --------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def world_toml(world: SimWorld, only_changes: bool = True) -> str:
    """``world`` as the ``[sim]`` tables of a config file (by default only what differs
    from the nominal world, and the seed)."""
    nominal = SimWorld()
    lines = ["[sim]"]
    for f in dataclasses.fields(SimWorld):
        value = getattr(world, f.name)
        if f.name == "servo" or (only_changes and value == getattr(nominal, f.name) and f.name != "seed"):
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    servo = [
        f"{f.name} = {_toml_value(getattr(world.servo, f.name))}"
        for f in dataclasses.fields(ServoModel)
        if f.name != "joints"
        and not (only_changes and getattr(world.servo, f.name) == getattr(nominal.servo, f.name))
    ]
    if servo or not only_changes:
        lines += ["", "[sim.servo]", *servo]
    if world.servo.joints:
        lines += ["", "[sim.servo.joints]"]
    for name, table in world.servo.joints.items():
        lines.append(f"{name} = {{{', '.join(f'{k} = {_toml_value(v)}' for k, v in table.items())}}}")
    return "\n".join(lines) + "\n"
