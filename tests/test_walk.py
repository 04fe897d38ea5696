"""The simulated robot walking on the sine gait, nominal and in changed worlds."""

from __future__ import annotations

import pytest

from plend.core.config import Config, GaitConfig, SimWorld
from plend.daemon.headless import RunOptions, run

pytest.importorskip("pybullet")


def walk(
    speed: float = 0.5,
    duration: float = 20.0,
    turn: float = 0.0,
    side: float = 0.0,
    balance: bool = True,
    **world: object,
) -> dict:
    config = Config(sim=SimWorld(**world), gait=GaitConfig(balance=balance))  # type: ignore[arg-type]
    return run(config, RunOptions(speed=speed, duration_s=duration, fast=True, turn=turn, side=side))


@pytest.fixture(scope="module")
def nominal() -> dict:
    return walk(0.5)


def test_short_walk_moves_forward_and_ends_standing() -> None:
    summary = walk(0.5, duration=4.0)
    assert not summary["fell"]
    assert summary["distance_m"] > 0.05
    assert summary["ticks"] >= 200


def test_walks_straight_at_half_speed(nominal: dict) -> None:
    assert not nominal["fell"]
    assert nominal["distance_m"] >= 0.30
    assert abs(nominal["lateral_m"]) <= 0.15
    assert abs(nominal["yaw_deg"]) <= 20
    assert nominal["rate_hz"] == pytest.approx(50.0)
    assert nominal["safety_interventions"] == {"limit": 0, "slew": 0, "non_finite": 0}


def test_full_speed_walks_much_further(nominal: dict) -> None:
    fast = walk(1.0)
    assert not fast["fell"]
    assert fast["distance_m"] >= 1.3 * nominal["distance_m"]


def test_speed_zero_marches_in_place() -> None:
    summary = walk(0.0)
    assert not summary["fell"]
    assert abs(summary["distance_m"]) < 0.1


def test_walks_backwards() -> None:
    summary = walk(-0.5, duration=10.0)
    assert not summary["fell"]
    assert summary["distance_m"] < -0.1


ROBUSTNESS = {
    "low friction": {"friction": 0.5},
    "high friction": {"friction": 1.0},
    "masses +20%": {"mass_scale": 1.2},
    "masses -20%": {"mass_scale": 0.8},
    "masses jittered 20%": {"mass_jitter": 0.2, "seed": 11},
    "one tick delay": {"actuation_delay_ticks": 1},
    "all at once": {"friction": 0.5, "mass_jitter": 0.2, "seed": 5, "actuation_delay_ticks": 1},
}


@pytest.mark.parametrize("world", ROBUSTNESS.values(), ids=ROBUSTNESS.keys())
def test_keeps_walking_in_a_changed_world(world: dict) -> None:
    summary = walk(0.5, **world)
    assert not summary["fell"], summary
    assert summary["distance_m"] >= 0.2, summary


def test_same_seed_same_walk() -> None:
    a = walk(0.5, duration=3.0, mass_jitter=0.2, seed=3)
    b = walk(0.5, duration=3.0, mass_jitter=0.2, seed=3)
    assert a["distance_m"] == b["distance_m"] and a["yaw_deg"] == b["yaw_deg"]


def test_a_fall_ends_the_run_early_and_is_reported() -> None:
    summary = walk(0.5, duration=10.0, servo_torque_nm=0.02)  # servos far too weak to stand
    assert summary["fell"] is True
    assert summary["ticks"] < 100


@pytest.fixture(scope="module")
def turns() -> tuple[dict, dict]:
    return walk(0.5, turn=1.0), walk(0.5, turn=-1.0)


def test_turns_left_and_right_alike(turns: tuple[dict, dict]) -> None:
    left, right = turns
    assert not left["fell"] and not right["fell"]
    assert left["yaw_rate_deg_s"] >= 10.0, left
    assert right["yaw_rate_deg_s"] <= -10.0, right
    assert abs(right["yaw_rate_deg_s"]) == pytest.approx(left["yaw_rate_deg_s"], rel=0.2)
    # Past a full turn the heading is counted on, not wrapped to +-180 degrees.
    assert left["yaw_deg"] == pytest.approx(left["yaw_rate_deg_s"] * left["duration_s"], rel=0.01)


def test_walking_straight_reports_a_small_yaw_rate(nominal: dict) -> None:
    assert abs(nominal["yaw_rate_deg_s"]) < 0.5


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_steps_sideways_as_asked(side: float) -> None:
    summary = walk(0.5, side=side)
    assert not summary["fell"]
    assert summary["lateral_m"] * side >= 0.1, summary
    assert abs(summary["yaw_deg"]) <= 10, summary


@pytest.mark.parametrize("lower", ["right", "left"])
@pytest.mark.parametrize("speed", [0.5, 1.0])
def test_balance_walks_on_soles_the_open_loop_gait_falls_on(speed: float, lower: str) -> None:
    soles = {f"sole_height_{lower}_mm": 6.0, "sole_edge_radius_mm": 4.0}  # one 6 mm lower, rounded
    open_loop = walk(speed, balance=False, **soles)
    assert open_loop["fell"], "without feedback these soles tip the robot over"
    balanced = walk(speed, **soles)  # type: ignore[arg-type]  # the soles go to **world
    assert not balanced["fell"], balanced
    assert balanced["distance_m"] >= (0.45 if speed == 0.5 else 0.6), balanced
    assert balanced["safety_interventions"]["limit"] == 0
    shorter = 1.0 if lower == "right" else -1.0  # level_mm > 0: the right leg is carried shorter
    assert balanced["balance"]["level_mm"] * shorter > 3.0, balanced["balance"]


def test_balance_leaves_the_nominal_walk_nearly_as_it_was(nominal: dict) -> None:
    open_loop = walk(0.5, balance=False)
    assert nominal["distance_m"] == pytest.approx(open_loop["distance_m"], rel=0.1)
    assert nominal["safety_interventions"]["limit"] == 0


def test_a_level_floor_with_even_soles_needs_no_levelling(nominal: dict) -> None:
    assert abs(nominal["balance"]["level_mm"]) < 2.0
    assert nominal["balance"]["lean_mm"] == 0.0


def test_turning_off_the_balance_in_config_walks_open_loop() -> None:
    summary = walk(0.5, duration=3.0, balance=False)
    assert summary["balance"] is None
