"""Video of a simulated run: ``plend run --fast --video walk.mp4`` (or ``.gif``).

A :class:`VideoRecorder` watches the control loop's snapshots and, at the video's frame
times on the simulated clock, draws the robot (plend.daemon.render, or PyBullet's own
renderer) from a camera that follows it, adds a line of text (time, mode, command,
measured speed) and writes the frame: MP4 through OpenCV, GIF through Pillow. It only
reads the simulation, so the run's figures are the same with and without a video.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.errors import ConfigError, PlendError, require_package
from plend.hal.base import Filmable
from plend.hal.sim_scene import CameraView

RENDERERS = ("boxes", "pybullet")
FOLLOW_TAU_S = 0.6  # the camera follows the robot with this lag, so a sway does not shake it
SPEED_TAU_S = 1.0  # the speed shown is averaged over about this long (a step rocks it)


class VideoError(PlendError, OSError):
    """The video cannot be written; the message names the file."""


@dataclass(frozen=True)
class VideoOptions:
    """What to film and how.

    Attributes:
        path: the file; ``.mp4`` or ``.gif``.
        width, height: pixels (even numbers, 64 to 1920).
        fps: frames per simulated second.
        renderer: "boxes" (plend.daemon.render: fast) or "pybullet" (its software renderer).
        distance_m, yaw_deg, pitch_deg: the camera's distance from the robot, its
            direction relative to the robot's starting heading (0: from behind, 90: from
            the robot's left) and its pitch (negative looks down).
        overlay: draw the line of text.
    """

    path: Path
    width: int = 320
    height: int = 240
    fps: float = 25.0
    renderer: str = "boxes"
    distance_m: float = 0.55
    yaw_deg: float = 135.0
    pitch_deg: float = -22.0
    overlay: bool = True

    def __post_init__(self) -> None:
        if self.path.suffix.lower() not in (".mp4", ".gif"):
            raise ConfigError(f"--video {self.path}: give a file ending in .mp4 or .gif")
        for key in ("width", "height"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 1920 or value % 2:
                raise ConfigError(f"video {key} {value!r} must be an even number of pixels in [64, 1920]")
        if not (math.isfinite(self.fps) and 1.0 <= self.fps <= 60.0):
            raise ConfigError(f"video fps {self.fps!r} is out of range; use a value in [1, 60]")
        if self.renderer not in RENDERERS:
            raise ConfigError(f"video renderer {self.renderer!r}; choose one of: {', '.join(RENDERERS)}")
        if not (math.isfinite(self.distance_m) and 0.1 <= self.distance_m <= 10.0):
            raise ConfigError(f"video distance {self.distance_m!r} m is out of range; use [0.1, 10]")
        if not (math.isfinite(self.yaw_deg) and -360.0 <= self.yaw_deg <= 360.0):
            raise ConfigError(f"video yaw {self.yaw_deg!r} deg is out of range; use [-360, 360]")
        if not (math.isfinite(self.pitch_deg) and -89.0 <= self.pitch_deg <= 10.0):
            raise ConfigError(f"video pitch {self.pitch_deg!r} deg is out of range; use [-89, 10]")


class VideoRecorder:
    """Films a run. Constructing it does nothing; :meth:`open` checks the robot and opens
    the file; :meth:`observe` is a loop observer; :meth:`close` finishes the file."""

    def __init__(self, options: VideoOptions, hal: Any, describe: Callable[[], str] = lambda: ""):
        self.options, self.hal, self.describe = options, hal, describe
        self._writer: _Mp4Writer | _GifWriter | None = None
        self._next_t: float | None = None
        self._target: np.ndarray | None = None
        self._heading = 0.0
        self._speed = 0.0  # forward speed, averaged over about a second
        self.frames = 0
        self.render_s = 0.0
        self._partial = options.path

    def open(self) -> None:
        if not isinstance(self.hal, Filmable):
            raise ConfigError("--video films the simulated robot; run with --hal sim")
        require_package("cv2", "video")
        path = self.options.path
        if path.suffix.lower() == ".gif":
            require_package("PIL", "video")
        if not path.parent.is_dir():
            raise VideoError(f"cannot write {path}: its directory does not exist")
        # Frames go to a new file beside it, renamed over the path once complete: a rename
        # replaces a symbolic link there rather than writing through it, and a run that
        # fails leaves the old file as it was.
        self._partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
        try:
            os.close(os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        except OSError as exc:
            raise VideoError(f"cannot write {path}: {exc.strerror or exc}") from None
        partial = replace(self.options, path=self._partial)
        try:
            self._writer = _GifWriter(partial) if path.suffix.lower() == ".gif" else _Mp4Writer(partial)
        except VideoError:
            self._partial.unlink(missing_ok=True)
            raise VideoError(f"cannot write {path}: OpenCV could not open an MP4 writer there") from None
        truth = self.hal.truth()
        self._heading = truth.euler[2]
        self._target = np.asarray(truth.position, float)

    def observe(self, snapshot: Any) -> None:
        """Film this tick if a frame falls due on the simulated clock."""
        if self._writer is None:
            return
        period = 1.0 / self.options.fps
        if self._next_t is None:
            self._next_t = snapshot.time
        if snapshot.time + 1e-9 < self._next_t:
            return
        self._next_t += period * max(1, math.floor((snapshot.time - self._next_t) / period + 1e-9) + 1)
        began = time.perf_counter()
        self._writer.write(self._frame(snapshot, period))
        self.render_s += time.perf_counter() - began
        self.frames += 1

    def _frame(self, snapshot: Any, period: float) -> np.ndarray:
        from plend.daemon.render import render

        truth = self.hal.truth()
        position = np.asarray(truth.position, float)
        assert self._target is not None
        self._target += (1.0 - math.exp(-period / FOLLOW_TAU_S)) * (position - self._target)
        o = self.options
        view = CameraView(
            target=(float(self._target[0]), float(self._target[1]), float(self._target[2]) - 0.03),
            distance_m=o.distance_m, yaw_deg=math.degrees(self._heading) + o.yaw_deg - 180.0,
            pitch_deg=o.pitch_deg, width=o.width, height=o.height,
        )  # fmt: skip
        if o.renderer == "pybullet":
            image = np.ascontiguousarray(self.hal.render(view)[:, :, ::-1])
        else:
            image = render(self.hal.scene(), view)
        vx, vy, _ = truth.velocity
        yaw = truth.euler[2]
        forward = vx * math.cos(yaw) + vy * math.sin(yaw)
        self._speed += (1.0 - math.exp(-period / SPEED_TAU_S)) * (forward - self._speed)
        if o.overlay:
            _overlay(
                image,
                f"{snapshot.time:5.1f} s  {snapshot.mode}  {self.describe()}",
                f"{self._speed:+.3f} m/s",
            )
        return image

    def close(self) -> dict[str, Any]:
        """Finish the file; returns its figures (path, frames, bytes, render ms per frame)."""
        writer, self._writer = self._writer, None
        path = self.options.path
        if writer is not None:
            try:
                writer.close()
                if self.frames:
                    os.replace(self._partial, path)
            finally:
                with contextlib.suppress(OSError):
                    self._partial.unlink()
        return {
            "path": str(path),
            "frames": self.frames,
            "bytes": path.stat().st_size if path.exists() else 0,
            "frame_ms": round(1000.0 * self.render_s / max(1, self.frames), 3),
        }


def _overlay(image: np.ndarray, text: str, speed: str) -> None:
    """A dark band along the top: ``text`` at the left, ``speed`` at the right."""
    import cv2

    text = text.rstrip()
    scale = max(0.35, image.shape[1] / 800.0)
    band = int(22 * scale / 0.4)
    image[:band] = (image[:band] * 0.45).astype(np.uint8)
    font, white = cv2.FONT_HERSHEY_SIMPLEX, (255, 255, 255)
    baseline = int(band * 0.7)
    cv2.putText(image, text, (6, baseline), font, scale, white, 1, cv2.LINE_AA)
    (width, _), _ = cv2.getTextSize(speed, font, scale, 1)
    cv2.putText(image, speed, (image.shape[1] - width - 6, baseline), font, scale, white, 1, cv2.LINE_AA)


class _Mp4Writer:
    def __init__(self, options: VideoOptions):
        import cv2

        self._video = cv2.VideoWriter(
            str(options.path), cv2.VideoWriter.fourcc(*"mp4v"), options.fps, (options.width, options.height)
        )
        if not self._video.isOpened():
            raise VideoError(f"cannot write {options.path}: OpenCV could not open an MP4 writer there")

    def write(self, frame: np.ndarray) -> None:
        self._video.write(frame)

    def close(self) -> None:
        self._video.release()


class _GifWriter:
    """Frames quantised to one palette (taken from the first frame), saved at the end."""

    def __init__(self, options: VideoOptions):
        self.options = options
        self._frames: list[Any] = []
        self._palette: Any = None

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
        if self._palette is None:
            self._palette = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        self._frames.append(image.quantize(palette=self._palette, dither=Image.Dither.NONE))

    def close(self) -> None:
        if not self._frames:
            return
        duration = round(1000.0 / self.options.fps)
        first, *rest = self._frames
        try:
            first.save(self.options.path, save_all=True, append_images=rest, duration=duration, loop=0)
        except OSError as exc:
            raise VideoError(f"cannot write {self.options.path}: {exc.strerror or exc}") from None
