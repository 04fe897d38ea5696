"""``plend track``: the camera pose source's command line.

Printing the marker, the floor marker and the board; calibrating the camera and the
floor; tracking (streaming poses to a daemon with ``--socket``, summarising a walk with
``--duration``); and rehearsing with the emulated camera. Nothing here imports OpenCV
until it is needed, so ``plend --help`` works without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from plend.core.config import Config
from plend.core.errors import ConfigError, PlendError
from plend.core.files import path_argument, refuse_existing, write_new

log = logging.getLogger("plend.track")

NO_FRAME_WARN_S = 1.0
NO_FRAME_FAIL_S = 5.0


def add_parser(sub: Any) -> None:
    """The ``track`` subcommand and its options."""
    p = sub.add_parser(
        "track", help="the camera pose source: track the robot's marker, calibrate the camera",
        description="Track the robot with a camera: stream its torso pose to the daemon (--socket), "
        "measure a walk (--duration, --summary), calibrate the camera, print the markers.",
    )  # fmt: skip
    p.add_argument("--camera", help="V4L2 device, index, video file or 'emulated' (default from config)")
    p.add_argument("--socket", type=path_argument, help="send poses to the daemon on this socket")
    p.add_argument("--duration", type=float, help="seconds to track (default: until stopped; 20 emulated)")
    p.add_argument("--summary", choices=("json", "text", "none"), help="report at the end (default text)")
    p.add_argument("--record", type=path_argument, help="write every pose to this new MCAP file")
    p.add_argument("--speed", type=float, default=0.5, help="emulated camera without --socket: walking speed")
    p.add_argument("--calibration", type=path_argument, help="camera calibration file (default from config)")
    p.add_argument("--calibrate", action="store_true", help="measure the camera's intrinsics from the board")
    p.add_argument("--views", type=int, default=15, help="--calibrate: board views to collect (default 15)")
    p.add_argument("--set-floor", action="store_true", help="measure the floor frame from the floor marker")
    p.add_argument("--yes", action="store_true", help="save a calibration without asking")
    p.add_argument(
        "--print-marker", type=path_argument, metavar="PNG", help="write the robot's marker, to print"
    )
    p.add_argument(
        "--print-floor-marker", type=path_argument, metavar="PNG", help="write the floor marker, to print"
    )
    p.add_argument(
        "--print-board", type=path_argument, metavar="PNG", help="write the calibration board, to print"
    )


def run(config: Config, args: argparse.Namespace) -> int:
    """Carry out ``plend track``; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="plend track: %(message)s", stream=sys.stderr)
    track = config.track
    if args.camera is not None and not args.camera.strip():
        raise ConfigError("--camera needs a device (/dev/video0), an index, a video file or 'emulated'")
    if args.record is not None and args.record.suffix != ".mcap":
        raise ConfigError(f"--record {args.record}: a pose recording's name ends in .mcap")
    if args.camera:
        from dataclasses import replace

        config = replace(config, track=replace(track, camera=args.camera))
    if args.print_marker or args.print_floor_marker or args.print_board:
        return _print(config, args)
    from plend.track.markers import cv2_module

    cv2_module().setNumThreads(1)  # detection on one thread, beside the control loop
    if args.calibrate:
        return _calibrate(config, args)
    if args.set_floor:
        return _set_floor(config, args)
    return _track(config, args)


# -- printing ----------------------------------------------------------------------------


def _print(config: Config, args: argparse.Namespace) -> int:
    from plend.track import markers

    t = config.track
    dpi = markers.PRINT_DPI
    jobs = [
        (args.print_marker, lambda: markers.printable_marker(t.dictionary, t.marker_id, t.marker_size_m, dpi),
         f"the robot's marker (id {t.marker_id}): glue it flat on the torso's top, its top edge to the front",
         t.marker_size_m),
        (args.print_floor_marker,
         lambda: markers.printable_marker(t.dictionary, t.floor_marker_id, t.floor_marker_size_m, dpi),
         f"the floor marker (id {t.floor_marker_id}): lay it flat where track.floor_marker_pose says",
         t.floor_marker_size_m),
        (args.print_board, lambda: markers.printable_board(dpi),
         "the ChArUco calibration board: glue it on card",
         markers.BOARD_SQUARE_M),
    ]  # fmt: skip
    paths = [path for path, *_ in jobs if path is not None]
    if len(set(paths)) < len(paths):
        raise ConfigError("give each --print-* option its own file")
    for path in paths:
        refuse_existing("--print", path)
    for path, make, what, size in jobs:
        if path is None:
            continue
        image = make()
        write_new("--print", path, markers.png_bytes(image, dpi))
        print(f"{path}: {what}. Print at 100 % ({dpi} dpi); "
              f"{'each square' if path == args.print_board else 'the black square'} should measure "
              f"{size * 1000:.1f} mm (set the size in [track] to what you measure).")  # fmt: skip
    return 0


# -- calibration -------------------------------------------------------------------------


def _calibration_path(config: Config, args: argparse.Namespace) -> Path:
    from calibration.camera import calibration_path

    return args.calibration or calibration_path(config.track, config.paths.state_path())


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError("cannot ask whether to save without a terminal; add --yes to save")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _emulated_camera(config: Config) -> Any:
    from plend.track.emulated import EmulatedCamera

    return EmulatedCamera(config.track)


def _calibrate(config: Config, args: argparse.Namespace) -> int:
    from calibration.camera import board_points, fit_intrinsics, save

    if not 5 <= args.views <= 100:
        raise ConfigError(f"--views {args.views} is out of range; use 5 to 100")
    camera = config.track.camera
    print(f"Show the board to the camera at {args.views} different places and angles; hold it still.")
    if camera == "emulated":
        frames = _emulated_camera(config).board_views(args.views, seed=config.track.emulated.seed)
        size = (config.track.width, config.track.height)
        views = [v for v in map(board_points, frames) if v is not None]
    else:
        views, size = _collect_views(camera, config, args.views)
    record = fit_intrinsics(views, size, camera)
    m = record.matrix
    print(f"intrinsics from {record.views} views: focal {m[0][0]:.1f} x {m[1][1]:.1f} px, "
          f"centre ({m[0][2]:.1f}, {m[1][2]:.1f}), distortion {[round(d, 4) for d in record.distortion]}, "
          f"fit error {record.rms_px:.3f} px")  # fmt: skip
    path = _calibration_path(config, args)
    if not _confirm(f"save to {path}?", args.yes):
        print("not saved")
        return 1
    save(path, record)
    print(f"saved {path}; now lay the floor marker in view and run 'plend track --set-floor'")
    return 0


def _collect_views(camera: str, config: Config, wanted: int) -> tuple[list[Any], tuple[int, int]]:
    from calibration.camera import board_points
    from plend.track.sources import CameraError, VideoSource

    source = VideoSource(camera, config.track)
    views: list[Any] = []
    last = 0.0
    began = time.monotonic()
    try:
        while len(views) < wanted:
            if time.monotonic() - began > 60 * wanted:
                raise CameraError(f"only {len(views)} board views in {60 * wanted} s; is the board in view?")
            frame = source.read()
            if frame is None or frame.ready - last < 1.0:
                continue
            points = board_points(frame.image)
            if points is not None:
                views.append(points)
                last = frame.ready
                print(f"view {len(views)}/{wanted}: {len(points[1])} corners; move the board")
        return views, source.size()
    finally:
        source.close()


def _set_floor(config: Config, args: argparse.Namespace) -> int:
    from calibration.camera import FLOOR_VIEWS, describe_floor, load, measure_floor, save

    path = _calibration_path(config, args)
    record = load(path, need_floor=False)
    if config.track.camera == "emulated":
        camera = _emulated_camera(config)
        frames = [camera.render(None) for _ in range(FLOOR_VIEWS)]
    else:
        frames = _grab(config, FLOOR_VIEWS)
    record = measure_floor(record, frames, config.track)
    print(describe_floor(record))
    if not _confirm(f"save the floor frame to {path}?", args.yes):
        print("not saved")
        return 1
    save(path, record)
    print(f"saved {path}")
    return 0


def _grab(config: Config, count: int) -> list[Any]:
    from plend.track.sources import VideoSource

    source = VideoSource(config.track.camera, config.track)
    try:
        frames = [f.image for f in (source.read() for _ in range(count * 3)) if f is not None]
        return frames[-count:]
    finally:
        source.close()


# -- tracking ----------------------------------------------------------------------------


def _track(config: Config, args: argparse.Namespace) -> int:
    if args.duration is not None and not 0 < args.duration <= 86400:
        raise ConfigError(f"--duration {args.duration} is out of range; use (0, 86400] seconds")
    emulated = config.track.camera == "emulated"
    recorder = None
    if args.record is not None:
        from plend.track.record import PoseRecorder

        recorder = PoseRecorder(args.record)
    try:
        if emulated and args.socket is None:
            from plend.track.rehearse import rehearse

            model = None
            if args.calibration is not None:
                from calibration.camera import load

                model = load(args.calibration).model()
            result = rehearse(config, args.speed, args.duration or 20.0, model, recorder)
            code = 0
        else:
            code, result = _track_live(config, args, recorder)
    finally:
        if recorder is not None:
            recorder.close()
    _report(result, args.summary or "text")
    return code


def _camera_model(config: Config, args: argparse.Namespace, emulated: Any) -> Any:
    from calibration.camera import load

    if emulated is not None and args.calibration is None:
        return emulated.model()
    return load(_calibration_path(config, args)).model()


def _track_live(config: Config, args: argparse.Namespace, recorder: Any) -> tuple[int, dict[str, Any]]:
    from plend.track.detect import make_tracker
    from plend.track.link import DaemonLink
    from plend.track.sources import EmulatedLiveSource, VideoSource
    from plend.track.summary import WalkSummary

    stop = threading.Event()
    _on_signals(stop)
    link = DaemonLink(args.socket) if args.socket is not None else None
    if link is not None:
        os.nice(config.track.nice)  # beside the control loop, the loop comes first
    camera = _emulated_camera(config) if config.track.camera == "emulated" else None
    if camera is not None:
        if link is None:
            raise ConfigError("the emulated camera films a daemon's simulated robot: give --socket")
        source: Any = EmulatedLiveSource(camera, link, stop)
    else:
        source = VideoSource(config.track.camera, config.track)
        if link is not None and not source.live:
            raise ConfigError("a video file is a past walk: measure it without --socket")
    tracker = make_tracker(config.track, _camera_model(config, args, camera))
    summary = WalkSummary()
    try:
        code = _follow(source, tracker, link, summary, recorder, config, args.duration, stop)
    finally:
        source.close()
        if link is not None:
            link.close()
    result = summary.result()
    result["camera"] = config.track.camera
    if link is not None:
        result.update(sent=link.sent, refused=link.refused)
    return code, result


def _follow(source: Any, tracker: Any, link: Any, summary: Any, recorder: Any, config: Config,
            duration: float | None, stop: threading.Event) -> int:  # fmt: skip
    from plend.track.detect import Lost
    from plend.track.sources import CameraError, EndOfVideo

    method = "emulated" if source.name == "emulated" else config.track.method
    deadline = None if duration is None else time.monotonic() + duration
    last_frame = time.monotonic()
    warned = False
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        try:
            frame = source.read()
        except EndOfVideo:
            return 0
        if frame is None:
            summary.drop()
            quiet = time.monotonic() - last_frame
            if quiet > NO_FRAME_FAIL_S:
                raise CameraError(
                    f"camera {source.name} stopped delivering frames ({quiet:.0f} s); check its cable"
                )
            if quiet > NO_FRAME_WARN_S and not warned and link is not None:
                link.send(Lost(time.monotonic(), f"camera gave no frame for {quiet:.1f} s"), method)
                warned = True
            continue
        last_frame, warned = time.monotonic(), False
        observation = tracker.observe(frame.image, frame.stamp)
        truth = getattr(source, "last_truth", None)
        summary.add(observation, time.monotonic() - frame.stamp, truth)
        if link is not None and source.live:
            link.send(observation, method)
        if recorder is not None:
            recorder.add(observation, method)
    return 0


def _on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())


def _report(result: dict[str, Any], style: str) -> None:
    if style == "json":
        print(json.dumps(result), flush=True)
    elif style == "text":
        for key, value in result.items():
            print(f"{key:>20}: {value}")


__all__ = ["PlendError", "add_parser", "run"]
