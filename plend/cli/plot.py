"""``plend plot REC.mcap``: one page that shows what a recording holds, on any machine.

Top: per joint (by name), the target against the measured angle. Below, on one time
axis: roll, pitch and yaw (and the simulation's true ones, dashed); the gyro; the feet's
contacts (simulation); tick compute time and lateness; and a timeline of modes with
faults marked where they began. Drawn with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

import numpy as np

from plend.cli.recording import Recording, text
from plend.core.errors import ConfigError, require_package
from plend.model.robot import JOINTS

GROUPS = {
    "legs": [j.name for j in JOINTS if j.index < 12],
    "arms": [j.name for j in JOINTS if j.index >= 12],
    "all": [j.name for j in JOINTS],
}
MODE_COLOURS = {
    "relax": "#d9d9d9", "stand": "#a6cee3", "sine": "#b2df8a", "policy": "#fdbf6f", "replay": "#cab2d6",
    "estop": "#fb9a99", "crouch": "#fb9a99", "calibrate": "#ffff99",
}  # fmt: skip
MAX_FAULT_MARKS = 100  # a fault that comes and goes every tick would bury the timeline


def joints_for(choice: str, names: tuple[str, ...]) -> list[str]:
    """``legs``, ``arms``, ``all`` or comma-separated joint names, checked against the recording."""
    if choice in GROUPS:
        wanted = GROUPS[choice]
    else:
        wanted = [n.strip() for n in choice.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            raise ConfigError(
                f"--joints {choice!r}: no joint {', '.join(unknown) or '(none named)'} in the recording; "
                f"use legs, arms, all or names from: {', '.join(names)}"
            )
    return [n for n in wanted if n in names]


def _label(name: str) -> str:
    role = {j.name: j.role for j in JOINTS}.get(name)
    return f"{role} ({name})" if role else name


def plot(rec: Recording, out: Path | IO[bytes], joints: list[str], fmt: str | None = None) -> None:
    """Draw ``rec`` to ``out`` as ``fmt`` (png, svg or pdf; by default, by its suffix)."""
    require_package("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    t = rec.t - rec.t[0]
    columns = 6
    joint_rows = math.ceil(len(joints) / columns)
    panels = ["attitude", "gyro", "contacts", "timing", "modes"]
    heights = [1.0] * joint_rows + [1.25, 1.0, 0.55, 0.9, 0.6]
    # A fixed layout: matplotlib's automatic ones measure every label and double the time.
    height = 1.9 * sum(heights) + 1.2
    fig = plt.figure(figsize=(18, height), dpi=90)
    grid = fig.add_gridspec(
        len(heights), columns, height_ratios=heights, left=0.05, right=0.99, bottom=0.9 / height,
        top=1.0 - 0.75 / height, hspace=0.55, wspace=0.22,
    )  # fmt: skip
    first = None
    for k, name in enumerate(joints):
        ax = fig.add_subplot(grid[k // columns, k % columns], sharex=first)
        first = first or ax
        _joint(ax, t, rec, name)
        ax.tick_params(labelbottom=False)
    axes = {}
    for row, panel in enumerate(panels, start=joint_rows):
        axes[panel] = fig.add_subplot(grid[row, :], sharex=first)
    _attitude(axes["attitude"], t, rec)
    _gyro(axes["gyro"], t, rec)
    _contacts(axes["contacts"], t, rec)
    _timing(axes["timing"], t, rec)
    _modes(axes["modes"], t, rec)
    for panel in panels[:-1]:
        axes[panel].tick_params(labelbottom=False)
    axes["modes"].set_xlabel("time (s)")
    # From the earliest tick to the latest: a file's ticks may be out of order, and text far
    # outside the axes cannot be drawn.
    axes["modes"].set_xlim(t.min(), max(t.max(), t.min() + 1e-3))
    fig.suptitle(_title(rec), fontsize=11)
    fig.savefig(out, format=fmt)
    plt.close(fig)


def _title(rec: Recording) -> str:
    info = rec.info
    source = f"{text(info.get('hal'))} at {rec.rate_hz():.0f} Hz, plend {text(info.get('plend'))}"
    return f"{rec.path.name}: {len(rec.t)} ticks, {rec.duration_s:.1f} s ({source}, format {rec.format})"


def _joint(ax: Any, t: np.ndarray, rec: Recording, name: str) -> None:
    j = rec.joint_names.index(name)
    ax.plot(t, np.degrees(rec.targets[:, j]), color="#1f78b4", lw=0.9, ls="--", label="target")
    ax.plot(t, np.degrees(rec.measured[:, j]), color="#e31a1c", lw=0.9, label="measured")
    ax.text(0.0, 1.03, _label(name), transform=ax.transAxes, va="bottom", fontsize=8)  # a title costs more
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if j in (0, 12) or name == rec.joint_names[0]:
        ax.set_ylabel("deg", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")


def _attitude(ax: Any, t: np.ndarray, rec: Recording) -> None:
    colours = ("#e31a1c", "#1f78b4", "#33a02c")
    for k, (axis, colour) in enumerate(zip(("roll", "pitch", "yaw"), colours, strict=True)):
        ax.plot(t, np.degrees(rec.euler[:, k]), color=colour, lw=1.0, label=f"IMU {axis}")
    if rec.truth is not None:
        tt = rec.truth.t - rec.t[0]
        for k, (axis, colour) in enumerate(zip(("roll", "pitch", "yaw"), colours, strict=True)):
            ax.plot(tt, np.degrees(rec.truth.euler[:, k]), color=colour, lw=0.8, ls=":", label=f"true {axis}")
    ax.set_ylabel("attitude (deg)")
    ax.legend(fontsize=7, ncol=6, loc="upper left")
    ax.grid(alpha=0.3)


def _gyro(ax: Any, t: np.ndarray, rec: Recording) -> None:
    for k, (axis, colour) in enumerate(zip("xyz", ("#e31a1c", "#1f78b4", "#33a02c"), strict=True)):
        ax.plot(t, np.degrees(rec.gyro[:, k]), color=colour, lw=0.8, label=f"gyro {axis}")
    ax.set_ylabel("rate (deg/s)")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    ax.grid(alpha=0.3)


def _contacts(ax: Any, t: np.ndarray, rec: Recording) -> None:
    if np.isnan(rec.contacts).all() or rec.info.get("hal") == "hardware":
        ax.text(0.5, 0.5, "no foot contacts (the robot has no contact sensors)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="grey")  # fmt: skip
    else:
        for k, (side, colour) in enumerate((("right", "#e31a1c"), ("left", "#1f78b4"))):
            down = np.nan_to_num(rec.contacts[:, k]) > 0.5
            ax.fill_between(t, k + 0.1, k + 0.9, where=down, step="mid", color=colour, alpha=0.7, label=side)
        ax.set_yticks([0.5, 1.5], ["right", "left"], fontsize=8)
        ax.set_ylim(0, 2)
    ax.set_ylabel("sole down")


def _timing(ax: Any, t: np.ndarray, rec: Recording) -> None:
    ax.plot(t, rec.compute_ms, color="#6a3d9a", lw=0.8, label="compute")
    ax.plot(t, rec.lateness_ms, color="#ff7f00", lw=0.8, label="lateness")
    overruns = np.flatnonzero(np.diff(rec.overruns) > 0) + 1
    if overruns.size:
        ax.plot(t[overruns], rec.compute_ms[overruns], "kx", ms=5, label=f"overrun ({overruns.size})")
    ax.set_ylabel("tick (ms)")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    ax.grid(alpha=0.3)


def _modes(ax: Any, t: np.ndarray, rec: Recording) -> None:
    start = 0
    for k in range(1, len(rec.mode) + 1):
        if k == len(rec.mode) or rec.mode[k] != rec.mode[start]:
            mode = rec.mode[start]
            end = t[k] if k < len(t) else t[-1]
            ax.axvspan(t[start], end, color=MODE_COLOURS.get(mode, "#eeeeee"), lw=0)
            if end - t[start] > 0.04 * max(t.max() - t.min(), 1e-9):
                ax.text((t[start] + end) / 2, 0.72, mode, ha="center", va="center", fontsize=8)
            start = k
    seen: set[str] = set()
    marks = 0
    for k, faults in enumerate(rec.faults):
        for code in faults:
            if code not in seen and (k == 0 or code not in rec.faults[k - 1]) and marks < MAX_FAULT_MARKS:
                marks += 1
                ax.axvline(t[k], color="#e31a1c", lw=1.0)
                ax.text(t[k], 0.25, f" {code}", color="#e31a1c", fontsize=8, va="center")
        seen = set(faults)
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.set_ylabel("mode, faults")
