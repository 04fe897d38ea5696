"""The hobby servo model: delay, dead band, lag and speed, backlash, offset; alone and in PyBullet."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from gaits.sine import stand_pose
from plend.hal.servo_model import GEAR_FRICTION_NM, ServoBank
from plend.model.robot import NUM_JOINTS, joint_index
from plend.model.sim_world import ServoModel, SimWorld

DT = 0.02 / 3
ON = np.ones(NUM_JOINTS, bool)


def bank(**servo: float) -> ServoBank:
    keys = {"delay_ms": 0.0, "time_constant_ms": 0.0, "dead_band_deg": 0.0, "backlash_deg": 0.0, **servo}
    world = SimWorld(servo=ServoModel(**keys))  # type: ignore[arg-type]
    return ServoBank(world.servo_table(), DT, np.zeros(NUM_JOINTS))


def respond(b: ServoBank, target: float, steps: int) -> list[float]:
    """Command ``target`` on every joint at t=0, then step; the first joint's output."""
    b.command(0.0, np.full(NUM_JOINTS, target), ON, np.zeros(NUM_JOINTS))
    out = []
    for k in range(steps):
        b.step(k * DT)
        out.append(float(b.output[0]))
    return out


def test_transport_delay_holds_the_old_command() -> None:
    out = respond(bank(delay_ms=20.0), 0.1, 6)
    assert out[:3] == [0.0, 0.0, 0.0]  # 3 steps of 6.7 ms = 20 ms
    assert out[3] > 0.0


def test_first_order_lag_reaches_63_percent_after_one_time_constant() -> None:
    tau = 0.04
    out = respond(bank(time_constant_ms=tau * 1000), 0.05, 60)
    k = round(tau / DT) - 1  # output after the step that ends at tau
    assert out[k] == pytest.approx(0.05 * (1 - math.exp(-tau / DT * DT / tau)), rel=0.02)
    assert out[-1] == pytest.approx(0.05, abs=1e-4)


def test_dead_band_ignores_small_changes_and_stops_at_its_edge() -> None:
    band = math.radians(1.0)
    b = bank(dead_band_deg=1.0)
    assert respond(b, 0.4 * band, 5)[-1] == 0.0  # inside half the band: no move
    out = respond(b, 2.0 * band, 30)
    assert out[-1] == pytest.approx(1.5 * band)  # stops half a band short


def test_backlash_lets_the_link_go_inside_the_play_and_drives_it_at_the_ends() -> None:
    play = math.radians(2.0)
    b = bank(backlash_deg=2.0)
    b.step(0.0)
    links = np.zeros(NUM_JOINTS)
    links[0] = 0.3 * play  # inside the play
    links[1] = 0.9 * play  # beyond its end
    m = b.motor_targets(links)
    assert m["forces"][0] == GEAR_FRICTION_NM and m["positionGains"][0] == 0.0
    assert m["forces"][1] == SimWorld().servo_torque_nm and m["targetPositions"][1] == pytest.approx(play / 2)


def test_an_unpowered_servo_lets_go_and_restarts_from_its_link() -> None:
    b = bank()
    off = ON.copy()
    off[0] = False
    b.command(0.0, np.full(NUM_JOINTS, 0.5), off, np.zeros(NUM_JOINTS))
    b.step(0.0)
    assert b.output[0] == 0.0 and b.motor_targets(None)["forces"][0] == GEAR_FRICTION_NM
    links = np.full(NUM_JOINTS, 0.2)
    b.command(DT, np.full(NUM_JOINTS, 0.2), ON, links)  # powered again where the link sagged
    b.step(DT)
    assert b.output[0] == pytest.approx(0.2)


# -- in PyBullet ---------------------------------------------------------------------------

SHOULDER = joint_index("torso_r_shoulder")
KNEE = joint_index("r_knee_r_shin")


@contextmanager
def sim(world: SimWorld) -> Iterator:  # type: ignore[type-arg]
    pytest.importorskip("pybullet")
    from plend.hal.sim import SimHal

    hal = SimHal(world, stand_pose())
    hal.open(0.02)
    try:
        yield hal
    finally:
        hal.close()


def step_response(world: SimWorld, joint: int, step: float, ticks: int) -> np.ndarray:
    with sim(world) as hal:
        q = stand_pose()
        for _ in range(25):
            hal.write(q)
        start = hal.read().joint_pos[joint]
        q[joint] += step
        out = []
        for _ in range(ticks):
            hal.write(q)
            out.append(hal.read().joint_pos[joint] - start)
    return np.asarray(out)


def test_delay_in_the_simulation_holds_the_joint_for_that_long() -> None:
    ideal = ServoModel(0.0, 0.0, 0.0, 0.0)
    late = ServoModel(40.0, 0.0, 0.0, 0.0)
    prompt = step_response(SimWorld(servo=ideal), SHOULDER, 0.3, 6)
    delayed = step_response(SimWorld(servo=late), SHOULDER, 0.3, 6)
    assert prompt[0] > 0.05
    assert (
        abs(delayed[0]) < 0.005 and delayed[1] < 0.02
    )  # 40 ms: nothing in the first tick, little in the second
    assert delayed[3] > 0.1


def test_a_joint_override_changes_that_joint_only() -> None:
    world = SimWorld(servo=ServoModel(0.0, 0.0, 0.0, 0.0, joints={"torso_r_shoulder": {"delay_ms": 60.0}}))
    assert step_response(world, SHOULDER, 0.3, 1)[0] < 0.005
    assert step_response(world, joint_index("torso_l_shoulder"), 0.3, 1)[0] > 0.05


def test_a_joints_own_speed_caps_its_motion() -> None:
    world = SimWorld(servo=ServoModel(0.0, 0.0, 0.0, 0.0, joints={"torso_r_shoulder": {"speed_rad_s": 4.0}}))
    slow = np.diff(step_response(world, SHOULDER, 1.0, 20)) / 0.02
    fast = np.diff(step_response(world, joint_index("torso_l_shoulder"), 1.0, 20)) / 0.02
    assert 0.8 * 4.0 <= np.abs(slow).max() <= 1.1 * 4.0
    assert np.abs(fast).max() >= 0.8 * SimWorld().servo_speed_rad_s


def test_offset_error_moves_the_link_but_not_the_reading() -> None:
    offset = 1.5
    with sim(SimWorld(fixed_base=True, servo=ServoModel(0.0, 0.0, 0.0, 0.0, offset_deg=offset))) as hal:
        for _ in range(25):
            hal.write(stand_pose())
        read = hal.read().joint_pos[SHOULDER]
        true = hal.link_angles()[SHOULDER]
    assert read == pytest.approx(stand_pose()[SHOULDER], abs=2e-3)
    assert math.degrees(true - read) == pytest.approx(offset, abs=0.05)


def test_backlash_lets_a_loaded_joint_sag_within_the_play() -> None:
    """Hanging on its stand, the arm held out sideways sags under its weight by about half
    the play more than without backlash."""
    roll = joint_index("r_shoulder_rs_servo")

    def sag(backlash: float) -> float:
        with sim(SimWorld(fixed_base=True, servo=ServoModel(0.0, 0.0, 0.0, backlash))) as hal:
            q = stand_pose()
            q[roll] = 1.2  # arm out to the side: gravity pulls it down
            for _ in range(60):
                hal.write(q)
            return abs(float(q[roll] - hal.read().joint_pos[roll]))

    extra = math.degrees(sag(2.0) - sag(0.0))
    assert extra == pytest.approx(1.0, abs=0.3)
