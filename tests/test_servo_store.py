"""The calibration file's servo section: old files still load, servos round-trip and are
shown, bad values are refused, and the simulation takes them as its servo model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from calibration.describe import describe
from calibration.drafts import draft_from_json
from calibration.store import (
    CALIBRATION_VERSION,
    CalibrationError,
    CalibrationRecord,
    JointRecord,
    ServoRecord,
    load,
    save,
    wired_joint_names,
)
from plend.core.config import Config, replace_section
from plend.core.errors import ConfigError
from plend.core.servo_source import apply_servo_model
from plend.main import main as plend_main
from plend.model.robot import joint_index

WHEN = "2025-05-01T12:00:00+00:00"
KNEE = "r_knee_r_shin"


def joint_record() -> dict[str, Any]:
    return {
        "offset_deg": 9.0, "direction": 1, "pulse_min_us": 600.0, "pulse_max_us": 2800.0,
        "code_at_zero": 12000.0, "codes_per_rad": 5093.0, "fit_error_deg": 0.3, "hysteresis_deg": 0.4,
        "range_rad": [-0.8, 1.2], "calibrated_at": WHEN,
    }  # fmt: skip


def servo_record(**overrides: Any) -> dict[str, Any]:
    values = {
        "delay_ms": 24.5, "time_constant_ms": 14.0, "dead_band_deg": 0.6, "backlash_deg": 1.7,
        "speed_rad_s": 7.5, "speed_reached": True, "fit_error_deg": 0.12,
        "spread": {"delay_ms": 1.0, "time_constant_ms": 0.5, "dead_band_deg": 0.05, "backlash_deg": 0.04,
                   "speed_rad_s": 0.1},
        "rate_hz": 50.0, "substeps": 3, "identified_at": WHEN,
        "feedback_scale": 1.0, "feedback_shift_deg": 0.0,
    }  # fmt: skip
    return {**values, **overrides}


def version_1_file() -> dict[str, Any]:
    """A file as plend wrote it before servo identification."""
    return {
        "version": 1, "robot_id": "plen-01", "created": WHEN, "imu_offsets": None, "imu_calib_status": None,
        "joints": {name: joint_record() for name in wired_joint_names()},
    }  # fmt: skip


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_file_from_before_servo_identification_still_loads_and_is_saved_in_the_new_version(
    tmp_path: Path,
) -> None:
    old = write(tmp_path / "calibration.json", version_1_file())
    record = load(old)
    assert record.version == CALIBRATION_VERSION == 3 and record.servos == {}
    assert record.joints[KNEE] == JointRecord(**{**joint_record(), "range_rad": (-0.8, 1.2)})
    save(old, record)
    again = json.loads(old.read_text())
    assert again["version"] == 3 and again["servos"] == {}
    assert load(old) == record
    assert "servos as identified" not in describe(record)


def test_an_unfinished_session_of_the_old_version_can_still_be_resumed() -> None:
    draft = {"version": 1, "robot_id": "plen-01", "started": WHEN, "joints": {KNEE: joint_record()},
             "imu_offsets": None, "imu_calib_status": None}  # fmt: skip
    assert KNEE in draft_from_json(draft).joints


def test_a_file_with_servos_of_version_2_loads_with_its_feedback_lines_as_swept(tmp_path: Path) -> None:
    as_written = {k: v for k, v in servo_record().items() if not k.startswith("feedback_")}
    data = {**version_1_file(), "version": 2, "servos": {KNEE: as_written}}
    path = write(tmp_path / "calibration.json", data)
    record = load(path)
    assert record.version == 3
    assert record.servos[KNEE].feedback_scale == 1.0 and record.servos[KNEE].feedback_shift_deg == 0.0
    assert record.joints[KNEE].codes_per_rad == 5093.0
    save(path, record)
    again = json.loads(path.read_text())
    assert again["version"] == 3 and again["servos"][KNEE]["feedback_scale"] == 1.0
    assert load(path) == record
    assert "as swept" in describe(record)


def test_a_refined_feedback_line_is_shown_beside_its_servo(tmp_path: Path) -> None:
    refined = servo_record(feedback_scale=1.017, feedback_shift_deg=-0.42)
    path = write(tmp_path / "calibration.json", {**version_1_file(), "version": 3, "servos": {KNEE: refined}})
    knee = next(line for line in describe(load(path)).splitlines() if line.startswith(KNEE) and "[" in line)
    assert knee.endswith("slope +1.7 %, -0.42 deg at 0")


def test_identified_servos_round_trip_and_are_shown(tmp_path: Path) -> None:
    servos = {KNEE: servo_record(), "torso_r_shoulder": servo_record(speed_rad_s=9.0, speed_reached=False)}
    data = {**version_1_file(), "version": 3, "servos": servos}
    path = write(tmp_path / "calibration.json", data)
    record = load(path)
    assert record.servos[KNEE] == ServoRecord(**servo_record())
    table = describe(record)
    assert "servos as identified (for the simulation at 50 Hz, 3 substeps" in table
    knee = next(line for line in table.splitlines() if line.startswith(KNEE) and "[" in line)
    assert "24.5 [ 1.0]" in knee and "14.0 [ 0.5]" in knee and "1.70 [0.04]" in knee
    assert ">=9.0" in table, "a speed never reached is shown as a lower bound"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"delay_ms": 400.0}, f"servo {KNEE}: delay_ms 400.0 is outside 0..150"),
        ({"backlash_deg": -1.0}, f"servo {KNEE}: backlash_deg -1.0 is outside 0..5"),
        ({"speed_reached": "yes"}, "speed_reached must be true or false"),
        ({"spread": {"delay_ms": 1.0}}, "spread must give delay_ms, time_constant_ms"),
        ({"substeps": 0}, "substeps must be an integer in 1..100"),
        ({"identified_at": "last week"}, "identified_at must be an ISO 8601 time"),
        ({"time_constant_ms": float("nan")}, "time_constant_ms is nan, not a finite number"),
        ({"feedback_scale": 1.5}, "feedback_scale 1.5 is outside 0.909..1.1"),
        ({"feedback_shift_deg": -30.0}, "feedback_shift_deg -30.0 is beyond"),
    ],
)
def test_an_implausible_servo_record_is_refused_naming_it(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    data = {**version_1_file(), "version": 3, "servos": {KNEE: servo_record(**change)}}
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load(write(tmp_path / "calibration.json", data))
    assert "\n" not in str(caught.value) and "rerun the calibration wizard" in str(caught.value)


def test_a_servo_of_a_joint_without_a_servo_is_refused(tmp_path: Path) -> None:
    data = {**version_1_file(), "version": 3, "servos": {"re_servo_r_elbow": servo_record()}}
    with pytest.raises(CalibrationError, match="servos must map wired joint names"):
        load(write(tmp_path / "calibration.json", data))


# -- the simulation's servo model -----------------------------------------------------------


def config_with(tmp_path: Path, servos: dict[str, Any] | None, source: str = "calibration") -> Config:
    if servos is not None:
        write(tmp_path / "calibration.json", {**version_1_file(), "version": 3, "servos": servos})
    config = replace_section(Config(), "paths", state_dir=str(tmp_path))
    return replace_section(config, "sim", servo_model=source)


def test_the_simulation_drives_each_joint_with_its_identified_servo(tmp_path: Path) -> None:
    config = apply_servo_model(config_with(tmp_path, {KNEE: servo_record()}))
    assert config.sim.servo.joints[KNEE] == {
        "delay_ms": 24.5, "time_constant_ms": 14.0, "dead_band_deg": 0.6, "backlash_deg": 1.7,
        "speed_rad_s": 7.5,
    }  # fmt: skip
    table = config.sim.servo_table()
    knee = joint_index(KNEE)
    assert table.delay_s[knee] == pytest.approx(0.0245) and table.delay_s[0] == pytest.approx(
        config.sim.servo.delay_ms / 1000
    )


def test_a_servo_model_that_cannot_be_used_is_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sim.servo_model: calibration file .*calibration.json: not found"):
        apply_servo_model(config_with(tmp_path, None))
    with pytest.raises(
        ConfigError, match="holds no identified servos; measure them with 'plenctl calibrate --servos'"
    ):
        apply_servo_model(config_with(tmp_path, {}))
    with pytest.raises(ConfigError, match=r"sim\.servo_model must be"):
        replace_section(Config(), "sim", servo_model=3)


def test_plend_run_takes_a_servo_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pybullet")
    config_with(tmp_path, {KNEE: servo_record()})
    code = plend_main(["run", "--fast", "--duration", "0.5", "--summary", "json",
                       "--servo-model", str(tmp_path / "calibration.json")])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["world"]["servo"]["joints"][KNEE]["delay_ms"] == 24.5
    assert (
        plend_main(["run", "--fast", "--duration", "0.5", "--servo-model", str(tmp_path / "none.json")]) == 2
    )


def test_the_record_keeps_the_servos_it_was_given() -> None:
    joints = {n: JointRecord(**{**joint_record(), "range_rad": (-0.8, 1.2)}) for n in wired_joint_names()}
    record = CalibrationRecord(
        CALIBRATION_VERSION, "r", WHEN, joints, servos={KNEE: ServoRecord(**servo_record())}
    )
    assert dataclasses.asdict(record)["servos"][KNEE]["delay_ms"] == 24.5
