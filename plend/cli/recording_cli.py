"""``plend``'s commands for pictures and recordings: the options of ``plend run --fast
--video/--record``, and ``plend plot`` and ``plend export`` of a recording."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from plend.core.errors import ConfigError
from plend.core.files import create_new, path_argument, refuse_existing


def run_recording_command(args: argparse.Namespace) -> int:
    """``plend plot`` or ``plend export``."""
    return _cmd_plot(args) if args.command == "plot" else _cmd_export(args)


def _read(args: argparse.Namespace) -> Any:
    """The recording ``args`` name, read within the limits of a recording plend writes
    (telemetry.max_bytes, from the config ``--config`` names)."""
    from plend.cli.recording import ReadLimits, read
    from plend.core.config import load

    max_bytes = load(getattr(args, "config", None)).telemetry.max_bytes
    rec = read(args.recording, limits=ReadLimits(max_bytes, ticks=max(2_000_000, max_bytes // 64)))
    for problem in rec.problems:
        print(f"plend: note: {args.recording}: {problem}", file=sys.stderr)
    return rec


MAX_GIF_PIXELS = 512 << 20  # one byte a pixel once quantised: 512 MiB of frames


def add_video_options(run: argparse.ArgumentParser) -> None:
    """``plend run --fast --video FILE`` and how it looks."""
    video = run.add_argument_group("video of a simulated run (with --fast)")
    video.add_argument(
        "--video", type=path_argument, metavar="FILE", help="film the run to FILE.mp4 or FILE.gif"
    )
    video.add_argument("--video-size", default="320x240", metavar="WxH", help="pixels (default 320x240)")
    video.add_argument("--video-fps", type=float, default=25.0, help="frames per second (default 25)")
    video.add_argument(
        "--video-renderer", choices=("boxes", "pybullet"), default="boxes",
        help="boxes: plend's fast renderer (default); pybullet: PyBullet's software renderer",
    )  # fmt: skip
    video.add_argument(
        "--video-view", default="135,-22,0.55", metavar="YAW,PITCH,DIST",
        help="camera: degrees from behind the robot (90: its left side), pitch, distance m",
    )  # fmt: skip


def video_options(args: argparse.Namespace) -> Any:
    """The VideoOptions of ``--video`` and its companions, checked; None without --video."""
    if getattr(args, "video", None) is None:
        return None
    from plend.daemon.video import VideoOptions

    try:
        width, height = (int(v) for v in args.video_size.lower().split("x"))
        yaw, pitch, distance = (float(v) for v in args.video_view.split(","))
    except ValueError:
        raise ConfigError(
            f"--video-size {args.video_size!r} / --video-view {args.video_view!r}: give WxH (e.g. 320x240) "
            "and YAW,PITCH,DIST (e.g. 135,-22,0.55)"
        ) from None
    if args.video.is_symlink() or (args.video.exists() and not args.video.is_file()):
        # A regular file is filmed over (the README remakes docs/walk.gif so); a link never followed.
        raise ConfigError(
            f"--video {args.video} is a symbolic link or not a regular file; choose another file name"
        )
    fps = args.video_fps
    options = VideoOptions(args.video, width, height, fps, args.video_renderer, distance, yaw, pitch)
    frames = (20.0 if getattr(args, "duration", None) is None else args.duration) * args.video_fps
    if args.video.suffix.lower() == ".gif" and frames * width * height > MAX_GIF_PIXELS:
        raise ConfigError(  # a GIF keeps every frame in memory until it is written
            f"--video {args.video}: a GIF of {frames:.0f} frames of {width}x{height} would hold "
            f"{frames * width * height / 2**20:.0f} MiB until the end of the run (at most "
            f"{MAX_GIF_PIXELS >> 20}); film it as .mp4, or shorter, smaller or at fewer frames per second"
        )
    return options


def add_recording_commands(sub: Any) -> None:
    """``plend plot REC.mcap``: a recording on one page."""
    plot = sub.add_parser(
        "plot", help="draw a recording (MCAP): joints, IMU, contacts, timing, modes and faults",
        description="Draw a telemetry recording on one page, on a machine without a display: target "
        "against measured angle per joint, roll/pitch/yaw, gyro, foot contacts (simulation), tick compute "
        "time and lateness, modes and faults over time.",
    )  # fmt: skip
    plot.add_argument("recording", type=path_argument, metavar="REC.mcap")
    plot.add_argument(
        "-o", "--out", type=path_argument, help="the picture, .png, .svg or .pdf (default REC.png)"
    )
    plot.add_argument("--joints", default="legs", help="legs (default), arms, all, or names A,B,...")
    export = sub.add_parser(
        "export", help="write a recording's targets (or measured angles) as a replay CSV",
        description="Write the joint targets of a recording (or, with --measured, its measured angles) in "
        "the CSV format plenctl replay plays: '# rate_hz: R', a header of joint names, a row per tick.",
    )  # fmt: skip
    export.add_argument("recording", type=path_argument, metavar="REC.mcap")
    export.add_argument(
        "-o", "--out", type=path_argument, help="the CSV file (default REC.csv); never overwritten"
    )
    export.add_argument("--measured", action="store_true", help="the measured angles instead of the targets")


def _cmd_plot(args: argparse.Namespace) -> int:
    from plend.cli.plot import joints_for, plot

    out = args.out or args.recording.with_suffix(".png")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"-o {out}: give a .png, .svg or .pdf file")
    if not out.absolute().parent.is_dir():
        raise ConfigError(f"-o {out}: the folder {out.absolute().parent} does not exist")
    refuse_existing("-o", out)
    rec = _read(args)
    joints = joints_for(args.joints, rec.joint_names)
    fd = create_new("-o", out)
    try:
        with os.fdopen(fd, "wb") as f:
            plot(rec, f, joints, out.suffix.lower()[1:])
    except BaseException:
        out.unlink(missing_ok=True)  # ours: made above, never through a link
        raise
    print(f"plotted {len(rec.t)} ticks ({rec.duration_s:.1f} s) of {args.recording} to {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from plend.cli.recording import trajectory

    out = args.out or args.recording.with_suffix(".csv")
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"-o {out}: the replay format is CSV; give a .csv file")
    refuse_existing("-o", out)
    rec = _read(args)
    joints, positions, rate, note = trajectory(rec, "measured" if args.measured else "targets")
    if not math.isfinite(rate):
        raise ConfigError(
            f"{args.recording}: its control rate is not known (no usable rate in its info, and too few or "
            "too close ticks to tell); nothing to write"
        )
    if note:
        print(f"plend: note: {args.recording}: {note}", file=sys.stderr)
    fd = create_new("-o", out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"# rate_hz: {rate:g}\n{','.join(joints)}\n")
            for row in positions:
                f.write(",".join(f"{v:.6f}" for v in row) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"exported {len(positions)} samples of {len(joints)} joints at {rate:g} Hz to {out}")
    return 0


def record_path(args: argparse.Namespace) -> Path | None:
    """Where ``--record`` writes, checked before the run: an .mcap file in a folder that is."""
    path = getattr(args, "record", None)
    if path is None:
        return None
    path = path.expanduser().absolute()
    if path.suffix != ".mcap":
        raise ConfigError(f"--record {path}: a recording's name ends in .mcap")
    if not path.parent.is_dir():
        raise ConfigError(f"--record {path}: the folder {path.parent} does not exist")
    refuse_existing("--record", path)
    return path
