"""The joint table, the packaged URDF and the model PyBullet builds from it.

The table rows below are copied from ../shared/HARDWARE.md ("Joints, in the model's
canonical order"); the code must agree with them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from plend.model import robot, urdf
from plend.model.robot import JOINT_NAMES, JOINTS, AdcInput

# Free coordinates (along the axis) are None: only the coordinates across the axis matter.
# index, name, role, axis, point (mm), lower, upper, pwm channel, adc (address, channel)
HARDWARE_TABLE = [
    (0, "rb_servo_r_hip", "R hip yaw", (0, 0, 1), (-6.6, -22.8, None), -1.57, 1.57, 0, (0x48, 0)),
    (1, "r_hip_r_thigh", "R hip roll", (1, 0, 0), (None, -17.3, -51.8), -0.15, 1.50, 1, (0x48, 1)),
    (2, "r_thigh_r_knee", "R hip pitch", (0, -1, 0), (2.9, None, -64.5), -0.95, 1.20, 2, (0x48, 2)),
    (3, "r_knee_r_shin", "R knee", (0, -1, 0), (2.5, None, -92.6), -1.57, 0.30, 3, (0x48, 3)),
    (4, "r_shin_r_ankle", "R ankle pitch", (0, 1, 0), (2.5, None, -126.4), -0.95, 1.20, 4, (0x49, 0)),
    (5, "r_ankle_r_foot", "R ankle roll", (-1, 0, 0), (None, -16.1, -139.1), -0.80, 0.40, 5, (0x49, 1)),
    (6, "lb_servo_l_hip", "L hip yaw", (0, 0, 1), (-6.6, 22.8, None), -1.57, 1.57, 6, (0x49, 2)),
    (7, "l_hip_l_thigh", "L hip roll", (1, 0, 0), (None, 17.3, -51.7), -1.50, 0.15, 7, (0x49, 3)),
    (8, "l_thigh_l_knee", "L hip pitch", (0, 1, 0), (3.0, None, -64.4), -1.20, 0.95, 8, (0x4A, 0)),
    (9, "l_knee_l_shin", "L knee", (0, 1, 0), (3.5, None, -92.5), -0.30, 1.57, 9, (0x4A, 1)),
    (10, "l_shin_l_ankle", "L ankle pitch", (0, -1, 0), (3.5, None, -126.2), -1.20, 1.20, 10, (0x4A, 2)),
    (11, "l_ankle_l_foot", "L ankle roll", (-1, 0, 0), (None, 16.2, -139.0), -0.40, 0.80, 11, (0x4A, 3)),
    (12, "torso_r_shoulder", "R shoulder pitch", (0, -1, 0), (-6.6, None, 30.8), -1.57, 1.57, 12, (0x4B, 0)),
    (13, "r_shoulder_rs_servo", "R shoulder roll", (-1, 0, 0), (None, -50.7, 25.5), -0.15, 1.57, 13, (0x4B, 1)),  # noqa: E501
    (14, "re_servo_r_elbow", "R elbow", (-1, 0, 0), (None, -50.7, -13.6), -0.20, 0.35, None, None),
    (15, "torso_l_shoulder", "L shoulder pitch", (0, 1, 0), (-6.6, None, 30.8), -1.57, 1.57, 14, (0x4B, 2)),
    (16, "l_shoulder_ls_servo", "L shoulder roll", (1, 0, 0), (None, 50.7, 25.5), -1.57, 0.15, 15, (0x4B, 3)),
    (17, "le_servo_l_elbow", "L elbow", (1, 0, 0), (None, 50.7, -13.6), -0.35, 0.20, None, None),
]  # fmt: skip

# Masses from HARDWARE.md (g): torso + battery + head + four torso servos, then per leg
# and per arm.
HARDWARE_MASS_KG = (
    44 + 64 + 10 + 4 * 12
    + 2 * (2.6 + 40 + 5.0 + 12 + 7.0 + 40 + 15)
    + 2 * (3.0 + 12 + 5.1 + 12 + 3.0 + 8.3)
) / 1000.0  # fmt: skip


# -- joint table -------------------------------------------------------------------------


def test_eighteen_joints_in_canonical_order() -> None:
    assert robot.NUM_JOINTS == 18
    assert [row[1] for row in HARDWARE_TABLE] == list(JOINT_NAMES)
    assert [j.index for j in JOINTS] == list(range(18))
    assert robot.LEG_JOINT_NAMES["right"] == JOINT_NAMES[0:6]
    assert robot.LEG_JOINT_NAMES["left"] == JOINT_NAMES[6:12]


@pytest.mark.parametrize("row", HARDWARE_TABLE, ids=[r[1] for r in HARDWARE_TABLE])
def test_joint_row_matches_hardware_table(row: tuple) -> None:  # type: ignore[type-arg]
    index, name, role, axis, point_mm, lower, upper, pwm, adc = row
    j = robot.joint(name)
    assert j.index == index
    assert robot.joint_index(name) == index
    assert j.role == role
    assert j.axis == pytest.approx(axis, abs=1e-12)
    assert (j.lower, j.upper) == pytest.approx((lower, upper), abs=1e-12)
    assert j.pwm_channel == pwm
    assert j.adc == (AdcInput(*adc) if adc is not None else None)
    # The model mirrors the right side exactly; the CAD's left side differs by <= 1 mm.
    tol = 1e-9 if j.side == "right" else 1.0001e-3
    for got, want in zip(j.point, point_mm, strict=True):
        if want is not None:
            assert got == pytest.approx(want / 1000.0, abs=tol), (name, j.point, point_mm)


def test_left_joints_mirror_right_joints() -> None:
    for right, left in zip(JOINTS[0:6] + JOINTS[12:15], JOINTS[6:12] + JOINTS[15:18], strict=True):
        assert left.point == pytest.approx((right.point[0], -right.point[1], right.point[2]), abs=1e-12)
        assert (right.side, left.side) == ("right", "left")
        assert right.limb == left.limb


def test_elbows_are_not_wired_and_every_other_joint_is() -> None:
    unwired = [j.name for j in JOINTS if not j.wired]
    assert unwired == ["re_servo_r_elbow", "le_servo_l_elbow"]
    for name in unwired:
        assert robot.joint(name).pwm_channel is None
        assert robot.joint(name).adc is None
    wired = [j for j in JOINTS if j.wired]
    assert sorted(j.pwm_channel for j in wired) == list(range(16))  # type: ignore[type-var]
    adcs = [(j.adc.address, j.adc.channel) for j in wired if j.adc is not None]
    assert len(adcs) == 16 and len(set(adcs)) == 16
    assert {a for a, _ in adcs} == {0x48, 0x49, 0x4A, 0x4B}


def test_within_checks_limits() -> None:
    knee = robot.joint("r_knee_r_shin")
    assert knee.within(-1.57) and knee.within(0.30)
    assert not knee.within(-1.58)
    assert not knee.within(0.31)
    assert knee.within(0.31, tol=0.02)


def test_unknown_joint_name_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        robot.joint("r_kne")
    message = str(info.value)
    assert "r_kne" in message
    for name in JOINT_NAMES:
        assert name in message
    with pytest.raises(KeyError):
        robot.joint_index("left_knee")


def test_sole_offsets_point_outward_and_down() -> None:
    right, left = robot.sole_offset("right"), robot.sole_offset("left")
    assert right[1] < 0 < left[1]
    assert right[2] == left[2] == pytest.approx(-robot.SOLE_DEPTH)
    # The soles must not overlap at zero pose.
    r_inner = robot.sole_zero_position("right")[1] + robot.SOLE_SIZE[1] / 2
    l_inner = robot.sole_zero_position("left")[1] - robot.SOLE_SIZE[1] / 2
    assert r_inner < l_inner


# -- packaged URDF -----------------------------------------------------------------------


def test_packaged_urdf_is_the_generated_one() -> None:
    path = robot.urdf_path()
    assert path.is_absolute() and path.is_file()
    assert path.read_text(encoding="utf-8") == urdf.build_urdf(), (
        "plend/data/plen2.urdf is stale; run: python -m plend.model.urdf > plend/data/plen2.urdf"
    )


def test_urdf_path_works_from_another_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "from plend.model.robot import urdf_path; p = urdf_path(); "
        "print(p.is_absolute(), p.is_file()); print(p)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    flags, path = result.stdout.strip().splitlines()
    assert flags == "True True"
    assert open(path, encoding="utf-8").read() == urdf.build_urdf()  # noqa: SIM115


# -- the model in PyBullet -----------------------------------------------------------------


@contextmanager
def _bullet() -> Iterator[tuple[Any, int]]:
    import pybullet as pb

    client = pb.connect(pb.DIRECT)
    try:
        yield pb, client
    finally:
        pb.disconnect(physicsClientId=client)


def _load(pb, client: int, fixed: bool) -> tuple[int, dict[str, int], dict[str, int]]:  # type: ignore[no-untyped-def]
    body = pb.loadURDF(
        str(robot.urdf_path()), [0, 0, 0], [0, 0, 0, 1], useFixedBase=fixed,
        flags=pb.URDF_USE_INERTIA_FROM_FILE, physicsClientId=client,
    )  # fmt: skip
    joints, links = {}, {}
    for i in range(pb.getNumJoints(body, physicsClientId=client)):
        info = pb.getJointInfo(body, i, physicsClientId=client)
        joints[info[1].decode()] = i
        links[info[12].decode()] = i
    return body, joints, links


def test_urdf_loads_with_the_joint_table() -> None:
    with _bullet() as (pb, c):
        body, joints, links = _load(pb, c, fixed=True)
        assert pb.getNumJoints(body, physicsClientId=c) == 18
        assert set(joints) == set(JOINT_NAMES)
        base_name = pb.getBodyInfo(body, physicsClientId=c)[0].decode()
        assert base_name == "torso"
        names_by_index = {i: n for n, i in links.items()}
        names_by_index[-1] = "torso"
        for j in JOINTS:
            info = pb.getJointInfo(body, joints[j.name], physicsClientId=c)
            assert info[2] == pb.JOINT_REVOLUTE, j.name
            assert info[8] == pytest.approx(j.lower, abs=1e-9), j.name
            assert info[9] == pytest.approx(j.upper, abs=1e-9), j.name
            assert info[13] == pytest.approx(j.axis, abs=1e-9), j.name
            assert info[12].decode() == j.child
            assert names_by_index[info[16]] == j.parent, j.name
            # Link frames sit on the joint axis points: at zero pose, with the torso at
            # the origin, each child frame is at its joint's point.
            state = pb.getLinkState(body, joints[j.name], computeForwardKinematics=True, physicsClientId=c)
            assert state[4] == pytest.approx(j.point, abs=1e-7), j.name


def test_model_mass_is_half_a_kilo() -> None:
    assert urdf.total_mass() == pytest.approx(HARDWARE_MASS_KG, abs=0.002)
    assert 0.49 <= urdf.total_mass() <= 0.51
    with _bullet() as (pb, c):
        body, _, _ = _load(pb, c, fixed=False)  # a fixed base reports zero mass
        masses = [
            pb.getDynamicsInfo(body, link, physicsClientId=c)[0]
            for link in range(-1, pb.getNumJoints(body, physicsClientId=c))
        ]
    assert all(m > 0 for m in masses)
    assert sum(masses) == pytest.approx(urdf.total_mass(), abs=1e-4)


def test_feet_are_flat_level_and_lowest_at_zero_pose() -> None:
    with _bullet() as (pb, c):
        body, _, links = _load(pb, c, fixed=True)
        bottoms = {}
        for side, link in robot.FOOT_LINKS.items():
            index = links[link]
            (lo, hi) = pb.getAABB(body, index, physicsClientId=c)
            bottoms[side] = lo[2]
            orn = pb.getLinkState(body, index, computeForwardKinematics=True, physicsClientId=c)[5]
            # Identity up to the quaternion's sign.
            assert abs(abs(orn[3]) - 1.0) < 1e-9 and max(abs(v) for v in orn[:3]) < 1e-6, (link, orn)
            # The foot box is the sole described by sole_offset and SOLE_SIZE.
            centre = robot.sole_zero_position(side)
            assert lo[2] == pytest.approx(centre[2], abs=1e-4)
            assert (hi[0] - lo[0], hi[1] - lo[1]) == pytest.approx(robot.SOLE_SIZE[:2], abs=2e-4)
            assert ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2) == pytest.approx(centre[:2], abs=1e-4)
        assert abs(bottoms["right"] - bottoms["left"]) < 1e-4
        # Nothing else hangs below the soles (the robot stands on its feet).
        others = [
            pb.getAABB(body, link, physicsClientId=c)[0][2]
            for link in range(-1, pb.getNumJoints(body, physicsClientId=c))
            if link not in (links["r_foot"], links["l_foot"])
        ]
        assert min(others) > max(bottoms.values()) + 1e-3
        # Standing straight, the torso origin is about 0.158 m above the soles.
        assert -min(bottoms.values()) == pytest.approx(0.158, abs=0.002)


def test_stall_torque_and_speed_in_urdf_match_the_servos() -> None:
    # FS90-FB class: about 0.13-0.15 N m stall, about 9-10 rad/s.
    assert 0.13 <= urdf.SERVO_STALL_TORQUE_NM <= 0.15
    assert 9.0 <= urdf.SERVO_MAX_SPEED_RAD_S <= 10.5
    with _bullet() as (pb, c):
        body, joints, _ = _load(pb, c, fixed=True)
        for name in JOINT_NAMES:
            info = pb.getJointInfo(body, joints[name], physicsClientId=c)
            assert info[10] == pytest.approx(urdf.SERVO_STALL_TORQUE_NM)
            assert info[11] == pytest.approx(urdf.SERVO_MAX_SPEED_RAD_S)


def test_the_stand_pose_is_the_gaits_pose_at_rest() -> None:
    from gaits.sine import GaitParams, joint_targets

    solved = joint_targets(0.0, GaitParams(), 0.0)
    assert np.array_equal(robot.stand_pose(), solved), (
        "the gait's stand pose changed: copy joint_targets(0, GaitParams(), 0) into "
        "plend.model.robot.STAND_POSE"
    )


def test_the_stand_pose_and_limits_cannot_be_changed_through_what_callers_get() -> None:
    pose = robot.stand_pose()
    pose[:] = 1.0
    lower, upper = robot.joint_limits()
    lower[:] = upper[:] = 0.0
    assert robot.stand_pose()[0] == 0.0 and robot.stand_pose()[13] == 0.1
    assert robot.joint_limits()[0][1] == -0.15 and robot.joint_limits()[1][1] == 1.50
    assert all(j.within(q) for j, q in zip(JOINTS, robot.stand_pose(), strict=True))
