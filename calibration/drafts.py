"""The wizard's draft: the joints an unfinished calibration session has measured so far.

The wizard saves the draft (``calibration.draft.json`` beside the calibration file) after
each joint, so a session that was interrupted goes on where it stopped; the calibration
file itself changes only when the session ends and the operator accepts it. A draft that
cannot be used is set aside (``.bad``), which only costs measuring its joints again.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from calibration.store import (
    CALIBRATION_VERSION,
    READABLE_VERSIONS,
    CalibrationError,
    JointRecord,
    checked_imu,
    fields_of,
    measured_joint,
    read_text,
    wired_joint_names,
)
from plend.core import atomic
from plend.core.files import parse_json
from plend.model.servo_map import _timestamp


def draft_path(path: Path) -> Path:
    """Where an unfinished wizard session keeps its joints: ``calibration.draft.json``."""
    return path.with_suffix(".draft.json")


@dataclass(frozen=True)
class Draft:
    """The joints and IMU offsets an unfinished wizard session has measured so far."""

    robot_id: str
    started: str
    joints: dict[str, JointRecord]
    imu_offsets: tuple[int, ...] | None = None
    imu_calib_status: int | None = None


def draft_to_json(draft: Draft) -> str:
    return json.dumps({"version": CALIBRATION_VERSION, **asdict(draft)}, sort_keys=True, indent=2) + "\n"


def draft_from_json(data: object) -> Draft:
    """A draft from parsed JSON; raises :class:`CalibrationError` naming the bad value."""
    if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
        raise CalibrationError("not a calibration draft of this version")
    data = {k: v for k, v in data.items() if k != "version"}
    top = fields_of(Draft, data, "the draft")
    if not isinstance(top["joints"], dict):
        raise CalibrationError("joints must be a JSON object")
    joints = {}
    for name, values in top["joints"].items():
        if name not in wired_joint_names():
            raise CalibrationError(f"unknown joint {name!r}")
        try:
            joints[name] = measured_joint(fields_of(JointRecord, values, f"joint {name}"))
        except CalibrationError as exc:
            raise CalibrationError(f"joint {name}: {exc}") from None
    _timestamp("started", top["started"])
    if not isinstance(top["robot_id"], str):
        raise CalibrationError(f"robot_id must be a string, got {top['robot_id']!r}")
    imu = checked_imu(top["imu_offsets"], top["imu_calib_status"])
    return Draft(top["robot_id"], top["started"], joints, imu, top["imu_calib_status"])


def load_draft(path: Path) -> Draft | None:
    """The draft of ``path``'s calibration, or None when there is none or it is unusable
    (an unusable draft is set aside as ``.bad``: it only costs re-measuring)."""
    draft = draft_path(path)
    try:
        return draft_from_json(parse_json(read_text(draft), f"draft {draft}"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):  # CalibrationError included: a ValueError
        with contextlib.suppress(OSError):
            os.replace(draft, draft.with_suffix(".bad"))
        return None


def save_draft(path: Path, draft: Draft) -> None:
    """Write the draft next to ``path`` atomically."""
    atomic.replace(draft_path(path), draft_to_json(draft).encode("utf-8"))


def remove_draft(path: Path) -> None:
    draft_path(path).unlink(missing_ok=True)


def remove_stale_temps(path: Path) -> int:
    """Delete the temporary files a killed writer left next to the calibration file
    ``path`` or its draft; returns how many."""
    stale = atomic.stale_temps(path) + atomic.stale_temps(draft_path(path))
    for temp in stale:
        temp.unlink(missing_ok=True)
    return len(stale)
