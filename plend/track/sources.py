"""Where frames come from: a V4L2 camera or a video file through OpenCV, or the emulated
camera rendering a running daemon's simulated robot."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

from plend.core.errors import PlendError
from plend.track.emulated import EmulatedCamera, Frame
from plend.track.geometry import Pose
from plend.track.link import DaemonLink
from plend.track.markers import cv2_module
from plend.track.settings import TrackConfig


class CameraError(PlendError, OSError):
    """The camera cannot be opened or stopped delivering frames; says what to check."""


class EndOfVideo(PlendError, EOFError):
    """A video file has no more frames."""


class FrameSource(Protocol):
    """Delivers frames; ``read`` returns None when none came this time (a dropped frame)."""

    name: str
    live: bool

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class VideoSource:
    """A V4L2 device (path or index) or a video file, read with OpenCV."""

    def __init__(self, spec: str, config: TrackConfig):
        cv2 = cv2_module()
        self.name = spec
        self.live = not Path(spec).is_file() or spec.startswith("/dev/")
        if self.live:
            target: str | int = int(spec) if spec.isdigit() else spec
            if isinstance(target, str) and not Path(target).exists():
                raise CameraError(f"no camera at {spec}; plug it in, or pick another with --camera")
            self.capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        else:
            self.capture = cv2.VideoCapture(spec)
        if not self.capture.isOpened():
            raise CameraError(f"cannot open {spec} as a {'camera' if self.live else 'video'}; is it in use?")
        if self.live:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
            self.capture.set(cv2.CAP_PROP_FPS, config.fps)
            self.capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or config.fps
        self._index = 0

    def size(self) -> tuple[int, int]:
        cv2 = cv2_module()
        return int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(
            self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        )

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        now = time.monotonic()
        if not ok:
            if not self.live:
                raise EndOfVideo(f"{self.name}: end of the video")
            return None
        # A file's frames carry their own time; a camera's, when read (its exposure and
        # transfer come before: the latency figure leaves them out).
        stamp = now if self.live else self._index / self.fps
        self._index += 1
        return Frame(image, stamp, now)

    def close(self) -> None:
        self.capture.release()


class EmulatedLiveSource:
    """The emulated camera on a running daemon's simulated robot, in real time: at each
    frame time it asks the daemon for the torso's true pose and renders it."""

    live = True

    def __init__(self, camera: EmulatedCamera, link: DaemonLink, stop: threading.Event):
        self.camera, self.link, self.stop = camera, link, stop
        self.name = "emulated"
        self.period = 1.0 / camera.settings.fps
        self._next = time.monotonic()
        self.last_truth: Pose | None = None

    def read(self) -> Frame | None:
        self.stop.wait(max(0.0, self._next - time.monotonic()))
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        stamp = time.monotonic()
        self.last_truth = self.link.truth()
        frame = self.camera.capture(self.last_truth, stamp)
        if frame is not None:
            self.stop.wait(max(0.0, frame.ready - time.monotonic()))  # the camera's latency
        return frame

    def close(self) -> None:
        pass
