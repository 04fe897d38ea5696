"""Building the robot's runtime: one composition for the daemon and for batch runs.

:func:`build_runtime` loads what the robot needs from files (its servo calibration), makes
the HAL backend the config names, the supervisor, the safety filter and the control loop,
and hands each to the next by constructor. The daemon (plend.daemon.daemon) adds the control
socket, systemd and telemetry around it; a batch run (plend.daemon.headless) steps it on a
simulated clock. What the robot starts doing is chosen once, here (:class:`Start`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gaits.sine import check_command
from plend.control.behaviours import RunsPolicy, make_gait
from plend.control.loop import Clock, ControlLoop, StepClock, WallClock
from plend.control.safety import SafetyFilter
from plend.control.supervisor import Supervisor
from plend.core.config import Config
from plend.core.errors import ConfigError
from plend.daemon.pose import PoseStore
from plend.hal import make_hal
from plend.hal.base import Hal
from plend.model.robot import stand_pose
from plend.model.servo_map import Calibration

if TYPE_CHECKING:
    from plend.daemon.controls import PolicyLoader

STARTS = ("relax", "stand", "sine")


@dataclass(frozen=True)
class Start:
    """What the robot does once the loop runs: ``behaviour`` (relax, stand or sine, walking
    at ``speed``, ``turn`` and ``side``), or the ONNX ``policy`` at that path."""

    behaviour: str = "relax"
    speed: float = 0.5
    turn: float = 0.0
    side: float = 0.0
    policy: Path | None = None

    def __post_init__(self) -> None:
        if self.behaviour not in STARTS:
            raise ConfigError(f"cannot start with {self.behaviour!r}; choose one of: {', '.join(STARTS)}")
        for name in ("speed", "turn", "side"):
            try:
                check_command(name, getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"--{name}: {exc}") from None


def default_start(config: Config, batch: bool) -> str:
    """What to start with when nobody says: a batch run walks, a simulated robot appears
    standing, a real one starts with its servos unpowered."""
    if batch:
        return "sine"
    return "stand" if config.hal == "sim" else "relax"


@dataclass(frozen=True)
class RuntimeOptions:
    """How this runtime differs from the config.

    Attributes:
        batch: step a simulated clock as fast as the machine allows (``plend run --fast``)
            instead of the wall clock.
        hal: a backend built elsewhere (tests wrap one); by default the config's.
        pose: keep the camera's poses for behaviours that read them (the daemon).
        on_change: called with the new mode whenever it changes (systemd's status line).
    """

    batch: bool = False
    hal: Hal | None = None
    pose: bool = False
    on_change: Callable[[str], None] | None = field(default=None, compare=False)


def robot_calibration(config: Config) -> Calibration:
    """The servo calibration of the robot ``config`` drives, from its file. Never raises:
    with no file it is the built-in default; with a file that cannot be trusted it is the
    default with ``problem`` saying why (the robot then refuses to move)."""
    from calibration.drafts import remove_stale_temps
    from calibration.store import load_for_robot

    path = config.calibration_path()
    if path.parent.is_dir():
        remove_stale_temps(path)  # left by a writer killed mid-save; the file itself is whole
    return load_for_robot(path, config.hardware.robot_name())


@dataclass
class Runtime:
    """The parts of a running robot, built and wired; nothing is open yet."""

    config: Config
    hal: Hal
    supervisor: Supervisor
    loop: ControlLoop
    calibration: Calibration | None = None  # the hardware backend's; a simulation has none
    pose: PoseStore | None = None

    @property
    def period(self) -> float:
        return self.loop.period

    def start(self, start: Start) -> None:
        """Read the robot once, then start ``start``'s behaviour (raises CommandError when
        the supervisor refuses it, e.g. an uncalibrated robot; the robot then stays relaxed)."""
        self.loop.start()
        sup = self.supervisor
        if start.policy is not None:
            policy = self.policy_loader()(start.policy, self.config)
            command = None
            if isinstance(policy, RunsPolicy):  # speed, turn and side are its command: checked by it
                command = policy.runner.spec.check_command(start.speed, start.turn, start.side)
            sup.handle("policy_load", behaviour=policy)
            sup.handle("policy_start", command=command)
        elif start.behaviour == "sine":
            sup.handle("gait", speed=start.speed, turn=start.turn, side=start.side)
        elif start.behaviour == "stand":
            sup.handle("stand")

    def policy_loader(self) -> PolicyLoader:
        """What loads an ONNX policy into a behaviour for this robot (plenctl policy load)."""
        try:
            from policies.runner import make_policy_loader
        except ImportError:  # an install without the policy runner
            from plend.daemon.controls import no_policy_runner

            return no_policy_runner
        loader: PolicyLoader = make_policy_loader(
            self.hal, self.config.loop.rate_hz, lambda: self.loop.sensors, self.pose
        )
        return loader


def build_runtime(config: Config, options: RuntimeOptions) -> Runtime:
    """The HAL, the supervisor, the safety filter and the loop for ``config``.

    Raises:
        ConfigError: the config asks for something this robot cannot do.
    """
    period = 1.0 / config.loop.rate_hz
    simulated = config.hal == "sim" or config.hardware.bus == "emulated"
    if config.loop.time_scale != 1.0 and not simulated:
        raise ConfigError("loop.time_scale must be 1 on a real robot; it is for simulated ones")
    calibration = robot_calibration(config) if config.hal == "hardware" and options.hal is None else None
    hal = options.hal or make_hal(config.hal, config, calibration, stand_pose())
    # The gait as the daemon makes it, so that its check of the commands' range (~0.2 s,
    # done once per speed map) runs now and not on the control thread at the first walk.
    make_gait(0.0, config=config.gait)
    pose = PoseStore(config.track) if options.pose else None
    supervisor = Supervisor(
        config.safety, period, on_change=options.on_change, hal=hal, pose=pose, gait=config.gait
    )
    if calibration is not None and calibration.problem:
        supervisor.block("calibration", calibration.problem)
    clock: Clock = StepClock() if options.batch else WallClock(config.loop.spin_s, config.loop.time_scale)
    loop = ControlLoop(hal, supervisor, period, SafetyFilter.from_config(config.safety, period), clock)
    return Runtime(config, hal, supervisor, loop, calibration, pose)
