"""Each world factor does to the simulated robot what it says, and the suite's worlds run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pybullet")

from gaits.sine import stand_pose
from plend.core.config import Config, replace_section
from plend.daemon.headless import RunOptions, run
from plend.hal.sim import SimHal
from plend.model.robot import urdf_path
from plend.model.sim_world import SimWorld
from plend.model.worlds import draw_world

PERIOD = 0.02


@contextmanager
def standing(world: SimWorld, ticks: int = 60) -> Iterator[SimHal]:
    hal = SimHal(world, stand_pose())
    hal.open(PERIOD)
    try:
        for _ in range(ticks):
            hal.write(stand_pose())
        yield hal
    finally:
        hal.close()


def imu_roll_pitch(hal: SimHal) -> tuple[float, float]:
    roll, pitch, _ = hal.read().imu.euler
    return math.degrees(roll), math.degrees(pitch)


def test_a_tilted_floor_shows_on_the_imu_and_not_in_the_floor_frame() -> None:
    with standing(SimWorld(floor_tilt_deg=3.0, floor_tilt_direction_deg=0.0)) as hal:
        roll, pitch = imu_roll_pitch(hal)
        accel = hal.read().imu.accel
        truth_pitch = math.degrees(hal.truth().euler[1])
    with standing(SimWorld()) as hal:
        _, level_pitch = imu_roll_pitch(hal)
    # Uphill ahead: standing on it, the torso is pitched nose up (negative pitch) by 3 deg.
    assert pitch - level_pitch == pytest.approx(-3.0, abs=0.3)
    assert abs(roll) < 0.5
    assert truth_pitch == pytest.approx(level_pitch, abs=0.3), "ground truth is in the floor's frame"
    assert np.linalg.norm(accel) == pytest.approx(9.81, abs=0.3)
    with standing(SimWorld(floor_tilt_deg=3.0, floor_tilt_direction_deg=90.0)) as hal:
        roll, _ = imu_roll_pitch(hal)
    assert roll == pytest.approx(3.0, abs=0.4), "uphill to the left: rolled left side up"


def test_imu_bias_turns_what_the_imu_reports() -> None:
    with standing(SimWorld()) as hal:
        base = imu_roll_pitch(hal)
    with standing(SimWorld(imu_bias_deg=(1.5, -2.0, 0.0))) as hal:
        biased = imu_roll_pitch(hal)
        true_roll = math.degrees(hal.truth().euler[0])
    assert biased[0] - base[0] == pytest.approx(1.5, abs=0.1)
    assert biased[1] - base[1] == pytest.approx(-2.0, abs=0.1)
    assert abs(true_roll - base[0]) < 0.1, "the robot itself stands as before"


def test_a_push_moves_the_torso_at_its_time_by_impulse_over_mass() -> None:
    world = SimWorld(push_impulse_ns=0.05, push_at_s=0.5, push_direction_deg=90.0)
    hal = SimHal(world, stand_pose())
    hal.open(PERIOD)
    try:
        velocity = []
        for _ in range(30):
            hal.write(stand_pose())
            velocity.append(hal.truth().velocity[1])
    finally:
        hal.close()
    k = int(0.5 / PERIOD)
    assert max(abs(v) for v in velocity[: k - 1]) < 0.01, "nothing before the push"
    assert max(velocity[k - 1 : k + 2]) == pytest.approx(0.05 / 0.496, rel=0.3)  # to the left


def test_a_lower_sole_tilts_the_standing_robot_away_from_it() -> None:
    with standing(SimWorld(sole_height_right_mm=5.5)) as hal:
        roll, _ = imu_roll_pitch(hal)
        contacts = hal.read().contacts
    assert roll < -3.0, "the right leg is longer: the torso rolls to its left side down"
    assert contacts == (True, True)


def test_soles_far_apart_in_height_are_set_down_on_both_and_stand() -> None:
    # Set down upright on the longer leg, this robot fell 10 mm onto the other and over.
    world = SimWorld(sole_height_right_mm=5.0, sole_height_left_mm=-5.0)
    hal = SimHal(world, stand_pose())
    hal.open(PERIOD)
    try:
        lows = [hal._pb.getAABB(hal._robot, link, **hal._c)[0][2] for link in hal._foot_links]
        set_down = math.degrees(hal.truth().euler[0])
        for _ in range(150):  # 3 s holding the stand pose
            hal.write(stand_pose())
        after = math.degrees(hal.truth().euler[0])
    finally:
        hal.close()
    assert abs(lows[0] - lows[1]) < 5e-5, "both soles touch the floor"
    assert -16.0 < set_down < -10.0, "tilted towards the shorter left leg"
    assert abs(after - set_down) < 2.0, f"it stands where it was set down ({set_down:.1f} -> {after:.1f} deg)"


def test_rounded_soles_and_rolling_friction_stand() -> None:
    for world in (SimWorld(sole_edge_radius_mm=5.0, sole_crown_mm=1.0), SimWorld(rolling_friction=0.01)):
        with standing(world, 100) as hal:
            assert hal.truth().tilt < math.radians(5)
            assert hal.read().contacts == (True, True)


def test_a_users_copy_of_the_model_walks_like_the_packaged_one(tmp_path: Path) -> None:
    copy = tmp_path / "my_robot.urdf"
    copy.write_text(urdf_path().read_text())
    options = RunOptions(speed=0.5, duration_s=3.0, fast=True)
    packaged = run(Config(), options)
    theirs = run(Config(sim=SimWorld(urdf=str(copy))), options)
    assert theirs["distance_m"] == packaged["distance_m"] and theirs["yaw_deg"] == packaged["yaw_deg"]


def test_the_same_world_number_walks_the_same() -> None:
    options = RunOptions(speed=0.5, duration_s=2.0, fast=True)
    a = run(Config(sim=draw_world(11)), options)
    b = run(Config(sim=draw_world(11)), options)
    assert (a["distance_m"], a["lateral_m"], a["yaw_deg"]) == (b["distance_m"], b["lateral_m"], b["yaw_deg"])
    assert a["world"]["sole_height_left_mm"] == draw_world(11).sole_height_left_mm


def test_the_emulated_robot_runs_in_a_drawn_world() -> None:
    # The servo and IMU factors reach the emulated chips through the same simulation.
    world = draw_world(
        4, factors=["servo_delay", "servo_lag", "servo_strength", "offsets", "imu_bias", "friction"]
    )
    config = replace_section(Config(hal="hardware", sim=world), "hardware", bus="emulated")
    summary = run(config, RunOptions(speed=0.5, duration_s=2.0, fast=True))
    assert not summary["fell"] and summary["ticks"] >= 100 and "bus_ms_per_tick" in summary
    assert summary["world"]["seed"] == 4
