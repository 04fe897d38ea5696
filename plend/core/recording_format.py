"""What a recording's messages hold: the JSON Schemas (with units) and the encoders.

Format 2 (this one) names everything: joint arrays are objects keyed by joint name, the
IMU's vectors have x/y/z (or roll/pitch/yaw, w/x/y/z) fields, and every number's schema
says its unit in ``description``, so Foxglove and PlotJuggler list ``measured.r_knee_r_shin``
or ``imu.gyro.z`` with no plugin and no lookup table. Channels:

- ``/plend/info``: once, at the start: ``format``, ``joint_names`` (the canonical order),
  ``units``, ``hal``, ``rate_hz``, ``plend`` (the version that wrote it).
- ``/plend/tick``: one a control tick (fields below).
- ``/plend/truth``: one a tick when the robot is simulated: the torso's true pose and
  velocity, the feet's contacts and the joints' true angles (what the sensors do not see).

Format 1 (plend before this change) had arrays in the canonical order instead; the
reader (plend.cli.recording) reads both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from plend.model.robot import JOINT_NAMES

FORMAT = 2
XYZ, EULER, WXYZ = ("x", "y", "z"), ("roll", "pitch", "yaw"), ("w", "x", "y", "z")
UNITS = {
    "t": "s",
    "targets": "rad",
    "measured": "rad",
    "imu.quat": "unit quaternion",
    "imu.euler": "rad",
    "imu.gyro": "rad/s",
    "imu.accel": "m/s^2 (specific force)",
    "compute_ms": "ms",
    "lateness_ms": "ms",
    "truth.position": "m (world frame)",
    "truth.euler": "rad",
    "truth.velocity": "m/s (world frame)",
    "truth.joints": "rad",
}


def _number(unit: str, nullable: bool = False) -> dict[str, Any]:
    kind: Any = ["number", "null"] if nullable else "number"
    return {"type": kind, "description": unit}


def _named(names: Iterable[str], unit: str, nullable: bool = False, what: str = "") -> dict[str, Any]:
    names = list(names)
    return {
        "type": "object",
        "description": f"{what}{unit}".strip(),
        "properties": {n: _number(unit, nullable) for n in names},
        "required": names,
    }


def _object(description: str = "", **properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {**schema, "description": description} if description else schema


_JOINTS = "per joint, by name; null: no reading (an elbow has no feedback). "
_CONTACTS = _object(
    "the soles touching the floor (simulation only; the robot has no contact sensors)",
    right={"type": "boolean"},
    left={"type": "boolean"},
)
TICK_SCHEMA: dict[str, Any] = {
    "title": "plend.Tick",
    "description": "one control tick",
    **_object(
        t=_number("s, the loop's clock"),
        mode={"type": "string", "description": "the behaviour: relax, stand, sine, policy, replay, ..."},
        targets={
            **_named(JOINT_NAMES, "rad", True, "the targets written, per joint; null when relaxed. "),
            "type": ["object", "null"],
        },
        measured=_named(JOINT_NAMES, "rad", True, _JOINTS),
        imu=_object(
            "the IMU (BNO055, or the simulation's)",
            quat=_named(WXYZ, "", False, "orientation, unit quaternion"),
            euler=_named(EULER, "rad"),
            gyro=_named(XYZ, "rad/s", False, "angular rate in the IMU frame, "),
            accel=_named(XYZ, "m/s^2", False, "specific force in the IMU frame, "),
        ),
        contacts=_CONTACTS,
        compute_ms=_number("ms: read, decide, filter, write"),
        lateness_ms=_number("ms past the tick's deadline when it woke"),
        overruns={"type": "integer", "description": "ticks that missed their deadline so far"},
        faults={"type": "array", "items": {"type": "string"}, "description": "active fault codes"},
    ),
}
TRUTH_SCHEMA: dict[str, Any] = {
    "title": "plend.Truth",
    "description": "the simulation's ground truth for this tick",
    **_object(
        t=_number("s, the loop's clock"),
        position=_named(XYZ, "m", False, "the torso frame's origin in the world, "),
        euler=_named(EULER, "rad", False, "the torso's orientation, "),
        velocity=_named(XYZ, "m/s", False, "the torso's linear velocity in the world, "),
        contacts=_CONTACTS,
    ),
}
# Where the backend knows them (the emulated robot): the joints' true angles behind the
# calibration, the servos' feedback and its noise.
TRUTH_SCHEMA["properties"]["joints"] = _named(JOINT_NAMES, "rad", True, "the joints' true angles, ")
INFO_SCHEMA: dict[str, Any] = {
    "title": "plend.Info",
    **_object(
        "what wrote this recording",
        format={"type": "integer", "description": "recording format (2: named fields)"},
        joint_names={"type": "array", "items": {"type": "string"}, "description": "the canonical order"},
        units={"type": "object", "description": "field: unit"},
        hal={"type": "string", "description": "the backend: sim or hardware"},
        rate_hz=_number("Hz, the control rate"),
        plend={"type": "string", "description": "the plend version"},
    ),
}


def _value(v: float) -> float | None:
    # JSON has no NaN or infinity; null reads as a gap in plots.
    v = float(v)
    return v if math.isfinite(v) else None


def named(names: Iterable[str], values: Iterable[float]) -> dict[str, float | None]:
    return {n: _value(v) for n, v in zip(names, values, strict=True)}


def info_message(hal: str, rate_hz: float) -> bytes:
    from plend import __version__

    info = {
        "format": FORMAT, "joint_names": list(JOINT_NAMES), "units": UNITS, "hal": hal,
        "rate_hz": float(rate_hz), "plend": __version__,
    }  # fmt: skip
    return json.dumps(info).encode()


def tick_message(r: Any) -> bytes:
    """A plend.control.telemetry.TickRecord as a /plend/tick message."""
    imu = r.imu
    msg = {
        "t": r.t,
        "mode": r.mode,
        "targets": None if r.targets is None else named(JOINT_NAMES, r.targets.tolist()),
        "measured": named(JOINT_NAMES, r.measured.tolist()),
        "imu": {
            "quat": named(WXYZ, imu.quat),
            "euler": named(EULER, imu.euler),
            "gyro": named(XYZ, imu.gyro),
            "accel": named(XYZ, imu.accel),
        },
        "contacts": {"right": bool(r.contacts[0]), "left": bool(r.contacts[1])},
        "compute_ms": float(r.compute_ms),
        "lateness_ms": float(r.lateness_ms),
        "overruns": int(r.overruns),
        "faults": [str(f) for f in r.faults],
    }
    return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()


def truth_message(r: Any) -> bytes:
    """The ground truth of a TickRecord (``r.torso`` and ``r.true_joints``) as /plend/truth."""
    torso = r.torso
    msg = {
        "t": r.t,
        "position": named(XYZ, torso.position),
        "euler": named(EULER, torso.euler),
        "velocity": named(XYZ, torso.velocity),
        "contacts": {"right": bool(r.contacts[0]), "left": bool(r.contacts[1])},
    }
    if r.true_joints is not None:
        msg["joints"] = named(JOINT_NAMES, r.true_joints.tolist())
    return json.dumps(msg, allow_nan=False, separators=(",", ":")).encode()
