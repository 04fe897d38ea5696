"""What the control socket can ask: one handler per command, arguments checked here.

Quick handlers (:data:`INLINE`) run on the socket thread and must not wait: they check
their arguments and return a :class:`~plend.daemon.server.LoopCall` for the server to submit.
The others run on worker threads: anything slow or fallible (reading a trajectory or a
policy file, recordings, calibration files) happens there, before the loop is asked;
the loop then only switches, so a bad request leaves the robot doing what it was doing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gaits.sine import GaitError, check_command
from plend import __version__
from plend.control.behaviours import Behaviour, Mode, Reporting, RunsPolicy, Walk
from plend.control.loop import ControlLoop, Request
from plend.control.supervisor import Supervisor
from plend.control.trajectory import TrajectoryError, load_trajectory
from plend.core.config import Config
from plend.core.errors import PlendError
from plend.core.files import FileRefusedError, check_regular
from plend.daemon.calibration_controls import CalibrationControls
from plend.daemon.pose import PoseStore
from plend.daemon.protocol import check_may_wait, only, quote
from plend.daemon.server import PROTOCOL_VERSION, ArgumentError, Handler, LoopCall, argument
from plend.drive.controls import DriveControls
from plend.drive.motion import motion
from plend.hal.base import StatusReport
from plend.model.robot import JOINTS

COMMAND_TIMEOUT_S = 2.0

# Answered on the socket thread: quick, and never waiting for the loop or a file.
# A camera pose ("pose") comes 30 times a second and is checked and stored at once.
INLINE = frozenset({
    "status", "version", "estop", "relax", "stop", "reset", "stand", "gait", "policy_start", "sim_respawn",
    "pose", "truth", "drive", "policy_command",
})  # fmt: skip
# Applied before any other command of their tick.
URGENT = frozenset({"estop", "relax"})


PolicyLoader = Callable[[Path, Config], Behaviour]


def no_policy_runner(path: Path, config: Config) -> Behaviour:
    raise CommandUnavailableError(f"cannot load {path}: this plend has no ONNX policy runner installed")


class CommandUnavailableError(PlendError, RuntimeError):
    """This installation cannot do what was asked."""


def _absolute_file(args: dict[str, Any]) -> Path:
    text = argument(args, "path", str)
    if "\0" in text or len(text) > 4096:
        raise ArgumentError(f"path {quote(text)} is not a usable file path")
    path = Path(text)
    if not path.is_absolute():
        raise ArgumentError(f"path {quote(text)} must be absolute (plenctl makes it so)")
    return path


class Controls:
    """The daemon's command handlers."""

    def __init__(
        self,
        loop: ControlLoop,
        supervisor: Supervisor,
        config: Config,
        recorder: Any,
        realtime: list[str],
        policy_loader: PolicyLoader = no_policy_runner,
        pose: PoseStore | None = None,
    ):
        self.loop, self.supervisor, self.config = loop, supervisor, config
        self.recorder = recorder
        self.realtime = realtime
        self.policy_loader = policy_loader
        self.lower, self.upper = config.safety.joint_limits()
        self._status_lock = threading.Lock()
        self._status_cache: tuple[int, dict[str, Any]] | None = None
        self.calibration = CalibrationControls(loop, supervisor, config)
        self.pose = pose
        self.drive = DriveControls(loop, config, self._submit, supervisor, pose)

    def handlers(self) -> dict[str, Handler]:
        simple = {name: self._simple(name) for name in ("stand", "relax", "stop", "estop", "reset")}
        return {
            **simple,
            "version": lambda args: {"plend": __version__, "protocol": PROTOCOL_VERSION},
            "status": lambda args: self.status(),
            "gait": self.gait,
            "replay": self.replay,
            "policy_load": self.policy_load,
            "policy_start": self.policy_start,
            "policy_command": self.policy_command,
            "policy_list": self.policy_list,
            "sim_respawn": self._simple("sim_respawn"),
            "record_start": self.record_start,
            "record_stop": self.record_stop,
            **self.calibration.handlers(),
            **self.drive.handlers(),
            "pose": self.pose_update,
            "truth": self.truth,
        }

    def inline(self) -> frozenset[str]:
        """Commands answered on the socket thread (every other one runs on a worker)."""
        return INLINE

    def _submit(self, name: str, **args: Any) -> dict[str, Any]:
        """Ask the loop and wait for its answer (worker threads only)."""
        check_may_wait(name)
        return self.loop.submit(Request(name, **args), urgent=name in URGENT).wait(COMMAND_TIMEOUT_S)

    def _call(self, name: str, then: Callable[[dict[str, Any]], Any] | None = None, **args: Any) -> LoopCall:
        """A checked command for the server to hand to the loop."""
        return LoopCall(name, args, urgent=name in URGENT, then=then)

    def _simple(self, name: str) -> Handler:
        def handler(args: dict[str, Any]) -> LoopCall:
            if args:
                raise ArgumentError(f"{name} takes no arguments, got {quote(sorted(args))}")
            return self._call(name)

        return handler

    def gait(self, args: dict[str, Any]) -> LoopCall:
        name = argument(args, "name", str, required=False)
        if name is None:
            name = "sine"
        if name != "sine":
            raise ArgumentError(f"unknown gait {quote(name, 60)}; available: sine")
        only(args, "name", "speed", "turn", "side", command="gait")
        command = {"speed": argument(args, "speed", float)}
        for key in ("turn", "side"):  # optional: 0 walks straight ahead
            value = argument(args, key, float, required=False)
            command[key] = 0.0 if value is None else value
        try:
            checked = {key: check_command(key, value) for key, value in command.items()}
        except GaitError as exc:
            raise ArgumentError(str(exc)) from None
        was_walking = self.supervisor.mode == Mode.SINE
        extra = {**checked, "was_walking": was_walking}
        return self._call("gait", then=lambda result: {**result, **extra}, **checked)

    def replay(self, args: dict[str, Any]) -> LoopCall:
        path = _absolute_file(args)
        rate = argument(args, "rate_hz", float, required=False)
        source = argument(args, "source", str, required=False) or "targets"  # of a recording
        only(args, "path", "rate_hz", "source", command="replay")
        if source not in ("targets", "measured"):
            raise ArgumentError(f"replay source {quote(source, 40)}: choose targets or measured")
        max_speed = self.config.safety.max_speed_rad_s
        try:
            trajectory = load_trajectory(
                path, rate, self.lower, self.upper, max_speed, self.config.limits, source=source
            )
        except TrajectoryError as exc:
            raise ArgumentError(str(exc)) from None
        extra = {"samples": len(trajectory.positions), "duration_s": trajectory.duration_s}
        return self._call("replay", then=lambda result: {**result, **extra}, trajectory=trajectory)

    def policy_load(self, args: dict[str, Any]) -> LoopCall:
        """Load a policy given by absolute ``path`` or by ``name`` (see policies.library)."""
        from policies import library

        only(args, "path", "name", command="policy_load")
        name = argument(args, "name", str, required=False)
        if name is not None and "path" in args:
            raise ArgumentError("give a policy's name or its path, not both")
        wanted = name if name is not None else str(_absolute_file(args))
        try:
            path = library.find(wanted, self.config.paths.state_path())
        except library.PolicyNotFoundError as exc:
            raise ArgumentError(str(exc)) from None
        limit = self.config.limits.max_policy_bytes
        try:
            check_regular(path, limit, "policy", "limits.max_policy_bytes")
        except FileRefusedError as exc:
            raise ArgumentError(str(exc)) from None
        behaviour = self.policy_loader(path, self.config)
        extra = {}
        if isinstance(behaviour, RunsPolicy):
            runner = behaviour.runner
            spec = runner.spec
            extra = {
                "loaded": str(runner.path), "inference_ms": runner.inference_ms, "rate_hz": spec.rate_hz,
                "engine": runner.engine, "observations": spec.observation_size,
                "actions": len(spec.action_joints), "action_mode": spec.action_mode,
                "commands": {k: list(spec.command_range(k)) for k in ("speed", "turn", "side")},
            }  # fmt: skip
        return self._call("policy_load", then=lambda result: {**result, **extra}, behaviour=behaviour)

    def policy_start(self, args: dict[str, Any]) -> LoopCall:
        """Walk on the loaded policy; ``speed``, ``turn``, ``side`` set its command first."""
        command: dict[str, Any] = {"command": self._policy_command(args)} if args else {}
        return self._call("policy_start", **command)

    def policy_command(self, args: dict[str, Any]) -> LoopCall:
        """Change the loaded policy's command; a value not given stays as it is."""
        if not args:
            raise ArgumentError("policy command takes speed, turn and/or side")
        command = self._policy_command(args)
        echo = {"command": list(command)}
        return self._call("policy_command", then=lambda result: {**result, **echo}, command=command)

    def _policy_command(self, args: dict[str, Any]) -> tuple[float, float, float]:
        """The loaded policy's command with ``args`` applied, checked against its ranges."""
        unknown = sorted(set(args) - {"speed", "turn", "side"})
        if unknown:
            raise ArgumentError(f"a policy's command takes speed, turn and side, not {', '.join(unknown)}")
        policy = self.supervisor.policy
        current = getattr(policy, "command", None)
        if current is None:
            raise ArgumentError("no policy that takes commands is loaded; run 'plenctl policy load' first")
        wanted = [argument(args, k, float, required=False) for k in ("speed", "turn", "side")]
        merged = tuple(c if w is None else w for w, c in zip(wanted, current, strict=True))
        try:
            return policy.spec.check_command(*merged)  # type: ignore[union-attr, no-any-return]
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None

    def pose_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """A camera pose from ``plend track`` (see plend.daemon.pose.PoseStore.submit)."""
        if self.pose is None:
            raise CommandUnavailableError("this daemon takes no camera poses")
        return self.pose.submit(args)

    def truth(self, args: dict[str, Any]) -> dict[str, Any]:
        """A simulated robot's true torso pose, for the emulated camera."""
        if args:
            raise ArgumentError(f"truth takes no arguments, got {quote(sorted(args))}")
        snap = self.loop.snapshot
        if snap is None or snap.torso is None:
            raise CommandUnavailableError(f"the {self.config.hal} backend has no ground truth (a real robot)")
        torso = snap.torso
        return {
            "tick": snap.tick, "position": list(torso.position), "euler": list(torso.euler),
            "velocity": list(torso.velocity),
        }  # fmt: skip

    def policy_list(self, args: dict[str, Any]) -> dict[str, Any]:
        from policies import library

        if args:
            raise ArgumentError(f"policy list takes no arguments, got {quote(sorted(args))}")
        state = self.config.paths.state_path()
        return {
            "searched": [str(d) for d in library.search_dirs(state)],
            "policies": library.available(state),
        }

    def record_start(self, args: dict[str, Any]) -> dict[str, Any]:
        only(args, "out", command="record_start")
        out = argument(args, "out", str, required=False)
        return {"path": str(self.recorder.start(out))}

    def record_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        only(args, command="record_stop")
        result: dict[str, Any] = self.recorder.stop()
        return result

    def status(self) -> dict[str, Any]:
        """The daemon's state: figures computed at most once a tick however many clients
        ask, the mode, faults and recording as they are now (a command's reply comes in
        the tick that applied it, before the tick's figures are new)."""
        with self._status_lock:
            tick = self.loop.stats.ticks
            if self._status_cache is None or self._status_cache[0] != tick:
                self._status_cache = (tick, self._status())
            cached = self._status_cache[1]
        sup = self.supervisor
        now = {
            "mode": sup.mode,
            "estop": sup.estopped,
            "faults": sup.fault_list() + self.recorder.faults(),
            "recording": self.recorder.status(),
        }
        return {**cached, **now}

    def _status(self) -> dict[str, Any]:
        snap = self.loop.snapshot
        stats = self.loop.stats
        sup = self.supervisor
        status: dict[str, Any] = {
            "mode": sup.mode,
            "estop": sup.estopped,
            "faults": sup.fault_list(),
            "recent_faults": [vars(f).copy() for f in sup.history[-10:]],
            "hal": self.config.hal,
            "rate_hz": {"configured": self.config.loop.rate_hz, "achieved": round(stats.rate_hz(), 2)},
            "ticks": stats.ticks,
            "overruns": stats.overruns,
            "compute_ms": stats.compute.percentiles_ms(),
            "lateness_ms": stats.lateness.percentiles_ms(),
            "realtime": self.realtime,
            "safety": {**vars(self.loop.safety.counts), **vars(sup.counts)},
            "recording": self.recorder.status(),
            "calibration_file": str(self.config.calibration_path()),
            **self._behaviour_status(),
            "motion": motion(snap, self.pose),
            "urgent_ms": self.loop.urgent_latency.percentiles_ms(),
        }
        if self.pose is not None:
            status["pose"] = self.pose.status()
        if isinstance(sup.behaviour, Reporting):  # walking: the command in effect and the balance layer
            status["gait"] = sup.behaviour.report()
        if isinstance(self.loop.hal, StatusReport):
            status["hardware"] = self.loop.hal.status()
        sensors = self.loop.sensors
        if sensors is not None and sensors.faults:
            status["sensor_faults"] = list(sensors.faults)
        if snap is not None:
            status["imu"] = {
                "euler_deg": [round(math.degrees(v), 2) for v in snap.imu.euler],
                "gyro_rad_s": [round(v, 4) for v in snap.imu.gyro],
                "accel_m_s2": [round(v, 3) for v in snap.imu.accel],
            }
            # The robot has no foot contact sensors; only the simulation reports contacts.
            has_contacts = self.config.hal == "sim"
            status["contacts"] = (
                {"right": snap.contacts[0], "left": snap.contacts[1]} if has_contacts else None
            )
            status["joints"] = self._joints(snap.targets, snap.measured, snap.powered)
            if snap.truth is not None:  # a simulated robot: what the joints really are
                for row, value in zip(status["joints"], snap.truth.tolist(), strict=True):
                    row["truth"] = round(value, 4)
        return status

    def _behaviour_status(self) -> dict[str, Any]:
        """The walking speed (while walking) and the loaded policy, with its file."""
        sup = self.supervisor
        out: dict[str, Any] = {}
        if isinstance(sup.behaviour, Walk) and sup.mode == Mode.SINE:
            gait = sup.behaviour.gait
            out["walk"] = {
                "speed": gait.speed,
                "turn": gait.turn,
                "side": gait.side,
                "next": gait.next_command(),
            }
        runner = sup.policy.runner if isinstance(sup.policy, RunsPolicy) else None
        out["policy"] = None if runner is None else {
            "name": runner.path.name, "file": str(runner.path), "engine": runner.engine,
            "running": sup.policy is sup.behaviour and not sup.estopped,
        }  # fmt: skip
        return out

    def _joints(
        self, targets: np.ndarray | None, measured: np.ndarray, powered: np.ndarray | None
    ) -> list[dict[str, Any]]:
        rows = []
        for j in JOINTS:
            on = powered is not None and bool(powered[j.index])
            target = None if targets is None or not on else round(float(targets[j.index]), 4)
            value = float(measured[j.index])
            rows.append({
                "name": j.name, "target": target,
                "measured": round(value, 4) if math.isfinite(value) else None,
                "lower": float(self.lower[j.index]), "upper": float(self.upper[j.index]),
                "powered": on,
            })  # fmt: skip
        return rows
