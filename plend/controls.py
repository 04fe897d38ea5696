"""What the control socket can ask: one handler per command, arguments checked here.

Quick handlers (:data:`INLINE`) run on the socket thread and must not wait: they check
their arguments and return a :class:`~plend.server.LoopCall` for the server to submit.
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

from gaits.sine import GaitError, check_speed
from plend import __version__
from plend.behaviours import Behaviour
from plend.calibration_controls import CalibrationControls
from plend.config import Config
from plend.errors import PlendError
from plend.files import FileRefusedError, check_regular
from plend.loop import ControlLoop, Request
from plend.protocol import check_may_wait, only, quote
from plend.robot import JOINTS
from plend.server import PROTOCOL_VERSION, ArgumentError, Handler, LoopCall, argument
from plend.supervisor import Supervisor
from plend.trajectory import TrajectoryError, load_trajectory

COMMAND_TIMEOUT_S = 2.0

# Answered on the socket thread: quick, and never waiting for the loop or a file.
INLINE = frozenset({"status", "version", "estop", "relax", "stop", "reset", "stand", "gait", "policy_start"})
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
    ):
        self.loop, self.supervisor, self.config = loop, supervisor, config
        self.recorder = recorder
        self.realtime = realtime
        self.policy_loader = policy_loader
        self.lower, self.upper = config.safety.joint_limits()
        self._status_lock = threading.Lock()
        self._status_cache: tuple[int, dict[str, Any]] | None = None
        self.calibration = CalibrationControls(loop, supervisor, config)

    def handlers(self) -> dict[str, Handler]:
        simple = {name: self._simple(name) for name in ("stand", "relax", "stop", "estop", "reset")}
        return {
            **simple,
            "version": lambda args: {"plend": __version__, "protocol": PROTOCOL_VERSION},
            "status": lambda args: self.status(),
            "gait": self.gait,
            "replay": self.replay,
            "policy_load": self.policy_load,
            "policy_start": self._simple("policy_start"),
            "record_start": self.record_start,
            "record_stop": self.record_stop,
            **self.calibration.handlers(),
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
        try:
            speed = check_speed(argument(args, "speed", float))
        except GaitError as exc:
            raise ArgumentError(str(exc)) from None
        return self._call("gait", speed=speed)

    def replay(self, args: dict[str, Any]) -> LoopCall:
        path = _absolute_file(args)
        rate = argument(args, "rate_hz", float, required=False)
        only(args, "path", "rate_hz", command="replay")
        max_speed = self.config.safety.max_speed_rad_s
        try:
            trajectory = load_trajectory(path, rate, self.lower, self.upper, max_speed, self.config.limits)
        except TrajectoryError as exc:
            raise ArgumentError(str(exc)) from None
        extra = {"samples": len(trajectory.positions), "duration_s": trajectory.duration_s}
        return self._call("replay", then=lambda result: {**result, **extra}, trajectory=trajectory)

    def policy_load(self, args: dict[str, Any]) -> LoopCall:
        path = _absolute_file(args)
        only(args, "path", command="policy_load")
        limit = self.config.limits.max_policy_bytes
        try:
            check_regular(path, limit, "policy", "limits.max_policy_bytes")
        except FileRefusedError as exc:
            raise ArgumentError(str(exc)) from None
        behaviour = self.policy_loader(path, self.config)
        runner = getattr(behaviour, "runner", None)
        extra = {}
        if runner is not None:
            extra = {
                "loaded": str(runner.path),
                "inference_ms": runner.inference_ms,
                "rate_hz": runner.spec.rate_hz,
            }
        return self._call("policy_load", then=lambda result: {**result, **extra}, behaviour=behaviour)

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
            "urgent_ms": self.loop.urgent_latency.percentiles_ms(),
        }
        hal_status = getattr(self.loop.hal, "status", None)
        if hal_status is not None:
            status["hardware"] = hal_status()
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
