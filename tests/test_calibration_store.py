"""The calibration file: round trips, atomic saves that survive a crash, clear refusals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibration.describe import describe
from calibration.store import (
    CALIBRATION_VERSION,
    CalibrationError,
    CalibrationRecord,
    JointRecord,
    backup_path,
    from_json,
    load,
    load_optional,
    load_servo_calibration,
    save,
    to_json,
    to_servo_calibration,
    wired_joint_names,
)
from plend.core.errors import ConfigError, PlendError
from plend.model.servo_map import SERVO_FIELDS, JointCalibration, angle_to_pulse_us, code_to_angle

ROOT = Path(__file__).resolve().parents[1]
WHEN = "2025-05-01T12:00:00+00:00"


def joint_record(**overrides: Any) -> JointRecord:
    values: dict[str, Any] = {
        "offset_deg": 9.0,
        "direction": 1,
        "pulse_min_us": 600.0,
        "pulse_max_us": 2800.0,
        "code_at_zero": 12000.0,
        "codes_per_rad": 5093.0,
        "fit_error_deg": 0.3,
        "hysteresis_deg": 0.4,
        "range_rad": (-0.8, 1.2),
        "calibrated_at": WHEN,
    }
    return JointRecord(**{**values, **overrides})


def make_record(
    names: tuple[str, ...] | None = None, robot_id: str = "plen-01", **top: Any
) -> CalibrationRecord:
    names = wired_joint_names() if names is None else names
    joints = {n: joint_record(offset_deg=i - 8.0, direction=1 - 2 * (i % 2)) for i, n in enumerate(names)}
    values: dict[str, Any] = {"imu_offsets": tuple(range(22)), "imu_calib_status": 0xFF, **top}
    return CalibrationRecord(CALIBRATION_VERSION, robot_id, WHEN, joints, **values)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "calibration.json"


def test_save_then_load_gives_the_same_record(path: Path) -> None:
    record = make_record()
    save(path, record)
    assert load(path) == record
    assert load_optional(path) == record


def test_the_file_is_sorted_indented_json(path: Path) -> None:
    save(path, make_record())
    text = path.read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert '\n  "version": 3' in text


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    offset=st.floats(-45, 45),
    direction=st.sampled_from([1, -1]),
    pulses=st.tuples(st.floats(400, 1500), st.floats(1001, 1500)),
    code_at_zero=st.floats(-32768, 32767),
    codes_per_rad=st.floats(300, 1e5) | st.floats(-1e5, -300),
    errors=st.tuples(st.floats(0, 10), st.floats(0, 10)),
    sweep=st.tuples(st.floats(-3.1, 0), st.floats(0.01, 3.1)),
    imu=st.none() | st.lists(st.integers(0, 255), min_size=22, max_size=22).map(tuple),
)
def test_any_valid_record_round_trips_exactly(
    offset: float,
    direction: int,
    pulses: tuple[float, float],
    code_at_zero: float,
    codes_per_rad: float,
    errors: tuple[float, float],
    sweep: tuple[float, float],
    imu: tuple[int, ...] | None,
) -> None:
    joint = joint_record(
        offset_deg=offset,
        direction=direction,
        pulse_min_us=pulses[0],
        pulse_max_us=pulses[0] + pulses[1],
        code_at_zero=code_at_zero,
        codes_per_rad=codes_per_rad,
        fit_error_deg=errors[0],
        hysteresis_deg=errors[1],
        range_rad=sweep,
    )
    record = CalibrationRecord(CALIBRATION_VERSION, "r", WHEN, {"j": joint}, imu_offsets=imu)
    assert from_json(json.loads(to_json(record))) == record


def test_save_keeps_the_previous_file_as_backup(path: Path) -> None:
    first, second, third = (make_record(robot_id=name) for name in ("first", "second", "third"))
    save(path, first)
    assert not backup_path(path).exists()
    save(path, second)
    assert backup_path(path).name == "calibration.json.bak"
    assert load(backup_path(path)) == first and load(path) == second
    save(path, third)
    assert load(backup_path(path)) == second and load(path) == third
    assert sorted(p.name for p in path.parent.iterdir()) == ["calibration.json", "calibration.json.bak"]


@pytest.mark.parametrize("failing_call", [1, 2], ids=["backup-rename", "final-rename"])
def test_a_crash_during_save_leaves_the_old_file(
    path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    old = make_record(robot_id="old")
    save(path, old)
    real_replace, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        save(path, make_record(robot_id="new"))
    assert load(path) == old
    assert not list(path.parent.glob("*.tmp")), "temporary files are removed"


def test_a_crash_before_any_file_existed_leaves_none(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        save(path, make_record())
    assert load_optional(path) is None
    assert not list(path.parent.iterdir())


_SAVER = """
import sys
from calibration.store import CALIBRATION_VERSION, CalibrationRecord, JointRecord, save
names = [f"j{i}" for i in range(int(sys.argv[2]))]
def record(robot_id):
    joint = JointRecord(9.0, 1, 600.0, 2800.0, 12000.0, 5093.0, 0.3, 0.4, (-0.8, 1.2), "2025-05-01")
    return CalibrationRecord(CALIBRATION_VERSION, robot_id, "2025-05-01", {n: joint for n in names})
records = [record("A" * 1000), record("B" * 1000)]
i = 0
while True:
    save(sys.argv[1], records[i % 2], joints_expected=names)
    print("saved", flush=True)
    i += 1
"""


def test_killing_the_writer_mid_save_leaves_a_complete_file(path: Path) -> None:
    """A writer saving a megabyte-sized file over and over, killed at moments spread over a save."""
    joints = 4000  # about 1.4 MB per file, so a kill often lands inside a write
    names = [f"j{i}" for i in range(joints)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for delay in (0.0, 0.03, 0.07, 0.12, 0.2):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path), str(joints)], stdout=subprocess.PIPE, env=env, cwd=ROOT
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"saved\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert load(path, joints_expected=names).robot_id in ("A" * 1000, "B" * 1000)


def _joint(data: dict[str, Any], name: str = "r_knee_r_shin") -> dict[str, Any]:
    joint: dict[str, Any] = data["joints"][name]
    return joint


Mutation = Callable[[dict[str, Any]], object]

BAD_FILES: list[tuple[str, Mutation | str, str]] = [
    ("not json", "{not json", "is not JSON"),
    ("empty", "", "is not JSON"),
    ("a list", "[]", "does not hold a JSON object"),
    ("NaN", to_json(make_record()).replace('"offset_deg": -5.0', '"offset_deg": NaN'), "not a finite number"),
    ("newer version", lambda d: d.update(version=4), "format version 4"),
    ("no version", lambda d: d.pop("version"), "no format version"),
    ("unknown joint", lambda d: d["joints"].update(re_servo_r_elbow=_joint(d)), "unknown: re_servo_r_elbow"),
    ("missing joint", lambda d: d["joints"].pop("r_knee_r_shin"), "missing: r_knee_r_shin"),
    ("direction 0", lambda d: _joint(d).update(direction=0), "direction must be 1 or -1"),
    ("direction true", lambda d: _joint(d).update(direction=True), "direction must be 1 or -1"),
    ("narrow pulses", lambda d: _joint(d).update(pulse_min_us=1400, pulse_max_us=1600), "pulse range"),
    ("pulses swapped", lambda d: _joint(d).update(pulse_min_us=2800, pulse_max_us=600), "pulse range"),
    ("flat feedback", lambda d: _joint(d).update(codes_per_rad=0.5), "too close to zero"),
    ("steep feedback", lambda d: _joint(d).update(codes_per_rad=1e308), "implausibly steep"),
    ("steep negative", lambda d: _joint(d).update(codes_per_rad=-2e5), "implausibly steep"),
    ("big offset", lambda d: _joint(d).update(offset_deg=50.0), "beyond +-45 deg"),
    ("offset as text", lambda d: _joint(d).update(offset_deg="9"), "must be a number"),
    ("code off scale", lambda d: _joint(d).update(code_at_zero=40000), "outside the ADC's range"),
    ("negative error", lambda d: _joint(d).update(fit_error_deg=-1.0), "fit_error_deg"),
    ("reversed sweep", lambda d: _joint(d).update(range_rad=[1.0, -1.0]), "range_rad"),
    ("bad time", lambda d: _joint(d).update(calibrated_at="yesterday"), "ISO 8601"),
    ("missing field", lambda d: _joint(d).pop("hysteresis_deg"), "missing fields hysteresis_deg"),
    ("unknown field", lambda d: d.update(colour="red"), "unknown fields colour"),
    ("short imu", lambda d: d.update(imu_offsets=list(range(21))), "22 bytes"),
    ("imu not bytes", lambda d: d.update(imu_offsets=[300] * 22), "imu_offsets byte"),
    ("imu status", lambda d: d.update(imu_calib_status=256), "imu_calib_status"),
    ("no robot id", lambda d: d.update(robot_id=""), "robot_id"),
]


@pytest.mark.parametrize(("bad", "fragment"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_an_untrustworthy_file_is_refused_in_one_line(path: Path, bad: Mutation | str, fragment: str) -> None:
    if isinstance(bad, str):
        text = bad
    else:
        data = json.loads(to_json(make_record()))
        bad(data)
        text = json.dumps(data)
    path.write_text(text)
    with pytest.raises(CalibrationError) as caught:
        load(path)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError | ValueError | PlendError)
    assert fragment in message and str(path) in message and "\n" not in message
    assert "calibration wizard" in message
    with pytest.raises(CalibrationError):
        load_servo_calibration(path)


def test_a_missing_file_is_none_or_an_error_naming_the_next_step(path: Path) -> None:
    assert load_optional(path) is None
    assert load_servo_calibration(path) is None
    with pytest.raises(CalibrationError, match="not found; run the calibration wizard"):
        load(path)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone.json")


def _loop(path: Path) -> None:
    other = path.with_name(path.name + ".other")
    other.symlink_to(path)
    path.symlink_to(other)


NOT_A_FILE: dict[str, tuple[Callable[[Path], object], str]] = {
    "dangling symlink": (_dangling, "a symbolic link to a missing file"),
    "symlink loop": (_loop, "a symbolic link loop"),
    "directory": (lambda p: p.mkdir(), "is a directory, not a regular file"),
    "fifo": (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),
}


@pytest.mark.parametrize("case", NOT_A_FILE.values(), ids=NOT_A_FILE.keys())
def test_something_that_is_not_a_file_is_a_fault_not_a_missing_calibration(
    path: Path, case: tuple[Callable[[Path], object], str]
) -> None:
    from calibration.drafts import load_draft
    from calibration.store import load_for_robot

    make, fragment = case
    make(path)
    with pytest.raises(CalibrationError, match="calibration wizard") as caught:
        load_optional(path)  # not None: the robot must not drive on the defaults
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert fragment in (load_for_robot(path, "plen-01").problem or "")
    make(path.with_suffix(".draft.json"))  # an unusable draft is set aside, never waited on
    assert load_draft(path) is None


def test_files_are_group_readable(path: Path) -> None:
    from calibration.drafts import Draft, draft_path, save_draft

    old = os.umask(0o077)
    try:
        save(path, make_record())
        save(path, make_record())
        save_draft(path, Draft("plen-01", WHEN, {}))
    finally:
        os.umask(old)
    for written in (path, backup_path(path), draft_path(path)):
        assert written.stat().st_mode & 0o777 == 0o640, written


def test_the_refusal_points_at_the_backup_when_there_is_one(path: Path) -> None:
    save(path, make_record())
    save(path, make_record())
    path.write_text("{")
    with pytest.raises(CalibrationError, match=r"restore the previous one from .*calibration\.json\.bak"):
        load(path)


def test_a_record_for_other_joints_is_not_saved(path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"refusing to write .*missing: .*r_hip_r_thigh"):
        save(path, make_record(names=("rb_servo_r_hip",)))
    assert not path.exists()
    save(path, make_record(names=("a", "b")), joints_expected=("a", "b"))
    assert set(load(path, joints_expected=["b", "a"]).joints) == {"a", "b"}


def test_the_hardware_backend_gets_the_same_numbers(path: Path) -> None:
    record = make_record()
    save(path, record)
    cal = load_servo_calibration(path)
    assert cal is not None and cal == to_servo_calibration(record, source=path)
    assert cal.measured and cal.source == str(path) and cal.imu_offsets == tuple(range(22))
    assert set(cal.joints) == set(wired_joint_names())
    for name, j in record.joints.items():
        same = JointCalibration(
            j.offset_deg, j.direction, j.pulse_min_us, j.pulse_max_us, j.code_at_zero, j.codes_per_rad
        )
        assert angle_to_pulse_us(0.3, cal.joints[name]) == angle_to_pulse_us(0.3, same)
        assert code_to_angle(13000.0, cal.joints[name]) == code_to_angle(13000.0, same)


def test_describe_shows_every_joint_and_what_changed() -> None:
    before = make_record(imu_offsets=None, imu_calib_status=None)
    text = describe(before)
    lines = text.splitlines()
    assert "plen-01" in lines[0] and "IMU offsets not stored" in lines[0]
    assert all(name in text for name in wired_joint_names()) and "changed" not in text
    assert lines[2].split()[:3] == ["rb_servo_r_hip", "-8.0", "+1"] and "600-2800" in lines[2]
    assert "-46..+69" in lines[2]

    joints = dict(before.joints)
    knee = joints["r_knee_r_shin"]
    joints["r_knee_r_shin"] = joint_record(offset_deg=knee.offset_deg + 1.5, direction=-knee.direction)
    joints["r_hip_r_thigh"] = joint_record(offset_deg=-7.0, direction=-1, fit_error_deg=0.8)  # fit only
    after = CalibrationRecord(CALIBRATION_VERSION, "plen-01", WHEN, joints, tuple(range(22)), 0b11_10_01_00)
    rows = {line.split()[0]: line for line in describe(after, previous=before).splitlines()[2:]}
    assert "sys 3/3 gyro 2/3 accel 1/3 mag 0/3" in describe(after)
    assert rows["r_knee_r_shin"].endswith("offset +1.5, direction flipped")
    assert rows["r_hip_r_thigh"].endswith("fit 0.30->0.80")
    assert rows["rb_servo_r_hip"].endswith("  -")


def test_describe_names_joints_added_and_dropped() -> None:
    text = describe(make_record(names=("a", "new")), previous=make_record(names=("a", "old")))
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert rows["new"].endswith("new") and "only in the previous calibration" in rows["old"]


def test_the_first_save_makes_the_state_directory(tmp_path: Path) -> None:
    # A fresh user's ~/.local/state/plend does not exist until something is kept there.
    path = tmp_path / "state" / "plend" / "emulated" / "seed-11" / "calibration.json"
    save(path, make_record())
    assert load(path) == make_record()


def test_the_file_and_the_hardware_backend_share_one_joint_calibration_and_its_checks() -> None:
    assert JointRecord is JointCalibration
    with pytest.raises(CalibrationError, match="too close to zero"):
        JointCalibration(codes_per_rad=100.0)  # what a file may not hold, the daemon may not drive
    default = JointCalibration()
    assert not default.measured and default.servo()["codes_per_rad"] == pytest.approx(16000 / math.pi)
    assert joint_record().measured and set(joint_record().servo()) == set(SERVO_FIELDS)
