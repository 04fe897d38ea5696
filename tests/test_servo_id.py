"""Servo identification's fit: known servos found from their responses, with noise and a
coarse ADC; the replayed model is the simulation's; the excitation stays safe."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.servo_excitation import ExcitationError, choose_centre, excitation, two_runs
from calibration.servo_id import Run, fit_runs
from calibration.servo_replay import replay

PERIOD = 0.02
FRAME = 4096 * 122 / 25e6  # the PCA9685 at 50 Hz: prescale 121
LOW, HIGH = math.radians(-60), math.radians(60)
TRUE = {"delay": 0.021, "tau": 0.015, "band": math.radians(0.6), "play": math.radians(1.6), "speed": 7.5}


def params(
    delay: float, tau: float, band: float, play: float, speed: float, phase: float = 0.0
) -> np.ndarray:
    """A parameter vector of an unloaded servo with a strong motor."""
    return np.array([delay, tau, band, play, speed, 0.0, 0.0, 0.0, 6.0, phase])


def measure(sent: np.ndarray, truth: np.ndarray, rng: np.random.Generator, noise_deg: float, step_deg: float,
            frame: float | None = FRAME) -> np.ndarray:  # fmt: skip
    """What a feedback reads: the model's response, noise, an ADC's steps, an offset."""
    link = replay(sent, PERIOD, 3, truth[None], frame)[:, 0]
    noisy = link + rng.normal(0.0, math.radians(noise_deg), len(link)) + math.radians(0.4)
    step = math.radians(step_deg)
    return np.round(noisy / step) * step


def test_a_known_servo_is_found_from_two_noisy_runs_read_by_a_coarse_adc() -> None:
    rng = np.random.default_rng(7)
    sent = excitation(choose_centre(0.0, LOW, HIGH), LOW, HIGH, PERIOD, 20.0)
    truth = params(TRUE["delay"], TRUE["tau"], TRUE["band"], TRUE["play"], TRUE["speed"])
    runs = []
    for phase in (0.004, 0.013):  # the PWM frames drift between runs
        truth[9] = phase
        runs.append(Run(sent, measure(sent, truth, rng, noise_deg=0.03, step_deg=0.05), PERIOD, 3, FRAME))
    fits = fit_runs(runs, partners=[1, 0])
    # One servo, one model: the two runs differ only in the PWM frames' phase.
    for key in ("time_constant_s", "dead_band_rad", "backlash_rad"):
        assert getattr(fits[0], key) == getattr(fits[1], key)
    for fit in fits:  # and each run alone, for the repeatability, near it
        tau, band, play = fit.alone
        assert tau == pytest.approx(TRUE["tau"], rel=0.15)
        assert band == pytest.approx(TRUE["band"], abs=math.radians(0.3))
        assert play == pytest.approx(TRUE["play"], abs=math.radians(0.3))
    for fit, phase in zip(fits, (0.004, 0.013), strict=True):
        # The delay over a run counts the wait for the frame: where the frames stood then.
        waits = np.mod(phase - np.arange(len(sent)) * PERIOD, FRAME)
        true_delay = TRUE["delay"] - FRAME / 2 + waits.mean()
        assert fit.delay_s == pytest.approx(true_delay, abs=0.003)
        assert fit.time_constant_s == pytest.approx(TRUE["tau"], rel=0.15)
        assert fit.dead_band_rad == pytest.approx(TRUE["band"], abs=math.radians(0.3))
        assert fit.backlash_rad == pytest.approx(TRUE["play"], abs=math.radians(0.3))
        assert fit.speed_reached and fit.speed_rad_s == pytest.approx(TRUE["speed"], rel=0.15)
        assert math.degrees(fit.offset_rad) == pytest.approx(0.4, abs=0.15)
        assert math.degrees(fit.fit_error_rad) < 0.06  # the noise and the ADC's steps


def test_a_servo_never_driven_at_its_limit_is_reported_as_at_least_some_speed() -> None:
    rng = np.random.default_rng(3)
    sent = excitation(choose_centre(0.0, LOW, HIGH), LOW, HIGH, PERIOD, 3.0)  # a slow slew limit
    truth = params(0.02, 0.01, 0.0, 0.0, 12.0)
    (fit,) = fit_runs([Run(sent, measure(sent, truth, rng, 0.01, 0.01, None), PERIOD, 3)])
    assert fit.alone == (), "a run fitted on its own has no shared model to differ from"
    assert not fit.speed_reached
    # Only the slowest speed that fits is known: about the 3 rad/s the excitation asked,
    # not the best fit, which is any speed above it.
    assert 2.7 <= fit.speed_rad_s <= 3.4
    assert fit.delay_s == pytest.approx(0.02, abs=0.003)


def test_the_simulations_own_servo_is_found_from_its_response() -> None:
    """The fit's model is the simulation's servo: an ankle's, simulated on the stand with
    known parameters, is found again."""
    pytest.importorskip("pybullet")
    from plend.hal.sim import SimHal
    from plend.model.robot import NUM_JOINTS, joint_index
    from plend.model.sim_world import ServoModel, SimWorld

    index = joint_index("r_ankle_r_foot")
    servo = {"delay_ms": 23.0, "time_constant_ms": 12.0, "dead_band_deg": 0.5, "backlash_deg": 1.5,
             "speed_rad_s": 7.0}  # fmt: skip
    world = SimWorld(fixed_base=True, servo=ServoModel(joints={"r_ankle_r_foot": servo}))
    low, high = math.radians(-40), math.radians(20)
    sent = excitation(choose_centre(0.0, low, high), low, high, PERIOD, 20.0)
    hal = SimHal(world, np.zeros(NUM_JOINTS))
    hal.open(PERIOD)
    try:
        powered = np.zeros(NUM_JOINTS, bool)
        powered[index] = True
        q = np.zeros(NUM_JOINTS)
        q[index] = sent[0]
        for _ in range(20):
            hal.write_some(q, powered)
        measured = []
        for target in sent:
            measured.append(hal.read().joint_pos[index])
            q[index] = target
            hal.write_some(q, powered)
    finally:
        hal.close()
    (fit,) = fit_runs([Run(sent, np.array(measured), PERIOD, 3)])
    assert math.degrees(fit.fit_error_rad) < 0.05
    assert fit.delay_s == pytest.approx(0.023, abs=0.002)
    assert fit.time_constant_s == pytest.approx(0.012, rel=0.1)
    assert math.degrees(fit.dead_band_rad) == pytest.approx(0.5, abs=0.2)
    assert math.degrees(fit.backlash_rad) == pytest.approx(1.5, abs=0.2)
    assert fit.speed_reached and fit.speed_rad_s == pytest.approx(7.0, rel=0.05)


def test_runs_that_cannot_be_fitted_are_refused() -> None:
    sent = np.zeros(100)
    with pytest.raises(ValueError, match="too few fresh feedback readings"):
        fit_runs([Run(sent, np.full(100, np.nan), PERIOD)])
    with pytest.raises(ValueError, match="one measured angle per sent angle"):
        fit_runs([Run(sent, np.zeros(99), PERIOD)])
    with pytest.raises(ValueError, match="share the period"):
        fit_runs([Run(sent, np.zeros(100), PERIOD), Run(sent, np.zeros(100), 0.01)])
    two = [Run(sent, np.zeros(100), PERIOD), Run(sent, np.zeros(100), PERIOD)]
    for partners in ([1], [1, 2], [1, -1]):
        with pytest.raises(ValueError, match="partners needs one run index per run"):
            fit_runs(two, partners=partners)


# -- the excitation -------------------------------------------------------------------------


@pytest.mark.parametrize("slew", [1.0, 9.0, 20.0])
@pytest.mark.parametrize(("low_deg", "high_deg", "resting_deg"), [(-87, 87, 0), (-5.6, 83, 0), (-14, 87, 60)])
def test_the_excitation_stays_inside_the_range_and_the_slew_limit(
    slew: float, low_deg: float, high_deg: float, resting_deg: float
) -> None:
    low, high = math.radians(low_deg), math.radians(high_deg)
    centre = choose_centre(math.radians(resting_deg), low, high)
    targets = two_runs(centre, low, high, PERIOD, slew)
    assert low - 1e-12 <= targets.min() and targets.max() <= high + 1e-12
    assert np.abs(np.diff(targets)).max() <= slew * PERIOD + 1e-12
    assert targets[0] == centre and targets[-1] == centre
    assert len(targets) % 2 == 0 and np.array_equal(
        targets[: len(targets) // 2], targets[len(targets) // 2 :]
    )


def test_a_joint_with_too_little_room_is_refused() -> None:
    with pytest.raises(ExcitationError, match="narrower than 12 deg"):
        choose_centre(0.0, math.radians(-5), math.radians(5))
