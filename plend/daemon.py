"""The daemon: the control loop on its own thread, the control socket, systemd, telemetry.

Start-up opens the HAL, starts the loop thread (which reads the robot first and owns the
HAL from then on), opens the socket and tells systemd READY=1. SIGTERM or SIGINT asks
the loop to stop walking at the next safe point, stand, relax and close the HAL; the
process then exits 0. A loop that dies on an error relaxes what it can and the process
exits 1, so systemd restarts it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaits.sine import check_command, check_speed
from gaits.walker import SineGait
from plend.config import Config
from plend.controls import Controls
from plend.errors import ConfigError
from plend.hal import make_hal
from plend.hal.base import Hal
from plend.loop import ControlLoop, Request, Snapshot, WallClock
from plend.pose import PoseStore
from plend.robot import stand_pose
from plend.safety import SafetyFilter
from plend.server import ControlServer, Dispatcher, LoopCall
from plend.service import Notifier, fifo_thread, freeze_gc, make_realtime
from plend.supervisor import CommandError, Supervisor
from plend.telemetry import Recorder, TickRecord

log = logging.getLogger("plend")

SAFE_STOP_S = 3.0


@dataclass(frozen=True)
class DaemonOptions:
    """How this daemon run differs from the config."""

    socket: Path | None
    start: str = "relax"  # relax, stand or sine
    speed: float = 0.5
    duration_s: float | None = None
    turn: float = 0.0
    side: float = 0.0

    def __post_init__(self) -> None:
        if self.start not in ("relax", "stand", "sine"):
            raise ConfigError(f"cannot start with {self.start!r}; choose relax, stand or sine")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"duration {self.duration_s!r} s must be a positive number of seconds")
        for name in ("speed", "turn", "side"):
            try:
                check_command(name, getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"--{name}: {exc}") from None


class Daemon:
    """Owns every part of a running plend; :meth:`run` returns the exit code."""

    def __init__(self, config: Config, options: DaemonOptions, hal: Hal | None = None):
        self.config, self.options = config, options
        self.period = 1.0 / config.loop.rate_hz
        if config.loop.time_scale != 1.0 and config.hal == "hardware" and config.hardware.bus != "emulated":
            raise ConfigError("loop.time_scale must be 1 on a real robot; it is for simulated ones")
        self.hal = hal or make_hal(config.hal, config, initial_pose=stand_pose())
        self.notifier = Notifier()
        SineGait(0.0)  # checks the gait's speed range now rather than in the first tick that walks
        self.pose = PoseStore(config.track)
        self.supervisor = Supervisor(
            config.safety,
            self.period,
            on_change=self._mode_changed,
            hal=self.hal,
            pose=self.pose,
            gait=config.gait,
        )
        problem = getattr(getattr(self.hal, "calibration", None), "problem", None)
        if problem:
            self.supervisor.block("calibration", problem)
        safety = SafetyFilter.from_config(config.safety, self.period)
        self.loop = ControlLoop(
            self.hal,
            self.supervisor,
            self.period,
            safety,
            WallClock(config.loop.spin_s, config.loop.time_scale),
        )
        self.recorder = Recorder(
            config.paths.recordings_path(), config.telemetry.max_bytes, config.telemetry.queue_size,
            hal=config.hal, rate_hz=config.loop.rate_hz,
        )  # fmt: skip
        self.loop.observers.append(self._record)
        self.realtime: list[str] = []
        self.server: ControlServer | None = None
        self.stop_requested = threading.Event()
        self.started = threading.Event()
        self.exit_code = 0

    # -- life cycle ---------------------------------------------------------------------

    def run(self) -> int:
        """Run until a signal, the duration or a fatal error; return the exit code."""
        self.hal.open(self.period)
        thread = threading.Thread(target=self._control_thread, name="plend-control")
        try:
            self._serve()
            gc_note = freeze_gc()  # before the loop starts: a collection here would stall it
            thread.start()
            self.started.wait()
            self.realtime.append(gc_note)
            log.info("real-time: %s", "; ".join(self.realtime))
            if not self.stop_requested.is_set():
                self.notifier.ready(f"running: {self.supervisor.mode}")
                self._wait(thread)
        finally:
            self.stop_requested.set()
            if thread.is_alive():
                thread.join()
            else:
                self.hal.close()
            self._close()
        return self.exit_code

    def _serve(self) -> None:
        if self.options.socket is None:
            return
        controls = Controls(
            self.loop, self.supervisor, self.config, self.recorder, self.realtime, self._policy_loader(),
            pose=self.pose,
        )  # fmt: skip
        dispatcher = Dispatcher(controls.handlers(), inline=controls.inline())
        raise_file_limit(2 * self.config.socket.max_connections + 64)
        self.server = ControlServer(self.options.socket, dispatcher, self.config.socket, self._submit)
        self.server.on_disconnect.append(controls.calibration.connection_closed)
        self.server.on_disconnect.append(controls.drive.connection_closed)
        self.server.on_start = self._socket_thread_priority
        self.server.start()
        log.info("control socket %s", self.options.socket)

    def _socket_thread_priority(self) -> None:
        """Real-time scheduling for the socket thread, below the control thread's: on a
        busy machine an e-stop's answer then waits for no other program."""
        loop = self.config.loop
        priority = min(self.config.socket.rt_priority, loop.rt_priority - 1)
        if loop.realtime and priority > 0:
            self.realtime.append(fifo_thread(priority, "the socket thread"))

    def _submit(self, call: LoopCall, received: float) -> Request:
        """Hand a command the server has checked to the loop."""
        request = Request(call.name, **call.args)
        request.received = received
        return self.loop.submit(request, urgent=call.urgent)

    def _policy_loader(self) -> Any:
        try:
            from policies.runner import make_policy_loader
        except ImportError:  # an install without the policy runner
            from plend.controls import no_policy_runner

            return no_policy_runner
        # Imported now, before the loop runs: importing it holds the interpreter for tens of
        # milliseconds, which during a first 'policy load' made the loop miss ticks.
        with contextlib.suppress(ImportError):
            importlib.import_module("onnxruntime")
        return make_policy_loader(self.hal, self.config.loop.rate_hz, lambda: self.loop.sensors, self.pose)

    def _wait(self, thread: threading.Thread) -> None:
        deadline = None if self.options.duration_s is None else time.monotonic() + self.options.duration_s
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: self.request_stop(signal.Signals(signum).name))
        while thread.is_alive() and not self.stop_requested.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop("duration reached")
            self.stop_requested.wait(0.1)

    def request_stop(self, why: str) -> None:
        """Ask the daemon to bring the robot to a safe pose, relax and exit."""
        if not self.stop_requested.is_set():
            log.info("stopping (%s)", why)
            self.notifier.stopping()
        self.stop_requested.set()

    def _close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.recorder.close()
        self.notifier.close()

    # -- the control thread ---------------------------------------------------------------

    def _control_thread(self) -> None:
        try:
            if self.config.loop.realtime:
                self.realtime.extend(make_realtime(self.config.loop.rt_priority))
            self.loop.start()
            self._start_behaviour()
            self.loop.tick()
            self.started.set()
            while not self.stop_requested.is_set():
                if self.loop.tick():
                    self.notifier.watchdog()
            self._safe_stop()
        except Exception:
            log.exception("control loop failed; relaxing the servos")
            self.exit_code = 1
            self.stop_requested.set()
            self.started.set()
        finally:
            self.hal.close()
            log.info("stopped: servos relaxed")

    def _start_behaviour(self) -> None:
        start = self.options.start
        try:
            if start == "sine":
                opts = self.options
                self.supervisor.handle("gait", speed=check_speed(opts.speed), turn=opts.turn, side=opts.side)
            elif start == "stand":
                self.supervisor.handle("stand")
        except CommandError as exc:
            log.error("not starting %s: %s", start, exc)

    def _safe_stop(self) -> None:
        """Stop walking at the next safe point, stand, then relax."""
        self.supervisor.handle("stop")  # always allowed; a no-op unless something moves
        deadline = time.monotonic() + SAFE_STOP_S
        settled = ("stand", "relax", "estop", "calibrate")  # calibration has nothing to finish
        while self.supervisor.mode not in settled and time.monotonic() < deadline:
            self.loop.tick()
        self.supervisor.handle("relax")
        self.loop.tick()

    def _mode_changed(self, mode: str) -> None:
        self.notifier.status(f"running: {mode}")

    def _record(self, snap: Snapshot) -> None:
        if not self.recorder.recording:
            return
        faults = tuple(f.code for f in self.supervisor.faults)
        self.recorder.submit(TickRecord.from_snapshot(snap, faults))

    def summary(self) -> dict[str, Any]:
        """Figures of the run so far."""
        stats = self.loop.stats
        return {
            "mode": self.supervisor.mode,
            "ticks": stats.ticks,
            "overruns": stats.overruns,
            "rate_hz": round(stats.rate_hz(), 2),
            "compute_ms": stats.compute.percentiles_ms(),
            "lateness_ms": stats.lateness.percentiles_ms(),
            "faults": self.supervisor.fault_list(),
        }


def raise_file_limit(wanted: int) -> None:
    """Raise this process's soft limit of open files toward ``wanted`` (up to the hard
    limit), so the socket can hold its connections; says so when it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
        return
    if target < wanted:
        log.warning("open files limited to %d (hard limit); socket.max_connections may not all fit", target)


def run_daemon(config: Config, options: DaemonOptions) -> tuple[int, dict[str, Any]]:
    """Build and run the daemon; returns the exit code and the run's summary."""
    sys.setswitchinterval(0.001)  # hand the GIL back to the control thread quickly
    daemon = Daemon(config, options)
    code = daemon.run()
    return code, daemon.summary()
