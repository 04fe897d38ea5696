"""``plenctl status`` as a person reads it: the daemon's status (its JSON) as a table."""

from __future__ import annotations

import math
from typing import Any


def _fmt(value: float | None, width: int = 8) -> str:
    return f"{value:+{width}.3f}" if value is not None and math.isfinite(value) else f"{'-':>{width}}"


def format_status(s: dict[str, Any]) -> str:
    """The status as a readable table."""
    rate = s["rate_hz"]
    c, lat = s["compute_ms"], s["lateness_ms"]
    lines = [
        f"mode      {s['mode']}{'  (E-STOP LATCHED)' if s['estop'] else ''}   hal {s['hal']}",
        f"rate      {rate['achieved']:.1f} / {rate['configured']:.0f} Hz   ticks {s['ticks']}   "
        f"overruns {s['overruns']}",
        f"compute   p50 {c['p50']:.3f}  p99 {c['p99']:.3f}  max {c['max']:.3f} ms",
        f"lateness  p50 {lat['p50']:.3f}  p99 {lat['p99']:.3f}  max {lat['max']:.3f} ms",
    ]
    lines[0] += _walking(s)
    policy = s.get("policy")
    if "policy" in s:
        state = "running" if policy and policy["running"] else "loaded"
        where = f"{policy['name']} ({policy['file']}) on {policy['engine']}, {state}" if policy else ""
        lines.insert(1, f"policy    {where or 'none loaded'}")
    if "imu" in s:
        roll, pitch, yaw = s["imu"]["euler_deg"]
        contacts = s["contacts"]
        feet = "n/a" if contacts is None else (
            f"R {'down' if contacts['right'] else 'up'}  L {'down' if contacts['left'] else 'up'}"
        )  # fmt: skip
        lines.append(f"imu       roll {roll:+.1f}  pitch {pitch:+.1f}  yaw {yaw:+.1f} deg   feet {feet}")
    motion = s.get("motion") or {}
    if motion.get("speed_m_s") is not None:
        lines.append(f"motion    forward {motion['speed_m_s']:+.3f} m/s ({motion['speed_source']})")
    if "gait" in s:
        lines.extend(gait_lines(s["gait"]))
    if "hardware" in s:
        lines.append("hardware  " + ", ".join(f"{k} {v}" for k, v in s["hardware"].items()))
    for fault in s.get("sensor_faults", []):
        lines.append(f"sensor    {fault}")
    safety = ", ".join(f"{k} {v}" for k, v in s["safety"].items())
    lines.append(f"safety    {safety}")
    rec = s["recording"]
    lines.append(f"recording {'to ' + str(rec['path']) if rec['recording'] else 'off'}")
    faults = s["faults"]
    lines.append(
        "faults    " + ("none" if not faults else "; ".join(f"{f['code']}: {f['message']}" for f in faults))
    )
    if "joints" in s:
        lines.append("")
        lines.append(f"{'joint':<22}{'target':>9}{'measured':>9}{'lower':>8}{'upper':>8}")
        for j in s["joints"]:
            lines.append(
                f"{j['name']:<22}{_fmt(j['target'], 9)}{_fmt(j['measured'], 9)}"
                f"{j['lower']:+8.2f}{j['upper']:+8.2f}"
            )
    return "\n".join(lines)


def _walking(s: dict[str, Any]) -> str:
    """Speed and turn (and the command to come), for the mode line; empty when not walking."""
    walk = s.get("walk") or {}
    if walk.get("speed") is None:
        return ""
    text = f"   speed {walk['speed']:g}"
    if walk.get("turn"):
        text += f"   turn {walk['turn']:+g}"
    upcoming = walk.get("next")
    if upcoming:
        text += f" (speed {upcoming['speed']:g}, turn {upcoming['turn']:+g} from the next step)"
    return text


def gait_lines(g: dict[str, Any]) -> list[str]:
    """The gait's command, phase and balance (and recovery, once it has stood to recover)."""
    command = f"speed {g['speed']:+.2f}  turn {g['turn']:+.2f}  side {g['side']:+.2f}"
    lines = [f"gait      {command}  phase {g['phase']:.2f}" + ("  (stopping)" if g["stopping"] else "")]
    b = g["balance"]
    if b is None:
        lines.append("balance   off")
    else:
        lines.append(
            f"balance   ankle roll {b['ankle_roll_deg']:+.1f} pitch {b['ankle_pitch_deg']:+.1f} deg  "
            f"level {b['level_mm']:+.1f} mm  lean {b['lean_mm']:+.1f} mm  duty +{b['extra_duty']:.2f}  "
            f"rocking {b['rocking_deg']:.1f} deg" + ("" if b["ready"] else "  (settling)")
        )
        if b.get("recovering") or b.get("recoveries"):
            back = b.get("recovery_cause") == "pitched back"
            standing = "upright again (pitched back)" if back else "the tilt passes"
            state = f"standing until {standing}" if b.get("recovering") else "walking"
            lines.append(f"recovery  {state}  ({b.get('recoveries', 0)} so far)")
    return lines
