"""How the robot is moving, in the few figures a driver watches.

Forward speed comes from the simulation's ground truth when there is one, else from the
camera pose source when its estimate is fresh, else it is unknown (None); yaw rate and
tilt come from the IMU. Computed from the loop's last snapshot on a socket thread.
"""

from __future__ import annotations

import math
from typing import Any

FRESH_POSE_S = 0.5  # an older camera estimate says nothing about the speed now


def motion(snapshot: Any, pose: Any = None) -> dict[str, Any]:
    """``speed_m_s`` (forward, along the torso's heading), ``speed_source``,
    ``yaw_rate_deg_s`` (positive left) and ``tilt_deg`` of the last tick."""
    if snapshot is None:
        return {"speed_m_s": None, "speed_source": None, "yaw_rate_deg_s": None, "tilt_deg": None}
    roll, pitch, yaw = snapshot.imu.euler
    speed, source = _speed(snapshot, pose, yaw)
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch)))))
    return {
        "speed_m_s": None if speed is None else round(speed, 4),
        "speed_source": source,
        "yaw_rate_deg_s": round(math.degrees(snapshot.imu.gyro[2]), 2),
        "tilt_deg": round(tilt, 2),
    }


def _speed(snapshot: Any, pose: Any, imu_yaw: float) -> tuple[float | None, str | None]:
    torso = snapshot.torso
    if torso is not None:
        return _along(torso.velocity, torso.euler[2]), "truth"
    latest = None if pose is None else pose.latest
    age = None if pose is None else pose.age()
    if latest is None or age is None or age > FRESH_POSE_S:
        return None, None
    heading = latest.euler[2] if latest.has_orientation else imu_yaw
    return _along(latest.velocity, heading), "camera"


def _along(velocity: tuple[float, ...], heading: float) -> float:
    return float(velocity[0] * math.cos(heading) + velocity[1] * math.sin(heading))
