"""Servo identification in calibration mode, in-process on the emulated hardware: what it
refuses before anything moves, what it records, what it leaves behind, and the wizard's
refusals of bad feedback wires."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from calibration.fit import FeedbackError
from calibration.servo_checks import Recording, check_feedback
from calibration.servo_excitation import choose_centre, two_runs
from calibration.store import CALIBRATION_VERSION, CalibrationRecord, JointRecord, save, wired_joint_names
from plend.control.calibration_mode import FILTER_SPEED_RAD_S, CalibrationCommandError, CalibrationMode
from plend.control.loop import ControlLoop, StepClock
from plend.control.safety import SafetyFilter
from plend.control.supervisor import Supervisor
from plend.core.config import Config, replace_section
from plend.daemon.runtime import robot_calibration
from plend.hal.emulated.robot import EmulatedHardwareHal, make_emulated_hardware_hal
from plend.model.robot import joint
from plend.model.servo_map import JointCalibration

pytest.importorskip("pybullet")

PERIOD = 0.02
ANKLE = "r_ankle_r_foot"
SLEW = 20.0
WHEN = "2025-05-01T12:00:00+00:00"


def calibrated(state_dir: Path, robot_id: str) -> None:
    """The calibration of an emulated robot built exactly to the default calibration."""
    nominal = JointCalibration()
    n = nominal
    joint_record = JointRecord(
        n.offset_deg, n.direction, n.pulse_min_us, n.pulse_max_us, n.code_at_zero, n.codes_per_rad,
        0.1, 1.0, (-0.5, 0.5), WHEN,
    )  # fmt: skip
    joints = {name: joint_record for name in wired_joint_names()}
    save(state_dir / "calibration.json", CalibrationRecord(CALIBRATION_VERSION, robot_id, WHEN, joints))


@dataclass
class Rig:
    hal: EmulatedHardwareHal
    supervisor: Supervisor
    loop: ControlLoop
    config: Config
    mode: CalibrationMode | None = None

    def begin(self) -> CalibrationMode:
        self.mode = CalibrationMode(self.hal, self.loop.safety, self.config.safety.joint_limits())
        self.supervisor.handle("calibrate_begin", mode=self.mode)
        return self.mode

    def op(self, name: str, **args: object) -> dict:
        return self.supervisor.handle("calibrate", op=name, **args)

    def excitation(self, name: str) -> np.ndarray:
        j = joint(name)
        low, high = j.lower + math.radians(3), j.upper - math.radians(3)
        return two_runs(choose_centre(0.0, low, high), low, high, PERIOD, SLEW)

    def identify(self, name: str) -> dict:
        targets = self.excitation(name)
        self.op("identify", joint=name, targets=targets.tolist(), runs=2)
        for _ in range(len(targets) + 200):
            self.loop.tick()
            state = self.op("state")["identify"]
            if state["done"]:
                return state
        raise AssertionError("the excitation did not finish")


def make_rig(tmp_path: Path, calibrate: bool = True, **hardware: object) -> Rig:
    config = Config(hal="hardware")
    config = replace_section(config, "paths", state_dir=str(tmp_path), recordings_dir=str(tmp_path))
    config = replace_section(config, "hardware", bus="emulated", emulated_servo_seed=4, **hardware)
    config = replace_section(config, "sim", fixed_base=True)
    config = replace_section(config, "safety", max_speed_rad_s=SLEW)
    if calibrate:
        calibrated(tmp_path, config.hardware.robot_name())
    hal = make_emulated_hardware_hal(config, robot_calibration(config))
    assert isinstance(hal, EmulatedHardwareHal)
    hal.open(PERIOD)
    supervisor = Supervisor(config.safety, PERIOD, hal=hal)
    loop = ControlLoop(hal, supervisor, PERIOD, SafetyFilter.from_config(config.safety, PERIOD), StepClock())
    loop.start()
    loop.tick()
    return Rig(hal, supervisor, loop, config)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = make_rig(tmp_path)
    try:
        yield made
    finally:
        made.hal.close()


def test_an_excitation_is_refused_before_anything_moves(rig: Rig) -> None:
    rig.begin()
    targets = rig.excitation(ANKLE)
    pulses = rig.hal.robot.pca.pulse_us(joint(ANKLE).pwm_channel)  # type: ignore[arg-type]
    outside = targets.copy()
    outside[40] = math.radians(60)
    fast = np.r_[np.full(41, -0.3), np.full(40, 0.3)]  # 0.6 rad in a tick; 0.4 allowed
    for bad, match in (
        (outside.tolist(), r"target 40 \(\+60\.0 deg\) is outside its calibration-safe range"),
        (fast.tolist(), r"target 41 moves .* deg in one tick, more than the slew limit allows"),
        ([0.0, float("inf")], "targets must be finite"),
        ("fast", "targets must be a list of numbers"),
        ([0.0] * 2000, r"targets must hold 2 to 1500 ticks"),
    ):
        with pytest.raises(CalibrationCommandError, match=match):
            rig.op("identify", joint=ANKLE, targets=bad)
    with pytest.raises(CalibrationCommandError, match=r"runs must be 1\.\.4 and divide"):
        rig.op("identify", joint=ANKLE, targets=targets[:-1].tolist(), runs=2)
    with pytest.raises(CalibrationCommandError, match="has no servo"):
        rig.op("identify", joint="re_servo_r_elbow", targets=[0.0, 0.0])
    rig.loop.tick()
    assert rig.op("state")["active"] is None and "identify" not in rig.op("state")
    assert rig.hal.robot.pca.pulse_us(joint(ANKLE).pwm_channel) == pulses  # type: ignore[arg-type]


def test_an_uncalibrated_joint_is_not_excited(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, calibrate=False)
    try:
        rig.begin()
        with pytest.raises(CalibrationCommandError, match="is not calibrated: calibrate it before measuring"):
            rig.op("identify", joint=ANKLE, targets=rig.excitation(ANKLE).tolist())
    finally:
        rig.hal.close()


def test_the_excitation_is_played_tick_by_tick_and_recorded(rig: Rig) -> None:
    mode = rig.begin()
    targets = rig.excitation(ANKLE)
    state = rig.identify(ANKLE)
    assert state["error"] is None and len(state["sent"]) == len(targets) == len(state["measured"])
    sent, measured = np.array(state["sent"]), np.array(state["measured"])
    assert np.degrees(np.abs(sent - targets)).max() < 0.25, "whole PCA9685 counts: within 0.2 deg"
    assert all(state["fresh"]), "at 50 Hz every tick reads every joint"
    assert np.ptp(measured) > 0.8 * np.ptp(targets), "it followed"
    assert state["truth"][0]["delay_ms"] > state["truth"][0]["own_delay_ms"], "the PWM frame's wait counts"
    assert rig.loop.safety.max_speed_rad_s == FILTER_SPEED_RAD_S, "the calibration speed cap is back"
    assert mode.active == joint(ANKLE).index, "it holds where the excitation ended"
    recording = Recording.from_state(state)
    check_feedback(recording, expected_sign=1)  # a good wire passes


def test_relaxing_mid_excitation_ends_it_and_restores_the_speed_cap(rig: Rig) -> None:
    rig.begin()
    stored = rig.hal.calibration
    rig.op("identify", joint=ANKLE, targets=rig.excitation(ANKLE).tolist(), runs=2)
    for _ in range(60):
        rig.loop.tick()
    assert rig.op("state")["identify"]["started"]
    assert rig.loop.safety.max_speed_rad_s == SLEW, "it plays at the robot's own slew limit"
    rig.op("relax")
    rig.loop.tick()
    assert rig.loop.safety.max_speed_rad_s == FILTER_SPEED_RAD_S
    assert rig.hal.robot.pca.pulse_us(joint(ANKLE).pwm_channel) is None, "relaxed"  # type: ignore[arg-type]
    assert rig.hal.calibration is stored


@pytest.mark.parametrize(
    ("fault", "refusal"),
    [
        (
            "stuck",
            r"feedback reads a constant 3100 .*the wire is loose or disconnected, or the servo is not",
        ),
        ("noisy", r"feedback is noisy: \d+\.\d\d deg rms from point to point \(limit 0\.3\)"),
        (
            "reversed",
            r"feedback runs backwards: codes fall as the joint angle rises \(expected them to rise\)",
        ),
    ],
)
def test_a_bad_feedback_wire_gets_the_wizards_refusal(tmp_path: Path, fault: str, refusal: str) -> None:
    rig = make_rig(tmp_path, emulated_feedback_faults={ANKLE: fault})
    try:
        rig.begin()
        state = rig.identify(ANKLE)
        assert state["error"] is None, "the stall guard does not take a bad wire for a stop"
        with pytest.raises(FeedbackError, match=refusal):
            check_feedback(Recording.from_state(state), expected_sign=1)
    finally:
        rig.hal.close()
