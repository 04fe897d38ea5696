"""``plend track --camera emulated`` without a daemon: its own simulated robot walks the
sine gait while the emulated camera films it at its frame rate (simulated time, as fast
as the machine allows) and the tracker measures the walk against the simulation's truth."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from plend.control.behaviours import Mode
from plend.core.config import Config
from plend.daemon.runtime import RuntimeOptions, Start, build_runtime
from plend.hal.base import GroundTruth
from plend.track.detect import CameraModel, make_tracker
from plend.track.emulated import EmulatedCamera
from plend.track.geometry import Pose
from plend.track.record import PoseRecorder
from plend.track.summary import WalkSummary

STOP_TIMEOUT_S = 3.0


def rehearse(
    config: Config, speed: float, duration_s: float, model: CameraModel | None = None,
    recorder: PoseRecorder | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Walk ``duration_s`` seconds and return the tracker's summary of it."""
    camera = EmulatedCamera(config.track)
    tracker = make_tracker(config.track, model or camera.model())
    runtime = build_runtime(replace(config, hal="sim"), RuntimeOptions(batch=True))
    hal, supervisor, loop, period = runtime.hal, runtime.supervisor, runtime.loop, runtime.period
    assert isinstance(hal, GroundTruth)
    summary = WalkSummary()
    hal.open(period)
    try:
        runtime.start(Start("sine", speed))
        film = _Filming(camera, tracker, summary, recorder, config.track.method, hal)
        for tick in range(round(duration_s / period)):
            loop.tick()
            film.tick((tick + 1) * period)
            if supervisor.counts.falls:
                break
        supervisor.handle("stop")
        for _ in range(int(STOP_TIMEOUT_S / period)):
            if supervisor.mode == Mode.STAND:
                break
            loop.tick()
    finally:
        hal.close()
    result = summary.result()
    result.update(camera="emulated", hal="sim", speed=speed, robot_fell=bool(supervisor.counts.falls))
    return result


class _Filming:
    """Takes a frame whenever the camera's next frame time has come."""

    def __init__(
        self,
        camera: EmulatedCamera,
        tracker: Any,
        summary: WalkSummary,
        recorder: Any,
        source: str,
        hal: GroundTruth,
    ):
        self.camera, self.tracker, self.summary, self.recorder = camera, tracker, summary, recorder
        self.source, self.hal = source, hal
        self.next = 0.0

    def tick(self, now: float) -> None:
        if now + 1e-9 < self.next:
            return
        self.next += 1.0 / self.camera.settings.fps
        truth = self.hal.truth()
        pose = Pose.from_euler(truth.position, truth.euler)
        frame = self.camera.capture(pose, now)
        if frame is None:
            self.summary.drop()
            return
        observation = self.tracker.observe(frame.image, now)
        self.summary.add(observation, frame.ready - now + observation.detect_s, pose)
        if self.recorder is not None:
            self.recorder.add(observation, self.source)
