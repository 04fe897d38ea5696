"""The hardware backend: the real Adafruit drivers and plend's fast path on emulated chips."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("adafruit_pca9685")
pytest.importorskip("pybullet")

from gaits.sine import stand_pose
from plend.core.config import Config, replace_section
from plend.core.errors import HalError
from plend.daemon.runtime import robot_calibration
from plend.hal.emulated.robot import EmulatedHardwareHal, make_emulated_hardware_hal
from plend.main import main
from plend.model.robot import JOINTS
from plend.model.servo_map import JointCalibration, angle_to_pulse_us

RAD_PER_CODE = math.pi / 16000


def emulated(tmp_path: Path, **hardware: object) -> EmulatedHardwareHal:
    config = Config(hal="hardware")
    config = replace_section(config, "paths", state_dir=str(tmp_path), recordings_dir=str(tmp_path))
    config = replace_section(config, "hardware", bus="emulated", **hardware)
    hal = make_emulated_hardware_hal(config, robot_calibration(config), stand_pose())
    assert isinstance(hal, EmulatedHardwareHal)
    return hal


@pytest.fixture(scope="module")
def hal(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    h = emulated(tmp_path_factory.mktemp("hw"), adc_sweep="full")
    h.open(0.02)
    yield h
    h.close()


def test_pwm_set_up_order_and_one_burst_per_write(hal: EmulatedHardwareHal) -> None:
    writes = hal.robot.pca.writes
    # Probe, the driver's reset, the frequency before any channel (read MODE1, sleep,
    # prescale 121 = 50 Hz, wake, auto-increment + restart, read back the prescale),
    # then every output off until the first command.
    expected = ["", "0000", "00", "0010", "fe79", "0000", "00a0", "fe", "fd10"]
    assert [w.hex() for w in writes] == expected
    before = len(writes)
    q = stand_pose()
    hal.write(q)
    burst = writes[before]
    assert len(writes) == before + 1 and len(burst) == 65 and burst[0] == 0x06
    counts_per_us = hal.robot.pca.frequency_hz * 4096 / 1e6
    for j in JOINTS:
        if j.pwm_channel is None:
            continue
        on, off = np.frombuffer(burst[1 + 4 * j.pwm_channel : 5 + 4 * j.pwm_channel], "<u2")
        assert on == 0 and off == round(angle_to_pulse_us(q[j.index], JointCalibration()) * counts_per_us)


def test_feedback_of_all_16_channels_on_four_adcs(hal: EmulatedHardwareHal) -> None:
    for _ in range(30):
        hal.read()
        hal.write(stand_pose())
    truth = hal.robot.sim.read().joint_pos
    measured = hal.read().joint_pos
    for j in JOINTS:
        if j.adc is None:
            assert math.isnan(measured[j.index]), "no feedback wire on the elbows"
        else:
            assert measured[j.index] == pytest.approx(truth[j.index], abs=3 * RAD_PER_CODE + 0.003)


def test_imu_burst_read_matches_the_simulation(hal: EmulatedHardwareHal) -> None:
    hal.read()
    hal.write(stand_pose())
    sim = hal.robot.sim.read().imu
    imu = hal.read().imu
    assert np.allclose(imu.quat, sim.quat, atol=2e-4)
    assert np.allclose(imu.accel, sim.accel, atol=0.02)
    assert np.allclose(imu.gyro, sim.gyro, atol=0.01)


def test_missing_chips_are_all_named_at_start_up(tmp_path: Path) -> None:
    hal = emulated(tmp_path)
    hal.robot.bus.detach(0x4A)
    hal.robot.bus.detach(0x28)
    with pytest.raises(HalError) as info:
        hal.open(0.02)
    message = str(info.value)
    assert "ADS1115 #2 (servo feedback) at 0x4a" in message and "BNO055 (IMU) at 0x28" in message
    assert "Addresses that answered: 0x40, 0x48, 0x49, 0x4b" in message
    assert "\n" not in message


def test_a_vanished_adc_goes_stale_and_is_named(tmp_path: Path) -> None:
    hal = emulated(tmp_path, adc_sweep="full")
    hal.open(0.02)
    try:
        hal.robot.bus.detach(0x49)
        first = hal.read()
        for _ in range(10):
            hal.write(stand_pose())
            later = hal.read()
        assert any(f.startswith("ADS1115 at 0x49") for f in later.faults)
        assert later.joint_age() > first.joint_age() > 0.0, "its joints stop being fresh"
        assert later.imu_age() == 0.0
    finally:
        hal.close()


def test_close_turns_every_output_off(tmp_path: Path) -> None:
    hal = emulated(tmp_path)
    hal.open(0.02)
    hal.write(stand_pose())
    assert hal.robot.pca.pulse_us(3) is not None
    hal.close()
    assert all(hal.robot.pca.pulse_us(ch) is None for ch in range(16))
    hal.close()  # idempotent


def test_io_errors_are_retried_counted_and_never_stop_the_loop(tmp_path: Path) -> None:
    from plend.daemon.headless import RunOptions, run

    config = replace_section(Config(hal="hardware"), "hardware", bus="emulated")
    config = replace_section(config, "paths", state_dir=str(tmp_path), recordings_dir=str(tmp_path))
    hal = make_emulated_hardware_hal(config, robot_calibration(config), stand_pose())
    set_up = hal.open

    def open_then_fail(period: float) -> None:
        set_up(period)
        hal.robot.bus.faults.io_error_rate = 0.01  # from the first tick on

    hal.open = open_then_fail  # type: ignore[method-assign,assignment]
    summary = run(config, RunOptions(speed=0.5, duration_s=60.0, fast=True), hal=hal)
    counters = hal.counters
    assert summary["ticks"] >= 3000 and summary["fell"] is False
    assert counters.retries > 0.005 * counters.transactions, "about 1 % of transactions failed once"
    # Every tick wrote the servos once; only writes that failed twice are missing, and
    # each of those is counted.
    bursts = sum(1 for w in hal.robot.pca.writes if len(w) == 65)
    assert bursts + counters.missed_writes == summary["ticks"]
    assert counters.missed_writes <= counters.failures


def test_walks_like_the_simulation_on_the_emulated_bus(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--fast", "--gait", "sine", "--speed", "0.5", "--duration", "20", "--summary", "json"]
    assert main([*args, "--hal", "sim"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert main([*args, "--hal", "hardware", "--bus", "emulated"]) == 0
    hw = json.loads(capsys.readouterr().out)
    assert hw["fell"] is False
    assert abs(hw["distance_m"] - sim["distance_m"]) <= 0.25 * sim["distance_m"]
    assert hw["bus_ms_per_tick"] <= 10.0
    assert hw["bus_transactions_per_tick"] > 0


def test_probe_on_the_emulated_bus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--bus", "emulated"]) == 0
    report = capsys.readouterr().out
    assert report.count("answers") == 6
    assert "auto-increment on" in report and "calibration sys" in report
    assert "r_knee_r_shin" in report and "transfer times" in report


def test_nothing_imports_drivers_or_board_until_opened() -> None:
    code = (
        "import sys, plend.main, plend.hal.hardware, plend.hal.emulated.robot, plend.cli.probe;"
        "import plend.daemon.daemon;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('board', 'busio', 'adafruit_pca9685',"
        " 'adafruit_ads1x15', 'adafruit_bno055', 'pybullet')];"
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_stored_imu_offsets_are_restored(tmp_path: Path) -> None:
    from calibration.store import CALIBRATION_VERSION, CalibrationRecord, JointRecord, save

    offsets = list(range(1, 23))
    now = "2026-11-24T00:00:00+00:00"
    joint = JointRecord(0.0, 1, 600.0, 2800.0, 12000.0, 16000 / math.pi, 0.2, 0.1, (-1.0, 1.0), now)
    joints = {j.name: joint for j in JOINTS if j.wired}
    save(
        tmp_path / "calibration.json",
        CalibrationRecord(CALIBRATION_VERSION, "test", now, joints, tuple(offsets)),
    )
    from plend.plenctl import main as plenctl

    assert plenctl(["calibration", "show", "--file", str(tmp_path / "calibration.json")]) == 0
    assert plenctl(["calibration", "show", "--file", str(tmp_path / "none.json")]) == 1
    hal = emulated(tmp_path, robot_id="test")
    hal.open(0.02)
    try:
        assert hal.calibration.measured
        assert list(hal.robot.imu.offsets) == offsets
        assert hal.robot.imu.mode == 0x0C, "back in fusion mode"
    finally:
        hal.close()


def test_fast_rates_read_the_adcs_round_robin(tmp_path: Path) -> None:
    hal = emulated(tmp_path)
    hal.open(0.01)  # 100 Hz: a full sweep does not fit
    try:
        assert hal.round_robin and hal.status()["adc"] == "round-robin"
        before = hal.robot.bus.stats.transactions
        sensors = hal.read()
        assert hal.robot.bus.stats.transactions - before == 4 * 2 + 1, "one channel on each ADC, and the IMU"
        assert sensors.joint_age() < 0.05
    finally:
        hal.close()


def test_a_corrupt_calibration_file_stops_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "calibration.json").write_text("{not json")
    config = tmp_path / "plend.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path}"\n[hardware]\nbus = "emulated"\n')
    assert main(["--config", str(config), "run", "--hal", "hardware", "--fast", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plend: error: calibration file {tmp_path / 'calibration.json'}")


def test_no_bus_on_a_pc_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--hal", "hardware", "--bus", "i2c", "--no-socket", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "plend: error: no I2C bus on this machine" in err and "--bus emulated" in err


def test_a_bus_without_the_hardware_backend_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`plend run --bus emulated` on a sim config used to run the plain simulation."""
    assert main(["run", "--bus", "emulated", "--fast", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "plend: error: --bus emulated chooses the hardware backend's bus, but this run uses the sim backend; "
        'add --hal hardware (or set hal = "hardware" in the config)'
    )


def test_a_miscalibrated_robot_reads_wrong_until_given_its_calibration(tmp_path: Path) -> None:
    from plend.hal.emulated.robot import miscalibrated

    truth = miscalibrated(7)
    assert any(c.direction == -1 for c in truth.joints.values())
    assert max(abs(c.offset_deg) for c in truth.joints.values()) > 5.0
    hal = emulated(tmp_path, emulated_miscalibration_seed=7)
    hal.open(0.02)
    try:
        sim = hal.robot.sim.read().joint_pos
        wired = [j.index for j in JOINTS if j.adc is not None]
        assert np.max(np.abs(hal.read().joint_pos[wired] - sim[wired])) > math.radians(5)
        hal.calibration = truth  # what a perfect calibration would find
        hal._pwm_channels = [(ch, i, truth.joints[JOINTS[i].name]) for ch, i, _ in hal._pwm_channels]
        assert np.max(np.abs(hal.read().joint_pos[wired] - sim[wired])) < math.radians(0.1)
    finally:
        hal.close()
