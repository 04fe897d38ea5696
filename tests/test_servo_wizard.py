"""``plenctl calibrate --servos`` end to end on the emulated robot: it finds the robot's hidden
servos and saves them beside the calibration; a bad wire is refused and skipped; killing
the wizard leaves the file as it was and the servos relaxed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibration.store import load
from plend.hal.emulated.robot import true_servos
from plend.plenctl import main as plenctl
from tests.support import Daemon, wait_for_mode
from tests.test_servo_identify_mode import calibrated

pytest.importorskip("pybullet")

SEED = 4
ANKLE, SHOULDER = "r_ankle_r_foot", "torso_r_shoulder"
ROBOT = "emulated robot (seed None)"


def daemon(tmp_path: Path, faults: str = "") -> Daemon:
    calibrated(tmp_path, ROBOT)
    config = (
        'hal = "hardware"\n[loop]\ntime_scale = 10.0\nrealtime = false\n[safety]\nmax_speed_rad_s = 20.0\n'
        f'[hardware]\nbus = "emulated"\nemulated_servo_seed = {SEED}\n{faults}[sim]\nfixed_base = true\n'
    )
    return Daemon(tmp_path, config=config)


def test_the_servos_are_found_and_saved_beside_the_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = daemon(tmp_path)
    before = load(tmp_path / "calibration.json")
    try:
        code = d.ctl("calibrate", "--servos", "--joint", ANKLE, "--joint", SHOULDER, "--operator", "sim")
        out = capsys.readouterr().out
        assert code == 0, out
        assert "Robot time:" in out and "Saved" in out
        wait_for_mode(d, "relax")
    finally:
        d.stop()
    after = load(tmp_path / "calibration.json")
    measured = {ANKLE, SHOULDER}
    assert {n: j for n, j in after.joints.items() if n not in measured} == {
        n: j for n, j in before.joints.items() if n not in measured
    }, "the rest as it was"
    assert after.imu_offsets == before.imu_offsets
    assert set(after.servos) == measured
    for name in measured:  # this robot is built as calibrated: its refined lines stay near exact
        old, new, servo = before.joints[name], after.joints[name], after.servos[name]
        assert new.codes_per_rad / old.codes_per_rad == pytest.approx(servo.feedback_scale, rel=1e-5)
        assert servo.feedback_scale == pytest.approx(1.0, abs=0.005)
        assert abs(servo.feedback_shift_deg) < 0.3
        assert new.offset_deg == old.offset_deg and new.range_rad == old.range_rad
    assert "Feedback lines refined from the servos" in out
    truth = true_servos(SEED)
    for name in (ANKLE, SHOULDER):
        found, true = after.servos[name], truth[name]
        # The delay counts the PCA9685's wait too: the write's time in the tick and the frame.
        assert true["delay_ms"] + 5.0 < found.delay_ms < true["delay_ms"] + 35.0
        assert found.time_constant_ms == pytest.approx(true["time_constant_ms"], rel=0.15)
        assert found.speed_reached and found.speed_rad_s == pytest.approx(true["speed_rad_s"], rel=0.15)
        play = found.dead_band_deg + found.backlash_deg
        assert play == pytest.approx(true["dead_band_deg"] + true["backlash_deg"], abs=0.3)
        assert found.fit_error_deg < 0.2 and found.rate_hz == 50.0 and found.substeps == 3
    assert plenctl(["calibration", "show", "--file", str(tmp_path / "calibration.json")]) == 0
    shown = capsys.readouterr().out
    assert "servos as identified (for the simulation at 50 Hz, 3 substeps" in shown and ANKLE in shown


def test_a_bad_wire_is_refused_and_skipped_and_a_killed_wizard_changes_nothing(tmp_path: Path) -> None:
    d = daemon(tmp_path, faults=f'emulated_feedback_faults = {{{ANKLE} = "stuck"}}\n')
    path = tmp_path / "calibration.json"
    answers = tmp_path / "answers.toml"
    answers.write_text('bad_feedback = "skip"\nsave = true\n')
    wizard = [sys.executable, "-m", "plend.plenctl", "--socket", str(d.socket), "calibrate", "--servos"]
    try:
        done = subprocess.run(
            [*wizard, "--joint", ANKLE, "--answers", str(answers)], capture_output=True, text=True
        )
        assert "feedback reads a constant 3100" in done.stdout and "the wire is loose" in done.stdout
        assert f"{ANKLE}: not measured" in done.stdout and done.returncode == 1, "nothing else to save"
        stored = path.read_bytes()
        proc = subprocess.Popen(
            [*wizard, "--joint", SHOULDER, "--operator", "sim"], stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while json.loads(json.dumps(d.status()))["mode"] != "calibrate":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # in the middle of the excitation
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        wait_for_mode(d, "relax")
        # the mode changes at once, the powered servos as the next tick is published
        deadline = time.monotonic() + 5
        while any(j["powered"] for j in d.status()["joints"]):
            assert time.monotonic() < deadline, "every servo relaxed"
            time.sleep(0.05)
    finally:
        d.stop()
    assert path.read_bytes() == stored, "the stored calibration is untouched"


def test_killing_the_daemon_mid_identification_leaves_the_calibration_as_it_was(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    path = tmp_path / "calibration.json"
    stored = path.read_bytes()
    wizard = [sys.executable, "-m", "plend.plenctl", "--socket", str(d.socket), "calibrate", "--servos"]
    proc = subprocess.Popen([*wizard, "--joint", SHOULDER, "--operator", "sim"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while d.status()["mode"] != "calibrate":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        d.stop()
    assert proc.returncode != 0 and "nothing saved" in out and "plenctl: error:" in err
    assert path.read_bytes() == stored
