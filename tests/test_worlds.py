"""The [sim] world keys and the robustness suite: validation, drawing, printing as config."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pytest

from plend.core.config import from_dict
from plend.core.errors import ConfigError
from plend.main import main
from plend.model.sim_world import ServoModel, SimWorld, world_dict
from plend.model.worlds import FACTORS, draw_world, world_toml

BAD_WORLD_KEYS = [
    (
        {"sole_height_left_mm": 11.0},
        "sim.sole_height_left_mm = 11.0 is out of range; use a value in [-10.0, 10.0]",
    ),
    ({"sole_edge_radius_mm": -1}, "sim.sole_edge_radius_mm"),
    ({"friction": float("nan")}, "sim.friction must be a number"),
    ({"rolling_friction": 0.5}, "sim.rolling_friction = 0.5 is out of range"),
    ({"torso_com_mm": [0, 0]}, "sim.torso_com_mm must be a list of 3 numbers"),
    ({"torso_com_mm": [0, 0, 11]}, "sim.torso_com_mm[] = 11 is out of range"),
    ({"imu_bias_deg": "1 2 3"}, "sim.imu_bias_deg must be a list of 3 numbers"),
    ({"floor_tilt_deg": 12}, "sim.floor_tilt_deg = 12 is out of range; use a value in [0.0, 10.0]"),
    ({"push_impulse_ns": -0.1}, "sim.push_impulse_ns"),
    ({"urdf": 3}, "sim.urdf must be a file path"),
    ({"servo": {"delay_ms": 200}}, "sim.servo.delay_ms = 200 is out of range; use a value in [0.0, 150.0]"),
    ({"servo": {"backlash": 1}}, "unknown config key 'sim.servo.backlash'"),
    ({"servo": {"joints": {"r_knee": {"backlash_deg": 1}}}}, "sim.servo.joints.r_knee: unknown joint"),
    (
        {"servo": {"joints": {"r_knee_r_shin": {"lag": 1}}}},
        "sim.servo.joints.r_knee_r_shin.lag: unknown servo key",
    ),
    (
        {"servo": {"joints": {"r_knee_r_shin": {"torque_nm": 0}}}},
        "sim.servo.joints.r_knee_r_shin.torque_nm = 0",
    ),
    ({"servo": {"joints": {"r_knee_r_shin": 2}}}, "sim.servo.joints.r_knee_r_shin must be a table"),
]


@pytest.mark.parametrize(("sim", "message"), BAD_WORLD_KEYS, ids=[m for _, m in BAD_WORLD_KEYS])
def test_a_bad_world_key_is_refused_naming_key_and_range(sim: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"sim": sim})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_each_factor_is_a_key_usable_on_its_own() -> None:
    world = from_dict(
        {"sim": {"sole_height_right_mm": -5.5, "servo": {"joints": {"r_knee_r_shin": {"backlash_deg": 2}}}}}
    ).sim
    assert world.sole_height_right_mm == -5.5 and world.sole_height_left_mm == 0.0
    table = world.servo_table()
    knee = 3
    assert table.backlash_rad[knee] == pytest.approx(np.radians(2.0))
    assert table.backlash_rad[2] == pytest.approx(np.radians(ServoModel().backlash_deg))
    # Speed and torque come from [sim] unless a joint overrides them.
    assert table.speed_rad_s[knee] == world.servo_speed_rad_s


def test_same_world_number_same_world_and_different_numbers_differ() -> None:
    assert draw_world(7) == draw_world(7)
    assert draw_world(7) != draw_world(8)
    assert draw_world(7).seed == 7


def test_worlds_stay_inside_the_issue_ranges() -> None:
    for n in range(40):
        w = draw_world(n)
        assert -6 <= w.sole_height_right_mm <= 6 and -6 <= w.sole_height_left_mm <= 6
        assert 0.4 <= w.friction <= 1.0
        assert w.mass_jitter == 0.2
        assert max(abs(v) for v in w.torso_com_mm) <= 6
        assert max(abs(v) for v in w.imu_bias_deg) <= 2
        assert 0 <= w.floor_tilt_deg <= 3
        assert 0 <= w.servo.delay_ms <= 40
        t = w.servo_table()
        assert np.degrees(t.backlash_rad).max() <= 2 and np.degrees(np.abs(t.offset_rad)).max() <= 1.5
        assert t.speed_rad_s.min() >= 0.7 * 9.5 and t.speed_rad_s.max() <= 1.3 * 9.5
        assert t.torque_nm.min() >= 0.7 * 0.14 and t.torque_nm.max() <= 1.3 * 0.14
    shapes = {draw_world(n).sole_edge_radius_mm > 0 for n in range(40)}
    assert shapes == {True, False}, "both flat and rounded soles are drawn"


def test_a_factor_keeps_its_value_whatever_else_is_drawn() -> None:
    alone = draw_world(5, factors=["sole_height"])
    together = draw_world(5)
    assert (alone.sole_height_right_mm, alone.sole_height_left_mm) == (
        together.sole_height_right_mm,
        together.sole_height_left_mm,
    )
    # Nothing else was drawn when the factor is alone.
    nominal = dataclasses.replace(SimWorld(), seed=5)
    assert dataclasses.replace(alone, sole_height_right_mm=0.0, sole_height_left_mm=0.0) == nominal


def test_drawing_keeps_the_base_worlds_other_settings() -> None:
    base = SimWorld(urdf="/tmp/robot.urdf", substeps=4, fixed_base=True)
    w = draw_world(2, base)
    assert (w.urdf, w.substeps, w.fixed_base) == ("/tmp/robot.urdf", 4, True)


def test_a_printed_world_is_the_same_world_read_back() -> None:
    for n in (0, 1, 13):
        world = draw_world(n)
        assert from_dict(tomllib.loads(world_toml(world))).sim == world
    assert from_dict(tomllib.loads(world_toml(SimWorld(), only_changes=False))).sim == SimWorld()


def test_world_dict_is_plain_json_values() -> None:
    import json

    d = world_dict(draw_world(4))
    assert json.loads(json.dumps(d)) == d
    assert d["servo"]["delay_ms"] == draw_world(4).servo.delay_ms


def test_bad_world_numbers_and_factors_are_refused() -> None:
    with pytest.raises(ConfigError, match="world seed -1 is out of range"):
        draw_world(-1)
    with pytest.raises(ConfigError, match="unknown robustness factor 'soles'; choose from: sole_height"):
        draw_world(1, factors=["soles"])
    assert set(FACTORS) >= {"sole_height", "sole_shape", "servo_backlash", "push", "floor", "imu_bias"}


def test_plend_world_prints_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["world", "9", "--factors", "floor,push"]) == 0
    out = capsys.readouterr().out
    sim = tomllib.loads(out)["sim"]
    assert set(sim) == {"floor_tilt_deg", "floor_tilt_direction_deg", "push_impulse_ns", "push_at_s",
                        "push_direction_deg", "seed"}  # fmt: skip
    assert main(["world", "9", "--factors", "floors"]) == 2
    assert "unknown robustness factor 'floors'" in capsys.readouterr().err
    for empty in ("", ",,"):  # not the nominal world in disguise
        assert main(["world", "9", "--factors", empty]) == 2
        assert "names no factor" in capsys.readouterr().err


def test_dump_config_shows_the_drawn_world(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["--dump-config", "run", "--world-seed", "3", "--factors", "sole_height"]) == 0
    sim = json.loads(capsys.readouterr().out)["sim"]
    assert sim["sole_height_right_mm"] == draw_world(3).sole_height_right_mm
    assert main(["run", "--fast", "--factors", "push"]) == 2
    assert "--factors needs --world-seed" in capsys.readouterr().err
