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

from plend.control.behaviours import Mode
from plend.control.loop import Request, Snapshot
from plend.control.supervisor import CommandError
from plend.control.telemetry import Recorder, TickRecord
from plend.core.config import Config
from plend.core.errors import ConfigError
from plend.daemon.controls import Controls, PolicyLoader
from plend.daemon.runtime import RuntimeOptions, Start, build_runtime
from plend.daemon.server import ControlServer, Dispatcher, LoopCall
from plend.daemon.service import Notifier, fifo_thread, freeze_gc, make_realtime
from plend.hal.base import Hal

log = logging.getLogger("plend")

SAFE_STOP_S = 3.0


# Signals whose default ends the process at once (SIGPIPE stays ignored, as Python sets it).
STOP_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
    signal.SIGVTALRM, signal.SIGPROF,
)  # fmt: skip


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
        self.behaviour()  # checks the start
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"duration {self.duration_s!r} s must be a positive number of seconds")

    def behaviour(self) -> Start:
        """What the robot starts doing."""
        return Start(self.start, self.speed, self.turn, self.side)


class Daemon:
    """Owns every part of a running plend; :meth:`run` returns the exit code."""

    def __init__(self, config: Config, options: DaemonOptions, hal: Hal | None = None):
        self.config, self.options = config, options
        self.period = 1.0 / config.loop.rate_hz
        self.notifier = Notifier()
        self.runtime = build_runtime(config, RuntimeOptions(hal=hal, pose=True, on_change=self._mode_changed))
        self.hal, self.supervisor, self.loop = self.runtime.hal, self.runtime.supervisor, self.runtime.loop
        self.pose = self.runtime.pose
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

    def _policy_loader(self) -> PolicyLoader:
        # Imported now, before the loop runs: importing it holds the interpreter for tens of
        # milliseconds, which during a first 'policy load' made the loop miss ticks.
        with contextlib.suppress(ImportError):
            importlib.import_module("onnxruntime")
        return self.runtime.policy_loader()

    def _wait(self, thread: threading.Thread) -> None:
        deadline = None if self.options.duration_s is None else time.monotonic() + self.options.duration_s
        if threading.current_thread() is threading.main_thread():
            # Every signal whose default would end the process at once ends it the safe way:
            # a closed terminal (SIGHUP) must not leave the servos holding a stride.
            for sig in STOP_SIGNALS:
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
        try:
            self.runtime.start(self.options.behaviour())
        except CommandError as exc:
            log.error("not starting %s: %s", self.options.start, exc)

    def _safe_stop(self) -> None:
        """Stop walking at the next safe point, stand, then relax."""
        self.supervisor.handle("stop")  # always allowed; a no-op unless something moves
        deadline = time.monotonic() + SAFE_STOP_S
        settled = (Mode.STAND, Mode.RELAX, Mode.ESTOP, Mode.CALIBRATE)  # calibration has nothing to finish
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
