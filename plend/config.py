"""Configuration: frozen dataclasses, validated on construction, layered from TOML.

Layers: the packaged defaults below, then a TOML file (``/etc/plend/plend.toml`` or the
path given with ``--config``), then command-line options. Errors name the key path and
the bad value.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from plend.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/plend/plend.toml")


def _check_range(key: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{key} = {value!r} is out of range; use a value in [{lo}, {hi}]")


@dataclass(frozen=True)
class SimWorld:
    """The simulated world and robot; change these to test the robot's robustness.

    Attributes:
        friction: ground and sole friction coefficient.
        mass_scale: every link's mass multiplied by this.
        mass_jitter: each link's mass also multiplied by a seeded random factor in
            [1 - jitter, 1 + jitter].
        actuation_delay_ticks: a command reaches the servos this many ticks late.
        substeps: physics steps per control tick.
        solver_iterations: constraint solver iterations per physics step.
        seed: seeds every random choice of the simulation (jitter, noise).
        joint_noise_rad: standard deviation of the joint angle readings' noise.
        gyro_noise_rad_s: standard deviation of the gyro readings' noise.
        servo_torque_nm: servo stall torque.
        servo_speed_rad_s: servo no-load speed.
        servo_armature_kgm2: rotor inertia seen through the gear train, added to each
            servo-driven link.
        gui: open the PyBullet window instead of running headless.
    """

    friction: float = 0.8
    mass_scale: float = 1.0
    mass_jitter: float = 0.0
    actuation_delay_ticks: int = 0
    substeps: int = 3
    solver_iterations: int = 20
    seed: int = 0
    joint_noise_rad: float = 0.0
    gyro_noise_rad_s: float = 0.0
    servo_torque_nm: float = 0.14
    servo_speed_rad_s: float = 9.5
    servo_armature_kgm2: float = 2e-5
    gui: bool = False

    def __post_init__(self) -> None:
        _check_range("sim.friction", self.friction, 0.05, 3.0)
        _check_range("sim.mass_scale", self.mass_scale, 0.2, 5.0)
        _check_range("sim.mass_jitter", self.mass_jitter, 0.0, 0.5)
        _check_int("sim.actuation_delay_ticks", self.actuation_delay_ticks, 0, 20)
        _check_int("sim.substeps", self.substeps, 1, 100)
        _check_int("sim.solver_iterations", self.solver_iterations, 5, 500)
        _check_int("sim.seed", self.seed, 0, 2**32 - 1)
        _check_range("sim.joint_noise_rad", self.joint_noise_rad, 0.0, 0.2)
        _check_range("sim.gyro_noise_rad_s", self.gyro_noise_rad_s, 0.0, 2.0)
        _check_range("sim.servo_torque_nm", self.servo_torque_nm, 0.01, 5.0)
        _check_range("sim.servo_speed_rad_s", self.servo_speed_rad_s, 0.5, 50.0)
        _check_range("sim.servo_armature_kgm2", self.servo_armature_kgm2, 0.0, 1e-3)


def _check_int(key: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    _check_range(key, value, lo, hi)


@dataclass(frozen=True)
class LoopConfig:
    """The control loop. ``rate_hz`` is the tick rate."""

    rate_hz: float = 50.0

    def __post_init__(self) -> None:
        _check_range("loop.rate_hz", self.rate_hz, 5.0, 200.0)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    hal: str = "sim"
    loop: LoopConfig = field(default_factory=LoopConfig)
    sim: SimWorld = field(default_factory=SimWorld)


T = TypeVar("T")


def _build(cls: type[T], data: dict[str, Any], prefix: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}; valid keys: {', '.join(fields)}")
        sub = fields[key].default_factory  # type: ignore[misc]
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a table, got {value!r}")
            kwargs[key] = _build(sub, value, f"{path}.")  # type: ignore[arg-type]
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad value in [{prefix.rstrip('.') or 'top level'}]: {exc}") from None


def from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dictionaries (TOML layout)."""
    return _build(Config, data, "")


def load(path: Path | None) -> Config:
    """Load the defaults overlaid with ``path`` (if it exists or was asked for)."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return from_dict(data)


def replace_section(config: Config, section: str, **changes: Any) -> Config:
    """Return ``config`` with fields of one section replaced (validated again)."""
    current = getattr(config, section)
    return dataclasses.replace(config, **{section: dataclasses.replace(current, **changes)})


def as_dict(config: Config) -> dict[str, Any]:
    """The configuration as nested dictionaries."""
    return dataclasses.asdict(config)
