"""The calibration file as tables for a person: ``plenctl calibration show`` and the
wizard's review (each joint's offset, direction, pulses and fit, what changed since the
previous calibration, and the servos as identified)."""

from __future__ import annotations

import math

from calibration.store import CalibrationRecord, JointRecord, ServoRecord
from plend.model.robot import JOINTS


def _changes(now: JointRecord, before: JointRecord | None) -> str:
    if before is None:
        return "new"
    changes = []
    if abs(now.offset_deg - before.offset_deg) >= 0.1:
        changes.append(f"offset {now.offset_deg - before.offset_deg:+.1f}")
    if now.direction != before.direction:
        changes.append("direction flipped")
    if abs(now.fit_error_deg - before.fit_error_deg) >= 0.05:
        changes.append(f"fit {before.fit_error_deg:.2f}->{now.fit_error_deg:.2f}")
    return ", ".join(changes) or "-"


def describe(record: CalibrationRecord, previous: CalibrationRecord | None = None) -> str:
    """The review table: one row per joint, plus what changed since ``previous``."""
    order = {name: i for i, name in enumerate(j.name for j in JOINTS)}
    names = sorted(record.joints, key=lambda n: (order.get(n, len(order)), n))
    status = record.imu_calib_status
    imu = "not stored" if record.imu_offsets is None else "stored"
    if status is not None:
        sys_, gyro, accel, mag = (status >> shift & 3 for shift in (6, 4, 2, 0))
        imu += f" (sys {sys_}/3 gyro {gyro}/3 accel {accel}/3 mag {mag}/3)"
    title = f"calibration v{record.version} of {record.robot_id}, created {record.created}"
    lines = [f"{title}; IMU offsets {imu}"]
    header = f"{'joint':<20} {'offset deg':>10} {'dir':>3} {'pulse us':>9} {'fit deg':>7} {'hyst deg':>8}"
    header += f" {'swept deg':>10}" + ("  changed since last" if previous is not None else "")
    lines.append(header)
    for name in names:
        j = record.joints[name]
        assert j.range_rad is not None  # a file's joints are measured
        lo, hi = (math.degrees(v) for v in j.range_rad)
        pulses, swept = f"{j.pulse_min_us:.0f}-{j.pulse_max_us:.0f}", f"{lo:+.0f}..{hi:+.0f}"
        row = f"{name:<20} {j.offset_deg:>+10.1f} {j.direction:>+3d} {pulses:>9}"
        row += f" {j.fit_error_deg:>7.2f} {j.hysteresis_deg:>8.2f} {swept:>10}"
        if previous is not None:
            row += f"  {_changes(j, previous.joints.get(name))}"
        lines.append(row)
    if previous is not None:
        dropped = sorted(previous.joints.keys() - record.joints.keys())
        lines += [f"{name:<20} (only in the previous calibration)" for name in dropped]
    lines += describe_servos(record.servos, order)
    return "\n".join(lines)


def describe_servos(servos: dict[str, ServoRecord], order: dict[str, int] | None = None) -> list[str]:
    """The identified servos as a table (no lines when there are none): each value, then
    in brackets its difference between the two runs; speed ">=" where it was not reached."""
    if not servos:
        return []
    order = order or {j.name: i for i, j in enumerate(JOINTS)}
    first = next(iter(servos.values()))
    lines = [
        "",
        f"servos as identified (for the simulation at {first.rate_hz:g} Hz, {first.substeps} substeps; "
        "[difference between the two runs]):",
        f"{'joint':<20} {'delay ms':>13} {'lag ms':>13} {'dead band deg':>14} {'backlash deg':>14}"
        f" {'speed rad/s':>15} {'fit deg':>7}  feedback line",
    ]
    for name in sorted(servos, key=lambda n: (order.get(n, len(order)), n)):
        s, d = servos[name], servos[name].spread
        speed = f"{'' if s.speed_reached else '>='}{s.speed_rad_s:.1f} [{d['speed_rad_s']:.1f}]"
        lines.append(
            f"{name:<20} {s.delay_ms:>5.1f} [{d['delay_ms']:>4.1f}] {s.time_constant_ms:>5.1f} "
            f"[{d['time_constant_ms']:>4.1f}] {s.dead_band_deg:>6.2f} [{d['dead_band_deg']:.2f}] "
            f"{s.backlash_deg:>6.2f} [{d['backlash_deg']:.2f}] {speed:>15} {s.fit_error_deg:>7.2f}  "
            + describe_refinement(s.feedback_scale, s.feedback_shift_deg)
        )
    return lines


def describe_refinement(scale: float, shift_deg: float) -> str:
    """How an identification changed a feedback line, in a few words ("as swept" if not)."""
    if scale == 1.0 and shift_deg == 0.0:
        return "as swept"
    return f"slope {100.0 * (scale - 1.0):+.1f} %, {shift_deg:+.2f} deg at 0"
