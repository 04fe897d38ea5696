"""The robot, written once: joint table, kinematic geometry and the packaged URDF.

Everything else refers to joints by name and takes limits, axes and default wiring from
here. Lengths are metres and angles radians. The torso frame has x forward, y left and
z up; its origin stands about 0.158 m above the ground when the legs are straight.

Joint points are the joint-axis points of the PLEN2 CAD model at zero pose. The left
leg mirrors the right one exactly: the CAD figures of the two legs differ by at most
1 mm, and a symmetric model keeps the gait symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy is imported where it is used: plenctl starts without it
    import numpy as np

Side = Literal["right", "left"]
Vec3 = tuple[float, float, float]

SIDES: tuple[Side, Side] = ("right", "left")


@dataclass(frozen=True)
class AdcInput:
    """One feedback input: an ADS1115 at ``address`` and its channel."""

    address: int
    channel: int


@dataclass(frozen=True)
class Joint:
    """One revolute joint of the model, with its default wiring.

    ``axis`` and ``point`` describe the joint axis in the torso frame at zero pose.
    ``pwm_channel`` and ``adc`` are the default wiring; ``None`` means not wired.
    """

    index: int
    name: str
    role: str
    side: Side
    limb: Literal["leg", "arm"]
    parent: str
    child: str
    axis: Vec3
    point: Vec3
    lower: float
    upper: float
    pwm_channel: int | None
    adc: AdcInput | None

    @property
    def wired(self) -> bool:
        """True when a servo drives this joint on the real robot."""
        return self.pwm_channel is not None

    def within(self, angle: float, tol: float = 0.0) -> bool:
        """True when ``angle`` lies inside the joint limits (widened by ``tol``)."""
        return self.lower - tol <= angle <= self.upper + tol


def _mm(x: float, y: float, z: float) -> Vec3:
    return (x / 1000.0, y / 1000.0, z / 1000.0)


def _mirror(v: Vec3) -> Vec3:
    return (v[0], -v[1], v[2])


# Right-leg joint points (mm), free coordinates along each axis filled from the chain.
_R_LEG_POINTS = (
    _mm(-6.6, -22.8, -38.9),  # hip yaw
    _mm(-4.6, -17.3, -51.8),  # hip roll
    _mm(2.9, -17.3, -64.5),  # hip pitch
    _mm(2.5, -17.3, -92.6),  # knee
    _mm(2.5, -17.3, -126.4),  # ankle pitch
    _mm(2.5, -16.1, -139.1),  # ankle roll
)
_R_ARM_POINTS = (
    _mm(-6.6, -36.0, 30.8),  # shoulder pitch
    _mm(-6.6, -50.7, 25.5),  # shoulder roll
    _mm(-6.6, -50.7, -13.6),  # elbow
)

_ROWS = (
    # name, role, side, limb, parent, child, axis, point, lower, upper, pwm, adc
    ("rb_servo_r_hip", "R hip yaw", "right", "leg", "torso", "r_hip", (0, 0, 1), _R_LEG_POINTS[0], -1.57, 1.57, 0, (0x48, 0)),
    ("r_hip_r_thigh", "R hip roll", "right", "leg", "r_hip", "r_thigh", (1, 0, 0), _R_LEG_POINTS[1], -0.15, 1.50, 1, (0x48, 1)),
    ("r_thigh_r_knee", "R hip pitch", "right", "leg", "r_thigh", "r_knee", (0, -1, 0), _R_LEG_POINTS[2], -0.95, 1.20, 2, (0x48, 2)),
    ("r_knee_r_shin", "R knee", "right", "leg", "r_knee", "r_shin", (0, -1, 0), _R_LEG_POINTS[3], -1.57, 0.30, 3, (0x48, 3)),
    ("r_shin_r_ankle", "R ankle pitch", "right", "leg", "r_shin", "r_ankle", (0, 1, 0), _R_LEG_POINTS[4], -0.95, 1.20, 4, (0x49, 0)),
    ("r_ankle_r_foot", "R ankle roll", "right", "leg", "r_ankle", "r_foot", (-1, 0, 0), _R_LEG_POINTS[5], -0.80, 0.40, 5, (0x49, 1)),
    ("lb_servo_l_hip", "L hip yaw", "left", "leg", "torso", "l_hip", (0, 0, 1), _mirror(_R_LEG_POINTS[0]), -1.57, 1.57, 6, (0x49, 2)),
    ("l_hip_l_thigh", "L hip roll", "left", "leg", "l_hip", "l_thigh", (1, 0, 0), _mirror(_R_LEG_POINTS[1]), -1.50, 0.15, 7, (0x49, 3)),
    ("l_thigh_l_knee", "L hip pitch", "left", "leg", "l_thigh", "l_knee", (0, 1, 0), _mirror(_R_LEG_POINTS[2]), -1.20, 0.95, 8, (0x4A, 0)),
    ("l_knee_l_shin", "L knee", "left", "leg", "l_knee", "l_shin", (0, 1, 0), _mirror(_R_LEG_POINTS[3]), -0.30, 1.57, 9, (0x4A, 1)),
    ("l_shin_l_ankle", "L ankle pitch", "left", "leg", "l_shin", "l_ankle", (0, -1, 0), _mirror(_R_LEG_POINTS[4]), -1.20, 1.20, 10, (0x4A, 2)),
    ("l_ankle_l_foot", "L ankle roll", "left", "leg", "l_ankle", "l_foot", (-1, 0, 0), _mirror(_R_LEG_POINTS[5]), -0.40, 0.80, 11, (0x4A, 3)),
    ("torso_r_shoulder", "R shoulder pitch", "right", "arm", "torso", "r_shoulder", (0, -1, 0), _R_ARM_POINTS[0], -1.57, 1.57, 12, (0x4B, 0)),
    ("r_shoulder_rs_servo", "R shoulder roll", "right", "arm", "r_shoulder", "rs_servo", (-1, 0, 0), _R_ARM_POINTS[1], -0.15, 1.57, 13, (0x4B, 1)),
    ("re_servo_r_elbow", "R elbow", "right", "arm", "rs_servo", "r_elbow", (-1, 0, 0), _R_ARM_POINTS[2], -0.20, 0.35, None, None),
    ("torso_l_shoulder", "L shoulder pitch", "left", "arm", "torso", "l_shoulder", (0, 1, 0), _mirror(_R_ARM_POINTS[0]), -1.57, 1.57, 14, (0x4B, 2)),
    ("l_shoulder_ls_servo", "L shoulder roll", "left", "arm", "l_shoulder", "ls_servo", (1, 0, 0), _mirror(_R_ARM_POINTS[1]), -1.57, 0.15, 15, (0x4B, 3)),
    ("le_servo_l_elbow", "L elbow", "left", "arm", "ls_servo", "l_elbow", (1, 0, 0), _mirror(_R_ARM_POINTS[2]), -0.35, 0.20, None, None),
)  # fmt: skip


def _make_joint(index: int, row: tuple) -> Joint:  # type: ignore[type-arg]
    name, role, side, limb, parent, child, axis, point, lower, upper, pwm, adc = row
    return Joint(
        index=index, name=name, role=role, side=side, limb=limb, parent=parent,
        child=child, axis=tuple(float(a) for a in axis), point=point,  # type: ignore[arg-type]
        lower=lower, upper=upper, pwm_channel=pwm,
        adc=AdcInput(*adc) if adc is not None else None,
    )  # fmt: skip


JOINTS: tuple[Joint, ...] = tuple(_make_joint(i, row) for i, row in enumerate(_ROWS))
"""The 18 joints in the model's canonical order (also the policy action order)."""

JOINT_NAMES: tuple[str, ...] = tuple(j.name for j in JOINTS)
NUM_JOINTS = len(JOINTS)
_BY_NAME = {j.name: j for j in JOINTS}

LEG_JOINT_NAMES: dict[Side, tuple[str, ...]] = {
    "right": JOINT_NAMES[0:6],
    "left": JOINT_NAMES[6:12],
}
"""Per leg: hip yaw, hip roll, hip pitch, knee, ankle pitch, ankle roll."""

FOOT_LINKS: dict[Side, str] = {"right": "r_foot", "left": "l_foot"}

# The foot: a sole box below the ankle roll axis, its centre set outward so that the
# two soles do not overlap.
SOLE_SIZE: Vec3 = (0.063, 0.041, 0.004)
SOLE_DEPTH = 0.019  # ankle roll axis to sole bottom
SOLE_OUTWARD = 0.0055
SOLE_FORWARD = 0.0


# The standing pose (rad): the sine gait at rest, its soles 8 mm higher than on straight
# legs and the shoulders 0.1 rad out (gaits.sine.stand_pose with the default parameters,
# solved by the leg IK). It is written here as data so that every layer can stand the
# robot without the gaits; tests/test_robot.py checks that the IK still gives exactly this.
STAND_POSE: dict[str, float] = {
    "r_thigh_r_knee": 0.5755259864382865,
    "r_knee_r_shin": -1.0472204292740939,
    "r_shin_r_ankle": -0.4716944428358074,
    "l_thigh_l_knee": -0.5755259864382865,
    "l_knee_l_shin": 1.0472204292740939,
    "l_shin_l_ankle": 0.4716944428358074,
    "r_shoulder_rs_servo": 0.1,
    "l_shoulder_ls_servo": -0.1,
}
"""Joints not named stand at 0."""


def joint(name: str) -> Joint:
    """Return the joint called ``name``; an unknown name lists the valid ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown joint {name!r}; valid joints: {', '.join(JOINT_NAMES)}") from None


def joint_index(name: str) -> int:
    """Canonical index of the joint called ``name``."""
    return joint(name).index


def sole_offset(side: Side) -> Vec3:
    """Sole-centre position (bottom face) relative to the ankle roll point, foot frame."""
    outward = -SOLE_OUTWARD if side == "right" else SOLE_OUTWARD
    return (SOLE_FORWARD, outward, -SOLE_DEPTH)


def sole_zero_position(side: Side) -> Vec3:
    """Sole centre in the torso frame at zero pose."""
    ankle = joint(LEG_JOINT_NAMES[side][5]).point
    off = sole_offset(side)
    return (ankle[0] + off[0], ankle[1] + off[1], ankle[2] + off[2])


def urdf_path() -> Path:
    """Path of the packaged URDF, valid whatever the working directory."""
    path = Path(str(resources.files("plend") / "data" / "plen2.urdf"))
    if not path.is_file():
        raise FileNotFoundError(f"packaged URDF missing at {path}; reinstall plend")
    return path


@cache
def _stand() -> np.ndarray:
    import numpy as np

    pose = np.array([STAND_POSE.get(j.name, 0.0) for j in JOINTS])
    pose.flags.writeable = False
    return pose


def stand_pose() -> np.ndarray:
    """The standing pose, 18 angles (rad) in canonical order; a fresh array each call."""
    return _stand().copy()


@cache
def _limits() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    lower, upper = np.array([j.lower for j in JOINTS]), np.array([j.upper for j in JOINTS])
    lower.flags.writeable = upper.flags.writeable = False
    return lower, upper


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper joint limits (rad) in canonical order, as the joint table has them
    (``[safety] limits`` may narrow them: see SafetyConfig.joint_limits)."""
    lower, upper = _limits()
    return lower.copy(), upper.copy()
