"""When a simulated servo acts on a pulse: its delay kept exactly between physics steps, a
pulse that waits for the PCA9685's next frame, and the emulated robot's own servos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plend.core.config import Config, replace_section
from plend.hal.emulated.robot import SERVO_TRUTH_RANGES, PwmFrames, true_servos
from plend.hal.servo_model import ServoBank
from plend.model.robot import NUM_JOINTS
from plend.model.sim_world import ServoModel, SimWorld

DT = 0.02 / 3
ON = np.ones(NUM_JOINTS, bool)


def bank(delay_ms: float) -> ServoBank:
    world = SimWorld(servo=ServoModel(delay_ms=delay_ms, time_constant_ms=0.0))
    return ServoBank(world.servo_table(), DT, np.zeros(NUM_JOINTS))


def outputs(b: ServoBank, steps: int) -> list[float]:
    out = []
    for k in range(steps):
        b.step(k * DT)
        out.append(float(b.output[0]))
    return out


def test_a_delay_between_two_physics_steps_is_kept_not_rounded_up() -> None:
    b = bank(delay_ms=10.0)  # one and a half physics steps
    b.command(0.0, np.ones(NUM_JOINTS), ON, np.zeros(NUM_JOINTS))
    assert outputs(b, 3) == pytest.approx([0.0, 0.5, 1.0]), "half of the second step is the new command's"


def test_a_command_reaches_the_servo_only_when_its_frame_starts() -> None:
    b = bank(delay_ms=0.0)
    b.command(0.0, np.ones(NUM_JOINTS), ON, np.zeros(NUM_JOINTS), at=2 * DT)  # written now, sent at 2 steps
    assert outputs(b, 3) == pytest.approx([0.0, 0.0, 1.0])
    b.command(DT, np.full(NUM_JOINTS, 2.0), ON, np.zeros(NUM_JOINTS), at=0.0)  # never before the last one
    assert b._history[0][-1] == pytest.approx(2 * DT)


def test_the_pca9685s_next_frame() -> None:
    frames = PwmFrames(phase_s=0.005)
    assert frames.next_frame(0.004, 50.0) == pytest.approx(0.005)
    assert frames.next_frame(0.005, 50.0) == pytest.approx(0.005), "a frame that starts now takes it"
    assert frames.next_frame(0.0051, 50.0) == pytest.approx(0.025)


def test_the_emulated_robots_own_servos_are_seeded_and_not_the_simulations() -> None:
    a, b = true_servos(5), true_servos(5)
    assert a == b and a != true_servos(6)
    nominal = SimWorld().servo_table()
    for table in a.values():
        for key, (lo, hi) in SERVO_TRUTH_RANGES.items():
            assert lo <= table[key] <= hi
        assert table["time_constant_ms"] != pytest.approx(1000 * nominal.time_constant_s[0])
        assert table["backlash_deg"] > 0 and table["dead_band_deg"] > 0


@pytest.mark.parametrize("seed", [None, 2])
def test_a_pulse_waits_for_the_next_frame_only_on_a_robot_with_its_own_servos(seed: int | None) -> None:
    pytest.importorskip("pybullet")
    from gaits.sine import stand_pose
    from plend.daemon.runtime import robot_calibration
    from plend.hal.emulated.robot import make_emulated_hardware_hal

    config = replace_section(Config(hal="hardware"), "hardware", bus="emulated", emulated_servo_seed=seed)
    config = replace_section(config, "sim", fixed_base=True)
    hal = make_emulated_hardware_hal(config, robot_calibration(config))
    hal.open(0.02)
    try:
        for _ in range(30):
            stamp = hal.read().stamp
            hal.write(stand_pose())
        truth = hal.true_servo(3, 0.0)  # type: ignore[attr-defined]
        written, wait = hal.robot.pwm_latency(stamp - 0.3)  # type: ignore[attr-defined]
    finally:
        hal.close()
    if seed is None:
        assert hal.pwm_frame_s is None and (written, wait) == (0.0, 0.0)  # type: ignore[attr-defined]
        assert truth["delay_ms"] == pytest.approx(40.0 / 3.0)  # the simulation's default servo
    else:
        assert hal.pwm_frame_s == pytest.approx(0.02, rel=0.01)  # type: ignore[attr-defined]
        assert written < wait < written + 0.02 + 1e-9, "after the write, within one frame"
        assert truth["delay_ms"] == pytest.approx(truth["own_delay_ms"] + 1000 * wait, abs=1.0)
        assert math.isclose(truth["own_delay_ms"], true_servos(seed)["r_knee_r_shin"]["delay_ms"])
