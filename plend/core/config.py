"""Configuration: frozen dataclasses, validated on construction, layered from TOML.

Layers: the packaged defaults below, then a TOML file (``/etc/plend/plend.toml`` or the
path given with ``--config``), then command-line options. Errors name the key path and
the bad value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from plend.core.checks import check_bool as _check_bool
from plend.core.checks import check_choice as _check_choice
from plend.core.checks import check_int as _check_int
from plend.core.checks import check_range as _check_range
from plend.core.checks import shown
from plend.core.errors import ConfigError
from plend.core.gait_config import GaitConfig as GaitConfig  # the [gait] section, re-exported
from plend.core.locations import DEFAULT_SOCKET_GROUP, DEFAULT_SOCKET_PATH, default_state_dir
from plend.drive.settings import DriveConfig
from plend.model.sim_world import SimWorld as SimWorld  # the [sim] section, re-exported
from plend.track.settings import TrackConfig

if TYPE_CHECKING:  # numpy is imported where it is used: plenctl starts without it
    import numpy as np

DEFAULT_CONFIG_PATH = Path("/etc/plend/plend.toml")
HAL_NAMES = ("sim", "hardware")  # the backends plend.hal builds (a layer above: not imported here)


@dataclass(frozen=True)
class LoopConfig:
    """The control loop.

    Attributes:
        rate_hz: tick rate.
        realtime: ask for SCHED_FIFO on the control thread, freeze the garbage collector
            after start-up and lock memory on fault (each only where permitted).
        rt_priority: SCHED_FIFO priority of the control thread.
        spin_s: sleep until this long before each deadline, then spin; 0 to never spin.
        time_scale: run this many times faster than real time; a simulated robot only
            (rehearsals and tests); 1 on a real robot.
    """

    rate_hz: float = 50.0
    realtime: bool = True
    rt_priority: int = 50
    spin_s: float = 0.0002
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_range("loop.time_scale", self.time_scale, 0.1, 50.0)
        _check_range("loop.rate_hz", self.rate_hz, 5.0, 200.0)
        _check_bool("loop.realtime", self.realtime)
        _check_int("loop.rt_priority", self.rt_priority, 1, 90)  # the unit allows up to 90
        _check_range("loop.spin_s", self.spin_s, 0.0, 0.002)


@dataclass(frozen=True)
class SafetyConfig:
    """The safety filter and monitors between every behaviour and the servos.

    Attributes:
        max_speed_rad_s: slew limit of every joint target.
        limits: per-joint [lower, upper] (rad) narrowing the joint table's limits.
        fall_tilt_deg: torso tilt from the IMU beyond which the robot is falling...
        fall_ticks: ...for this many consecutive ticks.
        fall_action: "relax" (go limp) or "crouch" once a fall is detected.
        stale_timeout_s: a joint or IMU reading older than this is stale.
        stale_action: "relax" or "stand" while readings are stale.
        tracking_error_rad: a servo further than this from its target...
        tracking_time_s: ...for this long is faulty; the robot is relaxed.
    """

    max_speed_rad_s: float = 9.0
    limits: dict[str, list[float]] = field(default_factory=dict)
    fall_tilt_deg: float = 50.0
    fall_ticks: int = 3
    fall_action: str = "relax"
    stale_timeout_s: float = 0.2
    stale_action: str = "relax"
    tracking_error_rad: float = 0.35
    tracking_time_s: float = 0.5

    def __post_init__(self) -> None:
        from plend.model.robot import JOINT_NAMES, joint

        _check_range("safety.max_speed_rad_s", self.max_speed_rad_s, 0.1, 20.0)
        _check_range("safety.fall_tilt_deg", self.fall_tilt_deg, 10.0, 90.0)
        _check_int("safety.fall_ticks", self.fall_ticks, 1, 100)
        _check_choice("safety.fall_action", self.fall_action, ("relax", "crouch"))
        _check_range("safety.stale_timeout_s", self.stale_timeout_s, 0.01, 5.0)
        _check_choice("safety.stale_action", self.stale_action, ("relax", "stand"))
        _check_range("safety.tracking_error_rad", self.tracking_error_rad, 0.05, 3.0)
        _check_range("safety.tracking_time_s", self.tracking_time_s, 0.02, 10.0)
        if not isinstance(self.limits, dict):
            raise ConfigError(
                f"safety.limits must be a table of joint = [lower, upper], got {shown(self.limits)}"
            )
        for name, pair in self.limits.items():
            key = f"safety.limits.{name}"
            if name not in JOINT_NAMES:
                raise ConfigError(f"{key}: unknown joint; valid joints: {', '.join(JOINT_NAMES)}")
            j = joint(name)
            ok = isinstance(pair, (list, tuple)) and len(pair) == 2
            if not ok or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair):
                raise ConfigError(f"{key} must be [lower, upper] in radians, got {shown(pair)}")
            if not j.lower <= pair[0] < pair[1] <= j.upper:
                raise ConfigError(
                    f"{key} = {list(pair)} must narrow the joint's limits [{j.lower}, {j.upper}]"
                )

    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper limits per joint: the joint table narrowed by ``limits``."""
        import numpy as np

        from plend.model.robot import JOINTS

        lower = np.array([self.limits.get(j.name, (j.lower, j.upper))[0] for j in JOINTS], dtype=float)
        upper = np.array([self.limits.get(j.name, (j.lower, j.upper))[1] for j in JOINTS], dtype=float)
        return lower, upper


def _check_path(key: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigError(f"{key} must be a file system path (a non-empty string), got {shown(value)}")


@dataclass(frozen=True)
class SocketConfig:
    """The control socket: one JSON request and one JSON reply per line.

    Attributes:
        path, mode, group: where the socket is made, its permissions and its group.
        max_message_bytes: the longest request line taken.
        max_connections: clients served at once; beyond them a connection may still ask
            estop, relax or status once, and anything else is told the daemon is busy.
        request_timeout_s: a client must send its first request within this time of
            connecting, and a request line must arrive whole within it once begun.
        idle_timeout_s: a connection that sends nothing for this long is closed.
        slow_request_timeout_s: a request that reads files (replay, policy load,
            recordings, calibration files) is answered with an error after this long.
        workers: threads that run such requests, off the socket and control threads.
        rt_priority: SCHED_FIFO priority of the socket thread when ``loop.realtime`` is on
            (kept below the control thread's), so a busy machine cannot delay an e-stop's
            answer; 0 leaves it under normal scheduling.
    """

    path: str = DEFAULT_SOCKET_PATH
    mode: int = 0o660
    group: str = DEFAULT_SOCKET_GROUP
    max_message_bytes: int = 65536
    max_connections: int = 256
    request_timeout_s: float = 5.0
    idle_timeout_s: float = 900.0
    slow_request_timeout_s: float = 10.0
    workers: int = 2
    rt_priority: int = 20

    def __post_init__(self) -> None:
        _check_path("socket.path", self.path)
        _check_int("socket.mode", self.mode, 0, 0o777)
        if not isinstance(self.group, str) or not self.group.strip():
            raise ConfigError(
                f"socket.group must be a group name (a non-empty string), got {shown(self.group)}"
            )
        _check_int("socket.max_message_bytes", self.max_message_bytes, 256, 2**24)
        _check_int("socket.max_connections", self.max_connections, 1, 4096)
        _check_range("socket.request_timeout_s", self.request_timeout_s, 0.1, 300.0)
        _check_range("socket.idle_timeout_s", self.idle_timeout_s, 1.0, 86400.0)
        _check_range("socket.slow_request_timeout_s", self.slow_request_timeout_s, 1.0, 300.0)
        _check_int("socket.workers", self.workers, 1, 16)
        _check_int("socket.rt_priority", self.rt_priority, 0, 89)


@dataclass(frozen=True)
class PathsConfig:
    """Where plend keeps its files.

    Attributes:
        state_dir: calibration, ``policies/`` and recordings; empty: the default (see
            :func:`default_state_dir`).
        recordings_dir: telemetry recordings; empty: ``recordings`` in the state directory.
    """

    state_dir: str = ""
    recordings_dir: str = ""

    def __post_init__(self) -> None:
        for key in ("state_dir", "recordings_dir"):
            value = getattr(self, key)
            if value != "":  # empty: the default
                _check_path(f"paths.{key}", value)

    def state_path(self) -> Path:
        """The state directory: the configured one, or the default for this process."""
        return Path(self.state_dir) if self.state_dir else Path(default_state_dir())

    def recordings_path(self) -> Path:
        """Where telemetry recordings go."""
        return Path(self.recordings_dir) if self.recordings_dir else self.state_path() / "recordings"


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds on the files a client names (trajectories, policies): checked before reading.

    Attributes:
        max_trajectory_bytes: a replay file larger than this is refused unread.
        max_trajectory_samples: a replay with more samples is refused.
        max_policy_bytes: an ONNX policy file larger than this is refused unread.
        file_read_timeout_s: reading one file must finish within this time.
    """

    max_trajectory_bytes: int = 16 * 2**20
    max_trajectory_samples: int = 200_000
    max_policy_bytes: int = 32 * 2**20
    file_read_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        _check_int("limits.max_trajectory_bytes", self.max_trajectory_bytes, 1024, 2**31)
        _check_int("limits.max_trajectory_samples", self.max_trajectory_samples, 1, 10_000_000)
        _check_int("limits.max_policy_bytes", self.max_policy_bytes, 1024, 2**31)
        _check_range("limits.file_read_timeout_s", self.file_read_timeout_s, 0.05, 60.0)


@dataclass(frozen=True)
class TelemetryConfig:
    """Telemetry recordings: size cap and the writer's queue length."""

    max_bytes: int = 200 * 2**20
    queue_size: int = 1024

    def __post_init__(self) -> None:
        _check_int("telemetry.max_bytes", self.max_bytes, 2**16, 2**40)
        _check_int("telemetry.queue_size", self.queue_size, 16, 2**20)


@dataclass(frozen=True)
class HardwareConfig:
    """The robot's electronics.

    Attributes:
        bus: "i2c" (the Pi's I2C bus through Blinka) or "emulated" (register-level
            models of the chips coupled to the simulation).
        i2c_frequency_hz: the bus clock (set on the Pi with dtparam=i2c_arm_baudrate;
            used here for the emulation's timing).
        pwm_address, pwm_frequency_hz: the PCA9685.
        adc_addresses: the four ADS1115, in wiring order.
        adc_data_rate: ADS1115 samples per second (860 is the fastest).
        adc_sweep: "auto" reads all 16 channels a tick when they fit the period, else one
            channel per chip a tick; "full" or "round_robin" force one or the other.
        imu_address: the BNO055.
        feedback_polarity: +1 when a servo's feedback voltage rises as it turns toward
            its 180-degree end (the PLEN2 servos), -1 when it falls; a joint whose feedback
            runs the other way has a reversed wire.
        robot_id: this robot's name in its calibration file; empty: the host name.
        emulated_miscalibration_seed: on the emulated bus, build a robot that needs
            calibrating: seeded random horn offsets (+-15 deg), mirrored servos and
            potentiometer gains (0.7-1.3) and offsets. None: a robot built exactly to
            the default calibration.
        emulated_feedback_faults: on the emulated bus, joint name -> "stuck", "noisy" or
            "reversed": a bad feedback wire on that joint.
        emulated_servo_seed: on the emulated bus, give every servo its own seeded "true"
            delay, lag, dead band, backlash and speed (the hidden truth that servo
            identification must find), and let a new pulse reach a servo only at the
            PCA9685's next 20 ms frame. None: the servos are the simulation's
            ([sim.servo]) and act on a pulse at once.
    """

    bus: str = "i2c"
    i2c_frequency_hz: int = 400_000
    pwm_address: int = 0x40
    pwm_frequency_hz: float = 50.0
    adc_addresses: tuple[int, ...] = (0x48, 0x49, 0x4A, 0x4B)
    adc_data_rate: int = 860
    adc_sweep: str = "auto"
    imu_address: int = 0x28
    feedback_polarity: int = 1
    robot_id: str = ""
    emulated_miscalibration_seed: int | None = None
    emulated_feedback_faults: dict[str, str] = field(default_factory=dict)
    emulated_servo_seed: int | None = None

    def __post_init__(self) -> None:
        from plend.model.robot import JOINT_NAMES

        _check_choice("hardware.feedback_polarity", self.feedback_polarity, (1, -1))
        if not isinstance(self.robot_id, str):
            raise ConfigError(f"hardware.robot_id must be a string, got {shown(self.robot_id)}")
        if not isinstance(self.emulated_feedback_faults, dict):
            raise ConfigError("hardware.emulated_feedback_faults must be a table of joint = fault")
        for name, fault in self.emulated_feedback_faults.items():
            _check_choice(f"hardware.emulated_feedback_faults.{name}", name, JOINT_NAMES)
            _check_choice(f"hardware.emulated_feedback_faults.{name}", fault, ("stuck", "noisy", "reversed"))
        if self.emulated_miscalibration_seed is not None:
            _check_int(
                "hardware.emulated_miscalibration_seed", self.emulated_miscalibration_seed, 0, 2**32 - 1
            )
        if self.emulated_servo_seed is not None:
            _check_int("hardware.emulated_servo_seed", self.emulated_servo_seed, 0, 2**32 - 1)
        _check_choice("hardware.bus", self.bus, ("i2c", "emulated"))
        _check_int("hardware.i2c_frequency_hz", self.i2c_frequency_hz, 10_000, 3_400_000)
        _check_int("hardware.pwm_address", self.pwm_address, 0x03, 0x77)
        _check_range("hardware.pwm_frequency_hz", self.pwm_frequency_hz, 40.0, 400.0)
        if not isinstance(self.adc_addresses, (list, tuple)) or len(self.adc_addresses) != 4:
            raise ConfigError(
                f"hardware.adc_addresses must list four addresses, got {shown(self.adc_addresses)}"
            )
        for address in self.adc_addresses:
            _check_int("hardware.adc_addresses[]", address, 0x03, 0x77)
        object.__setattr__(self, "adc_addresses", tuple(self.adc_addresses))
        _check_choice("hardware.adc_data_rate", self.adc_data_rate, (8, 16, 32, 64, 128, 250, 475, 860))
        _check_choice("hardware.adc_sweep", self.adc_sweep, ("auto", "full", "round_robin"))
        _check_int("hardware.imu_address", self.imu_address, 0x03, 0x77)

    def robot_name(self) -> str:
        """Which robot this is, as its calibration file records it."""
        if self.robot_id.strip():
            return self.robot_id.strip()
        if self.bus == "emulated":
            return f"emulated robot (seed {self.emulated_miscalibration_seed})"
        import socket

        return socket.gethostname()


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    hal: str = "sim"
    loop: LoopConfig = field(default_factory=LoopConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    socket: SocketConfig = field(default_factory=SocketConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    sim: SimWorld = field(default_factory=SimWorld)
    track: TrackConfig = field(default_factory=TrackConfig)
    gait: GaitConfig = field(default_factory=GaitConfig)
    drive: DriveConfig = field(default_factory=DriveConfig)

    def __post_init__(self) -> None:
        _check_choice("hal", self.hal, HAL_NAMES)

    def calibration_path(self) -> Path:
        """The calibration file of the robot this config drives.

        An emulated robot (``hardware.bus = "emulated"``) keeps its own file under the
        default state directory, ``emulated/<seed>/calibration.json``, so that rehearsing
        the wizard on a PC never replaces or blocks another robot's calibration. A
        configured ``paths.state_dir`` holds the file directly.
        """
        if self.paths.state_dir or self.hardware.bus != "emulated":
            return self.paths.state_path() / "calibration.json"
        seed = self.hardware.emulated_miscalibration_seed
        robot = "exact" if seed is None else f"seed-{seed}"
        return self.paths.state_path() / "emulated" / robot / "calibration.json"


T = TypeVar("T")


def _build(cls: type[T], data: dict[str, Any], prefix: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {shown(path)}; valid keys: {', '.join(fields)}")
        sub = fields[key].default_factory  # type: ignore[misc]
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a table, got {shown(value)}")
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
    from plend.core.files import FileRefusedError, parse_toml

    try:
        data = parse_toml(_read_config_text(path), f"config file {path}")
    except FileRefusedError as exc:
        raise ConfigError(f"{exc}; correct the file") from None
    return from_dict(data)


MAX_CONFIG_BYTES = 1 << 20


def _read_config_text(path: Path) -> str:
    """The text of a config file, or a ConfigError saying in one line why it cannot be had."""
    from plend.core.files import FileRefusedError, nothing_at, read_limited

    try:
        data = read_limited(path, MAX_CONFIG_BYTES, 5.0, "config file")
    except FileRefusedError as exc:
        if nothing_at(path):
            raise ConfigError(f"config file {path} does not exist") from None
        raise ConfigError(f"{exc}; {exc.advice or 'give a UTF-8 TOML file'}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML"
        ) from None


def replace_section(config: Config, section: str, **changes: Any) -> Config:
    """Return ``config`` with fields of one section replaced (validated again)."""
    current = getattr(config, section)
    return dataclasses.replace(config, **{section: dataclasses.replace(current, **changes)})


def as_dict(config: Config) -> dict[str, Any]:
    """The configuration as nested dictionaries."""
    return dataclasses.asdict(config)
