"""The calibration wizard end to end: a daemon on the emulated hardware of a robot built
with random horn errors, mirrored servos and potentiometer gains, calibrated by
``plenctl calibrate`` with a simulated operator (and by answers files)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibration.drafts import draft_path, load_draft
from calibration.store import backup_path, load
from plend.hal.emulated.robot import miscalibrated
from plend.model.robot import JOINTS
from plend.plenctl import Client, ClientError
from tests.support import Daemon, wait_for_mode

pytest.importorskip("pybullet")

SEED = 11
WIRED = [j.name for j in JOINTS if j.wired]


def robot_config(seed: int = SEED, faults: str = "") -> str:
    """An emulated robot as built, hung on its stand, running 8x faster than real time."""
    return (
        'hal = "hardware"\n[loop]\ntime_scale = 8.0\nrealtime = false\n'
        f'[hardware]\nbus = "emulated"\nemulated_miscalibration_seed = {seed}\n{faults}'
        "[sim]\nfixed_base = true\n"
    )


def calibrate(d: Daemon, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plend.plenctl", "--socket", str(d.socket), "calibrate", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def start_wizard(d: Daemon, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plend.plenctl", "--socket", str(d.socket), "calibrate", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def powered(d: Daemon) -> list[str]:
    return [j["name"] for j in d.status()["joints"] if j["powered"]]


def wait_until(what: str, condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.fixture
def robot(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, config=robot_config())
    yield d
    d.stop()


def test_the_wizard_recovers_a_miscalibrated_robot(tmp_path: Path) -> None:
    """The judged run: every joint's offset within 1 deg, its direction exact, its feedback
    fit under 1 deg; afterwards the stand pose puts every joint within 1 deg of the truth."""
    truth = miscalibrated(SEED)
    assert max(abs(c.offset_deg) for c in truth.joints.values()) > 10, "a robot that needs calibrating"
    assert {c.direction for c in truth.joints.values()} == {1, -1}
    # A calibration from another robot is refused: the daemon starts but will not move.
    other = tmp_path / "calibration.json"
    d = Daemon(tmp_path, config=robot_config())
    try:
        assert d.ctl("stand") == 0 and d.status()["mode"] == "stand", "uncalibrated: moves with a warning"
        d.ctl("relax")
    finally:
        d.stop()
    other.write_text(
        json.dumps({"version": 1, "robot_id": "plen-99", "created": "2026-01-01T00:00:00", "joints": {}})
    )
    d = Daemon(tmp_path, config=robot_config())
    try:
        assert d.ctl("stand") == 1, "a mismatched calibration file blocks motion"
        assert any(f["code"] == "calibration" for f in d.status()["faults"])
        assert d.ctl("reset") == 0 and d.ctl("stand") == 1, "reset does not clear it; calibrating does"

        done = calibrate(d, "--operator", "sim")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Saved" in done.stdout and "Review" in done.stdout

        record = load(tmp_path / "calibration.json")
        assert set(record.joints) == set(WIRED)
        for name, got in record.joints.items():
            want = truth.joints[name]
            assert abs(got.offset_deg - want.offset_deg) < 1.0, (
                f"{name}: {got.offset_deg} vs {want.offset_deg}"
            )
            assert got.direction == want.direction, name
            assert got.fit_error_deg < 1.0, name
            assert math.copysign(1, got.codes_per_rad) == math.copysign(1, want.codes_per_rad), name
        assert record.imu_offsets is not None and record.imu_calib_status == 0xFF
        assert json.loads(backup_path(other).read_text())["robot_id"] == "plen-99", "the old file is kept"
        assert not draft_path(other).exists(), "the draft goes once the calibration is saved"

        assert d.status()["mode"] == "relax" and powered(d) == [], "the wizard leaves the robot relaxed"
        assert d.status()["faults"] == [], "the new calibration clears the block"
        assert_stands_true(d)
    finally:
        d.stop()
    # A restarted daemon drives the servos from the saved file.
    d = Daemon(tmp_path, config=robot_config())
    try:
        assert d.status()["hardware"]["calibration"] == str(tmp_path / "calibration.json")
        assert_stands_true(d)
        imu = calibrate(d, "--imu-only", "--yes")
        assert imu.returncode == 0 and "== IMU ==" in imu.stdout and "Joint 1" not in imu.stdout, imu.stdout
        again = load(tmp_path / "calibration.json")
        assert again.joints == record.joints and again.imu_offsets == record.imu_offsets
    finally:
        d.stop()


def assert_stands_true(d: Daemon) -> None:
    assert d.ctl("stand") == 0
    wait_for_mode(d, "stand")
    time.sleep(1.5)  # the stand move takes 1 s (robot time, 8x faster here)
    joints = [j for j in d.status()["joints"] if j["name"] in WIRED]
    errors = {j["name"]: math.degrees(j["truth"] - j["target"]) for j in joints}
    worst = max(errors, key=lambda n: abs(errors[n]))
    assert abs(errors[worst]) < 1.0, f"{worst} is {errors[worst]:+.2f} deg off its stand target"
    d.ctl("relax")


FAULTS = {
    "stuck": "Feedback refused: feedback reads a constant",
    "noisy": "Feedback refused: feedback is noisy",
    "reversed": "Feedback refused: feedback runs backwards",
}


def test_a_bad_feedback_wire_is_caught_explained_and_not_saved(tmp_path: Path) -> None:
    wires = {"stuck": "r_knee_r_shin", "noisy": "l_thigh_l_knee", "reversed": "torso_r_shoulder"}
    table = "".join(f'{name} = "{fault}"\n' for fault, name in wires.items())
    d = Daemon(tmp_path, config=robot_config(faults=f"[hardware.emulated_feedback_faults]\n{table}"))
    try:
        for fault, name in wires.items():
            run = calibrate(d, "--operator", "sim", "--joint", name, "--no-imu")
            assert run.returncode == 1, run.stdout + run.stderr
            assert FAULTS[fault] in run.stdout, run.stdout
            said = run.stdout.split(FAULTS[fault])[1].splitlines()[0]
            assert "check" in said or "wire is loose" in said, "with advice"
            assert re.search(r"nothing (was )?saved", run.stdout, re.IGNORECASE)
            assert powered(d) == [] and d.status()["mode"] == "relax"
        assert not (tmp_path / "calibration.json").exists()
        draft = load_draft(tmp_path / "calibration.json")
        assert draft is None or not set(draft.joints) & set(wires.values()), "a refused joint is not kept"
    finally:
        d.stop()


def test_killing_the_wizard_relaxes_and_the_next_one_resumes(robot: Daemon) -> None:
    joints = ["r_knee_r_shin", "l_knee_l_shin", "torso_l_shoulder"]
    args = ["--operator", "sim", "--no-imu", *(f"--joint={n}" for n in joints)]
    wizard = start_wizard(robot, *args)
    try:
        wait_until("the first joint is kept", lambda: load_draft(robot.tmp / "calibration.json") is not None)
        wait_until("the wizard powers the next joint", lambda: powered(robot) == [joints[1]], timeout=30)
        assert robot.status()["mode"] == "calibrate"
        wizard.kill()  # SIGKILL: no goodbye; the daemon sees the connection drop
        wizard.wait(10)
        # the mode changes at once, the powered servos as the next tick is published
        wait_until(
            "the daemon relaxes every servo",
            lambda: robot.status()["mode"] == "relax" and powered(robot) == [],
            timeout=5,
        )
    finally:
        wizard.kill()
    assert robot.ctl("stand") == 0, "back in the normal modes"
    # Standing on servos never calibrated, some mounted mirrored, they cannot follow their
    # targets: the tracking monitor relaxes the robot and says it may be miscalibrated.
    wait_until("the tracking fault", lambda: "tracking" in [f["code"] for f in robot.status()["faults"]], 10)
    assert robot.ctl("stand") != 0, "the fault is latched"
    again = calibrate(robot, *args, "--yes")  # calibrating is the fix: not refused
    assert "Resume it? -> y" in again.stdout, again.stdout
    assert f"Joint 1 of 2: {JOINTS[9].role}" in again.stdout, "the kept joint is not done again"
    # Three of 16 joints on a robot never calibrated before: kept, not saved.
    assert again.returncode == 1 and "Nothing was saved" in again.stdout
    assert set(load_draft(robot.tmp / "calibration.json").joints) == set(joints)  # type: ignore[union-attr]
    assert not (robot.tmp / "calibration.json").exists()
    assert "tracking" in [f["code"] for f in robot.status()["faults"]], "nothing saved: the fault stays"


def test_ctrl_c_stops_the_wizard_cleanly(robot: Daemon) -> None:
    wizard = start_wizard(robot, "--operator", "sim", "--no-imu", "--joint", "l_knee_l_shin")
    try:
        wait_until("a joint is powered", lambda: powered(robot) != [])
        wizard.send_signal(signal.SIGINT)
        out, _ = wizard.communicate(timeout=10)
    finally:
        wizard.kill()
    assert wizard.returncode == 130
    assert "interrupted: servos relaxed, nothing saved" in out
    assert robot.status()["mode"] == "relax" and powered(robot) == []


def test_killing_the_daemon_mid_session_loses_no_calibration(tmp_path: Path) -> None:
    d = Daemon(tmp_path, config=robot_config())
    wizard = start_wizard(
        d, "--operator", "sim", "--no-imu", "--joint=r_knee_r_shin", "--joint=l_knee_l_shin"
    )
    try:
        wait_until("one joint is kept", lambda: load_draft(tmp_path / "calibration.json") is not None)
        wait_until("the second joint moves", lambda: powered(d) == ["l_knee_l_shin"], timeout=30)
        d.proc.kill()  # SIGKILL, mid-move
        out, _ = wizard.communicate(timeout=10)
    finally:
        wizard.kill()
        d.stop()
    last = out.strip().splitlines()[-1]
    assert wizard.returncode == 1 and last.startswith("plenctl: error:") and "plend at" in last, out
    assert "nothing saved; 1 finished joint(s) are in its draft" in out
    assert not (tmp_path / "calibration.json").exists(), "no file, so certainly no partial one"
    assert set(load_draft(tmp_path / "calibration.json").joints) == {"r_knee_r_shin"}  # type: ignore[union-attr]
    (tmp_path / ".calibration.json.leftover.tmp").write_text("{half a fi")  # as a kill mid-write leaves
    d = Daemon(tmp_path, config=robot_config())
    try:
        assert not list(tmp_path.glob(".calibration.json.*.tmp")), "leftover temporary files are removed"
        assert d.status()["mode"] == "relax"
    finally:
        d.stop()


def test_calibration_mode_lets_only_the_wizard_move_one_joint(robot: Daemon) -> None:
    wizard = Client(robot.socket)
    try:
        info = wizard.request("calibrate_begin")
        assert {j["name"] for j in info["joints"]} == set(WIRED) and info["truth"] is True
        assert robot.status()["mode"] == "calibrate" and powered(robot) == []
        with pytest.raises(ClientError, match="another 'plenctl calibrate'"):
            other = Client(robot.socket)
            try:
                other.request("calibrate_begin")
            finally:
                other.close()
        assert robot.ctl("stand") == 1 and robot.ctl("gait", "sine") == 1, "normal modes wait"
        with pytest.raises(ClientError, match="outside its calibration-safe range"):
            wizard.request("calibrate_move", joint="r_knee_r_shin", angle=math.radians(45))
        wizard.request("calibrate_move", joint="r_knee_r_shin", angle=math.radians(10))
        wait_until("the knee is powered", lambda: powered(robot) == ["r_knee_r_shin"], timeout=5)
        wizard.request("calibrate_move", joint="l_knee_l_shin", angle=0.0)
        wait_until("only the other knee is", lambda: powered(robot) == ["l_knee_l_shin"], timeout=5)
        assert robot.ctl("relax") == 0, "relax always works and ends the session"
        # the mode changes at once, the powered servos as the next tick is published
        wait_until(
            "every servo is relaxed",
            lambda: robot.status()["mode"] == "relax" and powered(robot) == [],
            timeout=5,
        )
        with pytest.raises(ClientError, match="no calibration session"):
            wizard.request("calibrate_state")
    finally:
        wizard.close()


def test_answers_file_gives_zeros_measured_elsewhere(robot: Daemon, tmp_path: Path) -> None:
    truth = miscalibrated(SEED).joints["r_knee_r_shin"]
    answers = tmp_path / "answers.toml"
    answers.write_text(
        "resume = false\nhorns = false\nsave = true\n"
        f"[joints.r_knee_r_shin]\noffset_deg = {truth.offset_deg:.2f}\ndirection = {truth.direction}\n"
    )
    run = calibrate(robot, "--answers", str(answers), "--joint", "r_knee_r_shin")
    assert "Zero and direction from the answers" in run.stdout, run.stdout + run.stderr
    assert "Fit:" in run.stdout and run.returncode == 1  # one joint of a never-calibrated robot: kept
    kept = load_draft(robot.tmp / "calibration.json").joints["r_knee_r_shin"]  # type: ignore[union-attr]
    assert kept.offset_deg == pytest.approx(truth.offset_deg, abs=0.01) and kept.fit_error_deg < 1.0
    missing = tmp_path / "partial.toml"
    missing.write_text("horns = false\n")
    run = calibrate(robot, "--answers", str(missing), "--joint", "l_knee_l_shin")
    assert run.returncode == 1 and "give no zero for l_knee_l_shin" in run.stderr, run.stdout + run.stderr
    assert robot.status()["mode"] == "relax"


def test_the_simulation_backend_has_nothing_to_calibrate(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    try:
        run = calibrate(d, "--yes")
        assert run.returncode == 1 and "calibration needs the hardware backend" in run.stderr
        assert run.stderr.count("\n") == 1
    finally:
        d.stop()


def test_stopping_the_daemon_mid_calibration_relaxes_at_once(robot: Daemon) -> None:
    wizard = start_wizard(robot, "--operator", "sim", "--no-imu", "--joint", "torso_r_shoulder")
    try:
        wait_until("a joint is powered", lambda: powered(robot) != [])
        began = time.monotonic()
        code, log = robot.stop()  # SIGTERM, as systemctl stop sends
        took = time.monotonic() - began
        wizard.communicate(timeout=10)
    finally:
        wizard.kill()
    assert code == 0 and took < 2.0, f"exit {code} after {took:.1f} s"
    assert "calibration mode left: stored calibration kept" in log and "stopped: servos relaxed" in log
    assert wizard.returncode == 1, "the wizard says it lost the daemon"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--imu-only", "--joint", "r_knee_r_shin"], "--imu-only calibrates no joint"),
        (["--joint", "r_elbow", "--yes"], "no servo joint r_elbow; joints: rb_servo_r_hip"),
        (["--answers", "/nonexistent/answers.toml"], "answers file /nonexistent/answers.toml does not exist"),
    ],
)
def test_bad_wizard_options_are_one_line_before_anything_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    from plend.plenctl import main as plenctl

    assert plenctl(["--socket", str(tmp_path / "none.sock"), "calibrate", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"plenctl: error: {said}") and err.count("\n") == 1, err
