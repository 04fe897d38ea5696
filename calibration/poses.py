"""What each joint's reference pose looks like, and which way a positive move goes.

The reference pose is the model's zero pose: legs straight down, feet flat, parallel and
pointing forward, arms hanging straight down along the body. The direction of a
positive move is worked out from the joint's axis in the joint table, so the words
always agree with the model the gaits and the simulation use.
"""

from __future__ import annotations

from plend.model.robot import Joint

_REFERENCE = {
    "hip yaw": "the toes point straight forward, the foot parallel to the other one",
    "hip roll": "seen from the front, the thigh hangs straight down (vertical)",
    "hip pitch": "seen from the side, the thigh hangs straight down (vertical)",
    "knee": "the leg is straight: the shin continues the thigh, seen from the side",
    "ankle pitch": "seen from the side, the sole is at right angles to the shin",
    "ankle roll": "seen from the front, the sole is at right angles to the shin (level side to side)",
    "shoulder pitch": "seen from the side, the arm hangs straight down",
    "shoulder roll": "seen from the front, the arm hangs straight down against the body",
}

_PART = {
    "hip yaw": "the toes",
    "hip roll": "the foot",
    "hip pitch": "the foot",
    "knee": "the foot",
    "ankle pitch": "the toes",
    "ankle roll": "the sole",
    "shoulder pitch": "the hand",
    "shoulder roll": "the hand",
}


def _kind(j: Joint) -> str:
    return j.role.split(" ", 1)[1]


def reference_pose(j: Joint) -> str:
    """The reference pose of joint ``j`` in plain words."""
    return _REFERENCE.get(_kind(j), "the link is in its zero pose")


def _toward(vector: tuple[float, float, float]) -> str:
    x, y, z = vector
    axis = max(range(3), key=lambda i: abs(vector[i]))
    return (
        ("toward the robot's front", "toward the robot's back"),
        ("toward the robot's left", "toward the robot's right"),
        ("up", "down"),
    )[axis][0 if (x, y, z)[axis] > 0 else 1]


def positive_move(j: Joint) -> str:
    """Which way the link goes on a small positive move of joint ``j``, in plain words."""
    ax, ay, az = j.axis
    kind = _kind(j)
    part = _PART.get(kind, "the link")
    if abs(az) > 0.5:  # a vertical axis: the part turns rather than swings
        return f"{part} turn toward the robot's {'left' if az > 0 else 'right'} (seen from above)"
    if kind == "ankle pitch":  # the toes lie forward of the ankle: axis x (1, 0, 0)
        return f"{part} go {'up' if -ay > 0 else 'down'}"
    # Every other link hangs straight down at zero: axis x (0, 0, -1).
    swing = (-ay, ax, 0.0)
    if kind == "ankle roll":
        edge = "right" if swing[1] < 0 else "left"
        return f"the foot tilts: the sole's {edge} edge lifts"
    return f"{part} swings {_toward(swing)}"
