"""Calibration mode in the control loop, in-process on the emulated hardware: what it lets
move, how slowly, where, and what it leaves behind."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from plend.control import calibration_mode
from plend.control.calibration_mode import (
    MOVE_SPEED_RAD_S,
    STALL_TRAVEL_DEG,
    CalibrationCommandError,
    CalibrationMode,
)
from plend.control.loop import ControlLoop, StepClock
from plend.control.safety import SafetyFilter
from plend.control.stall_guard import PUSH_DEG, StallGuard
from plend.control.supervisor import CommandError, Supervisor
from plend.core.config import Config, replace_section
from plend.daemon.runtime import robot_calibration
from plend.hal.emulated.robot import EmulatedHardwareHal, make_emulated_hardware_hal
from plend.model.robot import JOINTS, joint

pytest.importorskip("pybullet")

PERIOD = 0.02
KNEE = "r_knee_r_shin"


@dataclass
class Rig:
    hal: EmulatedHardwareHal
    supervisor: Supervisor
    loop: ControlLoop
    config: Config

    def begin(self) -> CalibrationMode:
        mode = CalibrationMode(
            self.hal, self.loop.safety, self.config.safety.joint_limits(), self.hal.true_joint_angles
        )
        self.supervisor.handle("calibrate_begin", mode=mode)
        return mode

    def op(self, name: str, **args: object) -> dict:
        return self.supervisor.handle("calibrate", op=name, **args)

    def pulses(self) -> dict[str, float | None]:
        pca = self.hal.robot.pca
        return {j.name: pca.pulse_us(j.pwm_channel) for j in JOINTS if j.pwm_channel is not None}

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.loop.tick()


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    yield from make_rig(tmp_path, seed=3)


@pytest.fixture
def mirrored_rig(tmp_path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    """A robot built with a shoulder servo mounted mirrored."""
    yield from make_rig(tmp_path, seed=11)


def make_rig(  # type: ignore[no-untyped-def]
    tmp_path, seed: int, period: float = PERIOD, servo_seed: int | None = None
) -> Iterator[Rig]:
    config = Config(hal="hardware")
    config = replace_section(config, "paths", state_dir=str(tmp_path), recordings_dir=str(tmp_path))
    config = replace_section(
        config, "hardware", bus="emulated", emulated_miscalibration_seed=seed, emulated_servo_seed=servo_seed
    )
    config = replace_section(config, "sim", fixed_base=True)
    hal = make_emulated_hardware_hal(config, robot_calibration(config))
    assert isinstance(hal, EmulatedHardwareHal)
    hal.open(period)
    supervisor = Supervisor(config.safety, period, hal=hal)
    loop = ControlLoop(hal, supervisor, period, SafetyFilter.from_config(config.safety, period), StepClock())
    loop.start()
    loop.tick()
    try:
        yield Rig(hal, supervisor, loop, config)
    finally:
        hal.close()


def test_calibration_starts_limp_and_only_from_relax(rig: Rig) -> None:
    rig.supervisor.handle("stand")
    with pytest.raises(CommandError, match="put the robot on its stand"):
        rig.begin()
    rig.supervisor.handle("relax")
    rig.begin()
    rig.ticks(3)
    assert rig.supervisor.mode == "calibrate"
    assert all(p is None for p in rig.pulses().values()), "every servo unpowered"
    with pytest.raises(CommandError, match="calibration wizard is running"):
        rig.supervisor.handle("gait", speed=0.5)


def test_a_servo_that_cannot_follow_may_be_calibrated_but_not_driven(mirrored_rig: Rig) -> None:
    rig = mirrored_rig
    # Servos never calibrated, one mounted mirrored, cannot follow a stand pose: the
    # tracking monitor relaxes the robot and latches a fault that blocks moving...
    rig.supervisor.handle("stand")
    rig.ticks(100)
    faults = [f.code for f in rig.supervisor.faults]
    assert "tracking" in faults and rig.supervisor.mode == "relax"
    with pytest.raises(CommandError, match="fault 'tracking' is latched"):
        rig.supervisor.handle("stand")
    # ...but calibrating is the fix, and a new calibration clears the fault.
    rig.begin()
    rig.supervisor.handle("calibrate_apply", calibration=rig.hal.calibration)
    assert "tracking" not in [f.code for f in rig.supervisor.faults]
    rig.supervisor.handle("estop")
    rig.supervisor.handle("reset")
    rig.supervisor.handle("estop")
    with pytest.raises(CommandError, match="e-stop is latched"):
        rig.begin()


def test_one_joint_moves_slowly_and_alone(rig: Rig) -> None:
    rig.begin()
    rig.op("move", joint=KNEE, angle=math.radians(20))
    previous = None
    for _ in range(60):
        rig.loop.tick()
        pulses = rig.pulses()
        assert [n for n, p in pulses.items() if p is not None] == [KNEE]
        if previous is not None:
            step_deg = abs(pulses[KNEE] - previous) / (2200 / 180)  # type: ignore[operator]
            assert step_deg <= math.degrees(MOVE_SPEED_RAD_S * PERIOD) + 0.5, "slow: about 0.6 deg a tick"
        previous = pulses[KNEE]
    rig.op("move", joint="l_knee_l_shin", angle=0.0)
    rig.ticks(2)
    assert [n for n, p in rig.pulses().items() if p is not None] == ["l_knee_l_shin"], "one at a time"


def test_an_unzeroed_joint_stays_inside_its_jog_window(rig: Rig) -> None:
    mode = rig.begin()
    with pytest.raises(CalibrationCommandError, match=r"calibration-safe range -30\.0\.\.\+30\.0 deg"):
        rig.op("move", joint=KNEE, angle=math.radians(31))
    with pytest.raises(CalibrationCommandError, match="find its zero and direction before sweeping"):
        rig.op("sweep", joint=KNEE, low=-0.3, high=0.2, points=9)
    rig.op("set", joint=KNEE, offset_deg=1.0, direction=1, confirmed=True)
    _, hi = mode.safe_range(joint(KNEE).index)
    assert math.degrees(hi) == pytest.approx(math.degrees(joint(KNEE).upper) - 3.0)
    assert rig.loop.safety.upper[joint(KNEE).index] == pytest.approx(hi), "the safety filter enforces it"


def test_changing_a_joints_calibration_does_not_move_its_servo(rig: Rig) -> None:
    rig.begin()
    rig.op("move", joint=KNEE, angle=math.radians(10))
    rig.ticks(100)
    assert rig.op("state")["settled"]
    before = rig.pulses()[KNEE]
    rig.op("set", joint=KNEE, offset_deg=6.0, direction=-1)
    rig.ticks(5)
    assert rig.pulses()[KNEE] == pytest.approx(before, abs=5.0), "within one PCA9685 count"
    rig.op("move", joint=KNEE, angle=math.radians(10))  # now means another servo position
    rig.ticks(60)
    assert rig.pulses()[KNEE] != pytest.approx(before, abs=5.0)


def test_leaving_restores_the_safety_filter_and_the_stored_calibration(rig: Rig) -> None:
    stored = rig.hal.calibration
    limits = rig.loop.safety.lower.copy(), rig.loop.safety.upper.copy(), rig.loop.safety.max_speed_rad_s
    rig.begin()
    assert rig.loop.safety.max_speed_rad_s < limits[2]
    rig.op("set", joint=KNEE, offset_deg=7.0, confirmed=True)
    assert rig.hal.calibration is not stored
    rig.op("move", joint=KNEE, angle=0.1)
    rig.ticks(5)
    rig.supervisor.handle("estop")
    rig.ticks(2)
    assert rig.supervisor.mode == "estop" and all(p is None for p in rig.pulses().values())
    assert rig.hal.calibration is stored, "an unsaved session leaves nothing behind"
    assert np.array_equal(rig.loop.safety.lower, limits[0]) and np.array_equal(
        rig.loop.safety.upper, limits[1]
    )
    assert rig.loop.safety.max_speed_rad_s == limits[2]
    with pytest.raises(CommandError, match="session has ended"):
        rig.op("state")


def test_an_idle_joint_is_relaxed(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration_mode, "IDLE_RELAX_S", 1.0)
    rig.begin()
    rig.op("move", joint=KNEE, angle=0.0)
    rig.ticks(40)
    assert rig.pulses()[KNEE] is not None
    rig.ticks(20)
    assert rig.pulses()[KNEE] is None, "not held for ever: a servo left powered heats up"
    assert rig.op("state")["idle_relaxed"] is True and rig.supervisor.mode == "calibrate"


def test_a_sweep_reads_the_feedback_up_and_down(rig: Rig) -> None:
    rig.begin()
    rig.op("set", joint=KNEE, confirmed=True)
    rig.op("sweep", joint=KNEE, low=-0.4, high=0.2, points=5)
    for _ in range(1000):
        rig.loop.tick()
        sweep = rig.op("state")["sweep"]
        if sweep["done"]:
            break
    assert sweep["done"] and len(sweep["up"]) == len(sweep["down"]) == len(sweep["angles"]) == 5
    codes = np.array(sweep["up"])
    assert np.all(np.diff(codes) * np.sign(codes[-1] - codes[0]) > 0), "feedback follows the sweep"
    assert np.allclose(sweep["up"], sweep["down"], atol=40), "little hysteresis in the emulation"


def test_a_joint_pushing_on_a_hard_stop_is_stopped_and_may_only_back_out(rig: Rig) -> None:
    # Seed 3's right hip roll: its horn is 12 deg off and its servo mirrored, so a positive
    # jog leans the thigh toward its stop, which it reaches at a jog of about -3.6 deg.
    hip = "r_hip_r_thigh"
    index = joint(hip).index
    rig.begin()
    rig.op("move", joint=hip, angle=math.radians(-20))  # out of the stop: it follows
    rig.ticks(80)
    rig.op("move", joint=hip, angle=math.radians(12))  # back, into the stop and beyond
    rig.ticks(120)
    state = rig.op("state")
    assert "stopped following" in state["blocked"] and "hard stop" in state["blocked"]
    assert math.degrees(state["goal"]) == pytest.approx(-3.6, abs=STALL_TRAVEL_DEG), (
        "back where it last moved"
    )
    assert math.degrees(rig.hal.true_joint_angles()[index]) == pytest.approx(-8.6, abs=1.0), "at the stop"
    with pytest.raises(CalibrationCommandError, match="move it the other way"):
        rig.op("move", joint=hip, angle=math.radians(10))
    rig.op("move", joint=hip, angle=math.radians(-20))  # backing out is allowed
    rig.ticks(80)
    assert "blocked" not in rig.op("state")
    assert math.degrees(rig.hal.true_joint_angles()[index]) > -8.6 + 5, "out of the stop, it follows"


def test_a_joint_brought_to_rest_in_a_hard_stop_is_stopped_once_at_rest(rig: Rig) -> None:
    # The same hip, sent 6 deg into its stop: the moving check counts its travel from where
    # it last judged the joint to follow, a few degrees back, and let it push there until
    # it idled out; at rest its target lies past where its link last followed, the way it
    # was going, by more than the play and the dead band, and it is sent back.
    hip = "r_hip_r_thigh"
    rig.begin()
    rig.op("move", joint=hip, angle=math.radians(-20))
    rig.ticks(80)
    rig.op("move", joint=hip, angle=math.radians(-3.6 + 2.0))  # in by its lag, play and dead band
    rig.ticks(120)
    assert "blocked" not in rig.op("state")
    rig.op("move", joint=hip, angle=math.radians(-20))
    rig.ticks(80)
    # The link, pressed into the stop, creeps a few codes a tick, which is not following.
    rig.op("move", joint=hip, angle=math.radians(-3.6 + 6.0))
    rig.ticks(80)
    state = rig.op("state")
    assert "stopped following" in state["blocked"]
    assert state["goal"] < math.radians(-3.6 + 6.0 - PUSH_DEG), "sent back towards where it followed"
    rig.op("move", joint=hip, angle=math.radians(-20))  # backing out is allowed
    rig.ticks(80)
    assert "blocked" not in rig.op("state")


def test_a_link_carried_to_the_front_of_its_play_is_not_taken_for_a_push(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Seed 1's left hip roll with its own servos (play and dead band): near vertical its
    # thigh has no load, swings to the front of its play at the end of a move, and stays
    # put while the next 2 deg the same way take the gears across the play.
    rigs = make_rig(tmp_path, seed=1, period=1 / 60, servo_seed=1)
    assert isinstance(rigs, Generator)
    rig = next(rigs)
    rig.begin()
    hip = joint("l_hip_l_thigh")
    before = None
    for angle in (0.0, 5.0, 5.5, 6.0, 6.5, 7.0):
        rig.op("move", joint=hip.name, angle=math.radians(angle))
        rig.ticks(50)
        assert "blocked" not in rig.op("state"), f"at {angle} deg"
        if angle == 5.0:
            before = rig.hal.raw_code(hip.index)
    assert rig.hal.raw_code(hip.index) == before, "the link stayed put in its play: what the test is about"
    rigs.close()


def test_the_push_check_passes_dead_band_and_reversals_and_catches_a_pinned_link() -> None:
    per_deg, step = 60.0, 0.5  # feedback codes a degree; target degrees a tick (about 0.5 rad/s)

    def ticks(
        guard: StallGuard, target_from: float, target_to: float, link: Callable[[float], float]
    ) -> bool:
        """The target from one angle to another a step a tick, then still for 20 ticks;
        ``link(target)`` is where the link is; whether it is then found pushing."""
        count = max(1, round(abs(target_to - target_from) / step))
        path = [*np.linspace(target_from, target_to, count + 1)[1:], *[target_to] * 20]
        for target in path:
            assert not guard.stalled(math.radians(target), link(target) * per_deg)
        return guard.pushing(math.radians(target_to))

    guard = StallGuard(0.0, 0.0)
    assert not ticks(guard, 0.0, 10.0, lambda t: t - 0.8), "followed, a dead band short"
    assert not ticks(guard, 10.0, 10.6, lambda t: 9.2 + max(0.0, t - 10.0 - 0.2)), "a small step on"
    assert not ticks(guard, 10.6, 7.1, lambda t: 9.6), "back 3.5 deg: inside the play and the dead band"
    guard = StallGuard(0.0, 0.0)
    pinned = ticks(guard, 0.0, 11.0, lambda t: min(t, 8.0) - 0.2)  # a stop at 8 deg, 3 in: not yet
    assert not pinned, "within the play and the dead band of where it last followed"
    assert ticks(guard, 11.0, 13.0, lambda t: 7.8), "5 deg into the stop, the same way"
    guard = StallGuard(0.0, 0.0)
    creeping = ticks(guard, 0.0, 12.7, lambda t: min(t, 8.0) + 0.12 * max(0.0, t - 8.0))  # a soft stop
    assert creeping, "a link pressed into a soft stop creeps a few codes a tick: not following"


@pytest.mark.parametrize("period", [PERIOD, 0.005])
def test_small_steps_the_same_way_are_not_taken_for_a_push(tmp_path, period: float) -> None:  # type: ignore[no-untyped-def]
    rigs = make_rig(tmp_path, seed=3, period=period)
    assert isinstance(rigs, Generator)
    rig = next(rigs)
    rig.begin()
    settle = round(1.8 / period)
    for name, angles in (
        ("rb_servo_r_hip", (-25, 25, 0, 3, 6, 2)),
        (KNEE, (-25, 10, 0, -3)),
        ("r_thigh_r_knee", (-20, 20, 22, 10)),
        ("r_shin_r_ankle", (-15, 15, 0)),
        ("torso_l_shoulder", (25, -25, -20)),
        ("l_hip_l_thigh", (10, 12, 14, 0)),
    ):
        for angle in angles:
            rig.op("move", joint=name, angle=math.radians(angle))
            rig.ticks(settle)
            assert "blocked" not in rig.op("state"), f"{name} at {angle} deg, {1 / period:.0f} Hz"
    # The left hip roll meets its stop at a jog of about -7 deg: 7 deg in.
    rig.op("move", joint="l_hip_l_thigh", angle=math.radians(-14))
    rig.ticks(settle)
    assert "stopped following" in rig.op("state")["blocked"]
    assert math.degrees(rig.hal.true_joint_angles()[joint("l_hip_l_thigh").index]) == pytest.approx(
        8.6, abs=1.0
    )
    rigs.close()


def test_a_working_joint_is_never_taken_for_a_stalled_one(rig: Rig) -> None:
    # (Within the joints' limits: the knee's hyperextension stop is at +17 deg, and a jog
    # to +25 deg is rightly stopped there.)
    rig.begin()
    for name, angles in (
        ("rb_servo_r_hip", (-25, 25, 0)),
        (KNEE, (-25, 10, 0)),
        ("torso_l_shoulder", (25, -25)),
    ):
        for angle in angles:
            rig.op("move", joint=name, angle=math.radians(angle))
            rig.ticks(90)
            assert "blocked" not in rig.op("state"), f"{name} at {angle} deg"
