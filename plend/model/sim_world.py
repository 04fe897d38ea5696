"""The simulated world (``[sim]``): the robot model, the floor, the servos and what differs.

Every way in which a real PLEN2 differs from its model is one key here, usable on its own:
the soles (height per foot, rounded edges, a convex bottom), friction (sliding, rolling,
spinning), link masses, the torso's centre of mass, the servos (``[sim.servo]``: delay,
lag, speed, torque, dead band, backlash and residual offset, per joint), the IMU's
mounting error, a tilted floor and a push. The robustness suite (:mod:`plend.model.worlds`)
draws worlds from these keys; a world is a plain frozen value, printable as config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plend.core.checks import check_bool, check_int, check_range, check_vector
from plend.core.errors import ConfigError

if TYPE_CHECKING:  # numpy is imported where it is used: plenctl reads the config without it
    import numpy as np

# What the servo keys mean and their ranges. The delay and lag defaults model a 9 g analog
# feedback servo (FS90-FB / SG90 class) at 4.8 V, from datasheet figures (HARDWARE.md,
# "Servo behaviour"):
# - delay: a pulse written to the PCA9685 takes effect at its next 20 ms frame, so 0-20 ms
#   (10 ms on average) before the servo even sees it; its own reaction adds a little.
# - time constant: the servo drives its motor in proportion to the error over a band of a
#   few degrees; with ~10 rad/s no-load speed, a 5 deg band is a first-order lag of about
#   0.09 rad / 9.5 rad/s ~ 10 ms.
# - dead band: 5-10 us of pulse is 0.4-0.8 deg at about 12 us per degree, and
# - backlash: 1-3 deg with plastic gears; both default to 0 all the same, because the
#   calibration wizard's feedback checks and the gait's tests were written against a
#   servo without them (README, "The servo model"); the robustness suite draws them.
# - speed 9.5 rad/s (0.1 s per 60 deg) and stall torque 0.14 N m are the [sim] keys
#   servo_speed_rad_s and servo_torque_nm, shared by every joint unless overridden here.
SERVO_KEYS: dict[str, tuple[float, float]] = {
    "delay_ms": (0.0, 150.0),
    "time_constant_ms": (0.0, 200.0),
    "dead_band_deg": (0.0, 5.0),
    "backlash_deg": (0.0, 5.0),
    "offset_deg": (-5.0, 5.0),
    "speed_rad_s": (0.5, 50.0),
    "torque_nm": (0.01, 5.0),
}


@dataclass(frozen=True)
class ServoModel:
    """The servo model of every joint (``[sim.servo]``), with per-joint overrides.

    Attributes:
        delay_ms: transport delay between a command and the servo acting on it.
        time_constant_ms: first-order lag of the servo's position loop.
        dead_band_deg: the servo does not react to an error smaller than half of this.
        backlash_deg: free play of the gear train: the link moves within it under load.
        offset_deg: residual offset error: the joint sits this far from where the robot
            believes it commands and measures it (what calibration left).
        joints: joint name -> table of the keys above (and ``speed_rad_s``,
            ``torque_nm``) that differ for that joint, e.g.
            ``[sim.servo.joints.r_knee_r_shin] backlash_deg = 2.0``.
    """

    delay_ms: float = 40.0 / 3.0  # the mean wait for a 20 ms PWM frame and ~3 ms of reaction
    time_constant_ms: float = 10.0
    dead_band_deg: float = 0.0
    backlash_deg: float = 0.0
    offset_deg: float = 0.0
    joints: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from plend.model.robot import JOINT_NAMES

        for key in ("delay_ms", "time_constant_ms", "dead_band_deg", "backlash_deg", "offset_deg"):
            check_range(f"sim.servo.{key}", getattr(self, key), *SERVO_KEYS[key])
        if not isinstance(self.joints, dict):
            raise ConfigError(
                f"sim.servo.joints must be a table of joint = {{key = value}}, got {self.joints!r}"
            )
        for name, table in self.joints.items():
            prefix = f"sim.servo.joints.{name}"
            if name not in JOINT_NAMES:
                raise ConfigError(f"{prefix}: unknown joint; valid joints: {', '.join(JOINT_NAMES)}")
            if not isinstance(table, dict):
                raise ConfigError(f"{prefix} must be a table of servo keys, got {table!r}")
            for key, value in table.items():
                if key not in SERVO_KEYS:
                    raise ConfigError(
                        f"{prefix}.{key}: unknown servo key; valid keys: {', '.join(SERVO_KEYS)}"
                    )
                check_range(f"{prefix}.{key}", value, *SERVO_KEYS[key])


@dataclass(frozen=True)
class ServoTable:
    """The servo model resolved per joint, in canonical joint order, SI units."""

    delay_s: np.ndarray
    time_constant_s: np.ndarray
    dead_band_rad: np.ndarray
    backlash_rad: np.ndarray
    offset_rad: np.ndarray
    speed_rad_s: np.ndarray
    torque_nm: np.ndarray


@dataclass(frozen=True)
class SimWorld:
    """The simulated world and robot; change these to test the robot's robustness.

    Attributes:
        friction: ground and sole friction coefficient.
        rolling_friction: resistance of the soles to rolling on an edge (m, PyBullet's
            rolling friction); matters for rounded soles.
        spinning_friction: resistance of a sole to turning about the vertical (m).
        mass_scale: every link's mass multiplied by this.
        mass_jitter: each link's mass also multiplied by a seeded random factor in
            [1 - jitter, 1 + jitter].
        torso_com_mm: the torso's centre of mass moved by (x, y, z) mm (forward, left, up).
        sole_height_right_mm, sole_height_left_mm: that sole sits this much lower
            (positive: a longer leg) than in the model.
        sole_edge_radius_mm: the soles' bottom edges rounded with this radius; 0 is the
            model's flat box.
        sole_crown_mm: the soles' bottom bulges by this much at the centre (a convex
            sole that rocks); 0 is flat.
        floor_tilt_deg: the floor slopes by this angle...
        floor_tilt_direction_deg: ...rising towards this direction (0 ahead of the robot's
            start heading, 90 to its left).
        imu_bias_deg: the IMU's mounting error (roll, pitch, yaw), deg: everything it
            reports is in a frame turned this much from the torso's.
        push_impulse_ns: an impulse (N s) on the torso's centre of mass...
        push_at_s: ...this long after the start...
        push_direction_deg: ...towards this direction (0 forward, 90 left), horizontal.
        actuation_delay_ticks: a command reaches the servos this many ticks late.
        servo: the servo model (``[sim.servo]``).
        servo_model: where the servos come from besides ``[sim.servo]``: "" none;
            "calibration" the servos identified on the robot (``plenctl calibrate
            --servos``), from the calibration file in the state directory; or the path of
            such a calibration file. Its joints replace those keys of ``[sim.servo]``.
        urdf: the robot model: a URDF file of the robot with its 18 joints by name; empty
            for the packaged model.
        substeps: physics steps per control tick.
        solver_iterations: constraint solver iterations per physics step.
        seed: seeds every random choice of the simulation (jitter, noise).
        joint_noise_rad: standard deviation of the joint angle readings' noise.
        gyro_noise_rad_s: standard deviation of the gyro readings' noise.
        servo_torque_nm: servo stall torque (every joint unless [sim.servo] overrides it).
        servo_speed_rad_s: servo no-load speed (likewise).
        servo_armature_kgm2: rotor inertia seen through the gear train, added to each
            servo-driven link.
        gui: open the PyBullet window instead of running headless.
        fixed_base: hang the torso from a fixed stand with the feet clear of the ground,
            as the robot sits while it is calibrated.
    """

    friction: float = 0.8
    rolling_friction: float = 0.0
    spinning_friction: float = 0.0
    mass_scale: float = 1.0
    mass_jitter: float = 0.0
    torso_com_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sole_height_right_mm: float = 0.0
    sole_height_left_mm: float = 0.0
    sole_edge_radius_mm: float = 0.0
    sole_crown_mm: float = 0.0
    floor_tilt_deg: float = 0.0
    floor_tilt_direction_deg: float = 0.0
    imu_bias_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    push_impulse_ns: float = 0.0
    push_at_s: float = 10.0
    push_direction_deg: float = 0.0
    actuation_delay_ticks: int = 0
    servo: ServoModel = field(default_factory=ServoModel)
    servo_model: str = ""
    urdf: str = ""
    substeps: int = 3
    solver_iterations: int = 20
    seed: int = 0
    joint_noise_rad: float = 0.0
    gyro_noise_rad_s: float = 0.0
    servo_torque_nm: float = 0.14
    servo_speed_rad_s: float = 9.5
    servo_armature_kgm2: float = 2e-5
    gui: bool = False
    fixed_base: bool = False

    def __post_init__(self) -> None:
        check_bool("sim.fixed_base", self.fixed_base)
        check_bool("sim.gui", self.gui)
        for key, (lo, hi) in _RANGES.items():
            check_range(f"sim.{key}", getattr(self, key), lo, hi)
        for key, (lo, hi) in _INT_RANGES.items():
            check_int(f"sim.{key}", getattr(self, key), lo, hi)
        object.__setattr__(
            self, "torso_com_mm", check_vector("sim.torso_com_mm", self.torso_com_mm, 3, -10, 10)
        )
        object.__setattr__(
            self, "imu_bias_deg", check_vector("sim.imu_bias_deg", self.imu_bias_deg, 3, -5, 5)
        )
        if not isinstance(self.servo, ServoModel):
            raise ConfigError(f"sim.servo must be a table of servo keys, got {self.servo!r}")
        if not isinstance(self.servo_model, str):
            raise ConfigError(
                'sim.servo_model must be "calibration" or the path of a calibration file, '
                f"got {self.servo_model!r}"
            )
        if not isinstance(self.urdf, str):
            raise ConfigError(
                f"sim.urdf must be a file path (or empty for the packaged model), got {self.urdf!r}"
            )

    def servo_table(self) -> ServoTable:
        """The servo model of each joint, overrides applied, in canonical joint order."""
        from plend.model.robot import JOINT_NAMES

        base = {k: getattr(self.servo, k) for k in SERVO_KEYS if hasattr(self.servo, k)}
        base.update(speed_rad_s=self.servo_speed_rad_s, torque_nm=self.servo_torque_nm)
        rows = [{**base, **self.servo.joints.get(name, {})} for name in JOINT_NAMES]

        import numpy as np

        def column(key: str, scale: float = 1.0) -> np.ndarray:
            return np.array([float(r[key]) * scale for r in rows])

        return ServoTable(
            delay_s=column("delay_ms", 1e-3), time_constant_s=column("time_constant_ms", 1e-3),
            dead_band_rad=column("dead_band_deg", math.pi / 180),
            backlash_rad=column("backlash_deg", math.pi / 180),
            offset_rad=column("offset_deg", math.pi / 180), speed_rad_s=column("speed_rad_s"),
            torque_nm=column("torque_nm"),
        )  # fmt: skip

    def changes_model(self) -> bool:
        """True when the robot model differs from the URDF file (soles, torso centre of mass)."""
        return any(getattr(self, k) != getattr(_NOMINAL_MODEL, k) for k in MODEL_KEYS)


_RANGES: dict[str, tuple[float, float]] = {
    "friction": (0.05, 3.0),
    "rolling_friction": (0.0, 0.05),
    "spinning_friction": (0.0, 0.05),
    "mass_scale": (0.2, 5.0),
    "mass_jitter": (0.0, 0.5),
    "sole_height_right_mm": (-10.0, 10.0),
    "sole_height_left_mm": (-10.0, 10.0),
    "sole_edge_radius_mm": (0.0, 15.0),
    "sole_crown_mm": (0.0, 5.0),
    "floor_tilt_deg": (0.0, 10.0),
    "floor_tilt_direction_deg": (-180.0, 180.0),
    "push_impulse_ns": (0.0, 1.0),
    "push_at_s": (0.0, 86400.0),
    "push_direction_deg": (-180.0, 180.0),
    "joint_noise_rad": (0.0, 0.2),
    "gyro_noise_rad_s": (0.0, 2.0),
    "servo_torque_nm": (0.01, 5.0),
    "servo_speed_rad_s": (0.5, 50.0),
    "servo_armature_kgm2": (0.0, 1e-3),
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "actuation_delay_ticks": (0, 20),
    "substeps": (1, 100),
    "solver_iterations": (5, 500),
    "seed": (0, 2**32 - 1),
}
MODEL_KEYS = (
    "torso_com_mm",
    "sole_height_right_mm",
    "sole_height_left_mm",
    "sole_edge_radius_mm",
    "sole_crown_mm",
)
_NOMINAL_MODEL = SimWorld()


def world_dict(world: SimWorld) -> dict[str, Any]:
    """The world as plain values (what ``--summary json`` shows), tuples as lists."""
    out = dataclasses.asdict(world)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    return out
