"""A batch run: one behaviour in simulation for a fixed time, with a summary.

This is what ``plend run --fast`` does: build the HAL, the supervisor and the loop, walk
(or run a policy) for ``duration`` seconds on the simulated clock, bring the robot back to
standing, relax it and report. The daemon (``plend run`` in real time) is plend.daemon.daemon.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plend.control.behaviours import Mode, Walk
from plend.control.loop import ControlLoop
from plend.control.supervisor import Supervisor
from plend.core.config import Config
from plend.core.errors import ConfigError
from plend.daemon.runtime import RuntimeOptions, Start, build_runtime
from plend.hal.base import BusFigures, GroundTruth, Hal
from plend.model.sensors import TorsoTruth
from plend.model.sim_world import world_dict

STOP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class RunOptions:
    """What to run and for how long."""

    gait: str = "sine"
    speed: float = 0.5
    duration_s: float = 20.0
    fast: bool = False
    policy: Path | None = None
    turn: float = 0.0
    side: float = 0.0
    video: Any = None  # a plend.daemon.video.VideoOptions: film the run
    record: Path | None = None  # record every tick to this MCAP file

    def __post_init__(self) -> None:
        self.behaviour()  # checks the start
        if not (math.isfinite(self.duration_s) and 0 < self.duration_s <= 86400):
            raise ConfigError(f"duration {self.duration_s!r} s is out of range; use (0, 86400]")

    def behaviour(self) -> Start:
        """What the robot starts doing."""
        return Start(self.gait, self.speed, self.turn, self.side, self.policy)


def run(config: Config, options: RunOptions, hal: Hal | None = None) -> dict[str, Any]:
    """Run and return the summary (see :func:`summarise`); ``hal``: a backend built
    elsewhere instead of the config's."""
    runtime = build_runtime(config, RuntimeOptions(batch=options.fast, hal=hal))
    if runtime.calibration is not None and runtime.calibration.problem:
        raise ConfigError(runtime.calibration.problem)  # a batch run has no wizard to fix it with
    hal, supervisor, loop, period = runtime.hal, runtime.supervisor, runtime.loop, runtime.period
    with _opened(hal, period):
        with _Outputs(options, hal, loop, supervisor, config) as outputs:  # opened before anything moves
            runtime.start(options.behaviour())
            start_pose = _truth(hal)
            heading = _Heading(hal, config.safety.fall_tilt_deg)
            loop.observers.append(heading.observe)
            began = time.perf_counter()
            fell = _walk(loop, round(options.duration_s / period), toppled=heading.toppled)
            walk = supervisor.behaviour
            balance = walk.report()["balance"] if isinstance(walk, Walk) else None
            if not fell:
                supervisor.handle("stop")
                fell = _walk(
                    loop, int(STOP_TIMEOUT_S / period), lambda: supervisor.mode == Mode.STAND, heading.toppled
                )
        wall = time.perf_counter() - began  # finishing the video or the recording included
        end_pose = _truth(hal)
    summary = summarise(loop, supervisor, options, config, fell, wall, start_pose, end_pose)
    summary.update(outputs.figures)
    if options.gait == "sine" and options.policy is None:
        summary["balance"] = balance  # at the end of the walk; None: off (or it fell)
    if heading.turned is not None:
        summary["yaw_deg"] = round(math.degrees(heading.turned), 2)
        summary["yaw_rate_deg_s"] = round(math.degrees(heading.turned) / max(summary["duration_s"], 1e-9), 3)
        summary["walked_m"] = round(heading.walked, 4)
    return summary


class _Outputs:
    """What a run writes besides its summary (a video), opened before the first tick and
    finished however the run ends; ``figures`` go into the summary."""

    def __init__(
        self, options: RunOptions, hal: Hal, loop: ControlLoop, supervisor: Supervisor, config: Config
    ):
        self.options, self.hal, self.loop, self.supervisor = options, hal, loop, supervisor
        self.config = config
        self.figures: dict[str, Any] = {}
        self._video: Any = None
        self._recorder: Any = None

    def __enter__(self) -> _Outputs:
        if self.options.record is not None:
            self._start_recording(self.options.record)
        if self.options.video is not None:
            from plend.daemon.video import VideoRecorder

            self._video = VideoRecorder(self.options.video, self.hal, lambda: describe(self.supervisor))
            self._video.open()
            self.loop.observers.append(self._video.observe)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._video is not None:
                self.figures["video"] = self._video.close()
        finally:
            if self._recorder is not None:
                self.figures["recording"] = self._recorder.stop()

    def _start_recording(self, path: Path) -> None:
        """Every tick to ``path``, waiting for the writer rather than dropping a tick (on
        the simulated clock a batch run outpaces it)."""
        from plend.control.telemetry import Recorder, TickRecord

        c = self.config
        self._recorder = Recorder(
            path.parent, c.telemetry.max_bytes, c.telemetry.queue_size, hal=c.hal, rate_hz=c.loop.rate_hz,
            lossless=True,
        )  # fmt: skip
        self._recorder.start(path.name)
        supervisor = self.supervisor

        def record(snap: Any) -> None:
            faults = tuple(f.code for f in supervisor.faults)
            self._recorder.submit(TickRecord.from_snapshot(snap, faults))

        self.loop.observers.append(record)


def describe(supervisor: Supervisor) -> str:
    """The command in effect, in a few words (for a video's overlay)."""
    report = getattr(supervisor.behaviour, "report", None)
    if not callable(report):
        return ""
    r = report()
    words = f"speed {r['speed']:+.2f}"
    for key in ("turn", "side"):
        if r.get(key):
            words += f" {key} {r[key]:+.2f}"
    return words + (" stopping" if r.get("stopping") else "")


class _Heading:
    """Follows the ground-truth heading every tick, so turns past 180 degrees add up, and
    the distance walked along the heading tick by tick (a turning walk's path); and whether
    the torso has truly tilted past ``fall_tilt_deg``, in any mode: a robot that a fault
    relaxed and that then falls over has fallen, though no fall monitor ran to say so."""

    def __init__(self, hal: Hal, fall_tilt_deg: float = 90.0):
        self._truth = hal.truth if isinstance(hal, GroundTruth) else None
        self._fall_cos = math.cos(math.radians(fall_tilt_deg))
        self.is_toppled = False
        start = self._truth() if self._truth else None
        self._last = start.euler[2] if start else 0.0
        self._at = start.position[:2] if start else (0.0, 0.0)
        self.turned: float | None = 0.0 if self._truth else None
        self.walked = 0.0

    def observe(self, snapshot: object) -> None:
        if self._truth is None or self.turned is None:
            return
        truth = self._truth()
        roll, pitch, yaw = truth.euler
        self.is_toppled = self.is_toppled or math.cos(roll) * math.cos(pitch) < self._fall_cos
        step = math.atan2(math.sin(yaw - self._last), math.cos(yaw - self._last))
        heading = self._last + 0.5 * step
        dx, dy = truth.position[0] - self._at[0], truth.position[1] - self._at[1]
        self.walked += dx * math.cos(heading) + dy * math.sin(heading)
        self.turned += step
        self._last, self._at = yaw, truth.position[:2]

    def toppled(self) -> bool:
        return self.is_toppled


class _opened:
    """Opens a HAL and always closes (relaxes) it, whatever ends the run."""

    def __init__(self, hal: Hal, period: float):
        self.hal, self.period = hal, period

    def __enter__(self) -> Hal:
        self.hal.open(self.period)
        return self.hal

    def __exit__(self, *exc: object) -> None:
        self.hal.close()


def _walk(loop: ControlLoop, ticks: int, done: Any = lambda: False, toppled: Any = lambda: False) -> bool:
    """Run up to ``ticks`` ticks; return True if the robot fell: the supervisor saw a fall,
    or ``toppled()`` says the torso lies past the fall tilt."""
    supervisor = loop.decider
    assert isinstance(supervisor, Supervisor)
    for _ in range(ticks):
        if done():
            return False
        loop.tick()
        if supervisor.counts.falls or toppled():
            return True
    return False


def _truth(hal: Hal) -> TorsoTruth | None:
    return hal.truth() if isinstance(hal, GroundTruth) else None


def summarise(
    loop: ControlLoop,
    supervisor: Supervisor,
    options: RunOptions,
    config: Config,
    fell: bool,
    wall: float,
    start: Any,
    end: Any,
) -> dict[str, Any]:
    """The run's figures, as ``--summary json`` prints them."""
    sim_time = loop.stats.ticks * loop.period
    summary: dict[str, Any] = {
        "hal": config.hal,
        "gait": options.gait if options.policy is None else f"policy {options.policy.name}",
        "speed": options.speed,
        "turn": options.turn,
        "side": options.side,
        "fell": fell,
        "ticks": loop.stats.ticks,
        "duration_s": round(sim_time, 3),
        "rate_hz": round(loop.stats.ticks / max(sim_time if options.fast else wall, 1e-9), 2),
        "overruns": loop.stats.overruns,
        "wall_s": round(wall, 3),
        "sim_realtime_factor": round(sim_time / max(wall, 1e-9), 2),
        "tick_compute_ms": loop.stats.compute.percentiles_ms(),
        "safety_interventions": vars(loop.safety.counts),
        "end_mode": supervisor.mode,
    }
    if start is not None and end is not None:
        heading = start.euler[2]
        dx, dy = (end.position[0] - start.position[0], end.position[1] - start.position[1])
        yaw = math.degrees(math.atan2(math.sin(end.euler[2] - heading), math.cos(end.euler[2] - heading)))
        summary.update(
            distance_m=round(dx * math.cos(heading) + dy * math.sin(heading), 4),
            lateral_m=round(-dx * math.sin(heading) + dy * math.cos(heading), 4),
            yaw_deg=round(yaw, 2),
        )
    if isinstance(loop.hal, BusFigures):
        summary.update(loop.hal.bus_figures())
    if config.hal == "sim" or config.hardware.bus == "emulated":
        summary["world"] = world_dict(config.sim)
    if fell:
        summary["time_to_fall_s"] = round(sim_time, 3)
    return summary
