"""The simulation's servo, replayed in numpy for servo identification.

The model is the simulation's own servo (:mod:`plend.hal.servo_model`, and PyBullet's
motor as it moves a joint of the robot on its stand), replayed physics step by physics
step:

- the target written in tick ``k`` acts ``delay`` after the start of that tick (the start
  is when the tick read the feedback, so the delay includes the wait for the write and
  for the PCA9685's next frame; with frames, the wait follows the frames' phase, a
  sawtooth against the ticks, and ``delay`` is its mean over the run);
- a dead band: the servo holds still while its target moves less than half the band;
- a first-order lag (``time_constant``);
- the link follows the servo's output as PyBullet's position motor makes it: a fixed
  fraction of the gap each physics step, at most ``speed``, and no faster than the
  motor's torque can accelerate the link;
- backlash: inside the gear play the link is free; there it stays put (gear friction),
  or, where its weight pulls it, falls towards the side its load points to. The load is
  a pendulum's, ``-a * sin(angle - neutral)``, against a friction ``f``.

The motor's acceleration and the load are part of the replay but not of the servo
model: the simulation has its own masses. Many runs and parameter sets are replayed at
once, one column each: numpy's cost is per physics step, hardly per column.
"""

from __future__ import annotations

import math

import numpy as np

from plend.hal.servo_model import POSITION_GAIN

_D = math.radians
# The parameter vector, one row per parameter set: delay s, time constant s, dead band
# rad, backlash rad, speed rad/s, load a rad/s^2, friction f rad/s^2, neutral angle rad,
# log10 of the motor's acceleration, phase of the PCA9685's frames s; and its bounds.
LOW = np.array([0.0, 0.0, 0.0, 0.0, 0.5, -3000.0, 0.0, -math.pi, 1.5, -np.inf])
HIGH = np.array([0.2, 0.2, _D(5.0), _D(5.0), 40.0, 3000.0, 3000.0, math.pi, 6.0, np.inf])


def replay(
    sent: np.ndarray,
    period_s: float,
    substeps: int,
    params: np.ndarray,
    frame_s: np.ndarray | float | None = None,
) -> np.ndarray:
    """The link's angle at the start of every tick, one column per parameter set.

    Args:
        sent: the angle written each tick (rad), shape (ticks,) for every column or
            (ticks, N) one column each; the joint rests at the first angle before.
        period_s: the control period; substeps: physics steps per tick.
        params: shape (N, 10), rows as the module's parameter vector.
        frame_s: the PWM frame period, per column or for all; NaN or None: no frames.
    """
    p = np.clip(np.atleast_2d(np.asarray(params, float)), LOW, HIGH)
    n = len(p)
    sent = np.broadcast_to(np.asarray(sent, float).reshape(len(sent), -1), (len(sent), n))
    dt = period_s / substeps
    delay, tau, band, play, speed, load, friction, neutral, accel, phase = p.T
    frames = np.broadcast_to(np.asarray(np.nan if frame_s is None else frame_s, float), (n,))
    arrive = arrivals(len(sent), period_s, delay, phase, frames)
    wanted = _delayed(sent, arrive, np.arange(len(sent) * substeps) * dt, dt)
    below, above = wanted - band / 2, wanted + band / 2
    alpha = np.where(tau > 0, -np.expm1(-dt / np.maximum(tau, 1e-12)), 1.0)
    # Rates as distances per physics step, so the loop multiplies less.
    reach, kick, drag = speed * dt, 10.0**accel * dt * dt, friction * dt * dt
    weight = -load * dt * dt
    half = play / 2
    inner = half - np.minimum(half / 4, _D(0.2))  # the motor lets go inside this
    held = sent[0].copy()
    out, link, move = held.copy(), held.copy(), np.zeros(n)
    result = np.empty((len(sent), n))
    for s in range(len(wanted)):
        if s % substeps == 0:
            result[s // substeps] = link
        held = np.minimum(np.maximum(held, below[s]), above[s])
        out += (held - out) * alpha
        error = out - link
        free = np.abs(error) < inner
        gap = error - np.minimum(np.maximum(error, -half), half)
        pull = weight * np.sin(link - neutral)
        want = np.minimum(np.maximum(POSITION_GAIN * gap, -reach), reach)
        driven = move + pull + np.minimum(np.maximum(want - move - pull, -kick), kick)
        move = np.where(free, _free_move(move, pull, drag), driven)
        link = link + move
        link = np.where(free, np.minimum(np.maximum(link, out - half), out + half), link)
    return result


def arrivals(
    ticks: int, period_s: float, delay: np.ndarray, phase: np.ndarray, frames: np.ndarray
) -> np.ndarray:
    """When each tick's target starts to act (ticks, N): ``delay`` after the tick, or, with
    PWM frames, at the next frame after the tick (frames start at ``phase``) and then as
    much later again that the average over the frame's phases is ``delay``."""
    start = np.arange(ticks)[:, None] * period_s
    framed = np.isfinite(frames)
    period = np.where(framed, frames, 1.0)
    wait = np.where(framed, np.mod(phase - start, period) - period / 2, 0.0)
    return start + delay + wait


def _delayed(sent: np.ndarray, arrive: np.ndarray, times: np.ndarray, dt: float) -> np.ndarray:
    """What each column's servo acts on over every physics step (steps, N): the last target
    to arrive by the step's start; one that arrives within the step counts for the part of
    the step after it (as :meth:`plend.hal.servo_model.ServoBank._delayed`)."""
    first = np.empty((len(times), sent.shape[1]), int)
    last = np.empty_like(first)
    for column in range(sent.shape[1]):
        when = np.maximum.accumulate(arrive[:, column])
        first[:, column] = np.searchsorted(when, times + 1e-9, side="right") - 1
        last[:, column] = np.searchsorted(when, times + dt - 1e-9, side="right") - 1
    first, last = np.maximum(first, 0), np.maximum(last, 0)
    columns = np.arange(sent.shape[1])
    nxt = arrive[np.minimum(first + 1, len(sent) - 1), columns]
    before = np.clip((nxt - times[:, None]) / dt, 0.0, 1.0)
    a, b = sent[first, columns], sent[last, columns]
    return np.where(last > first, before * a + (1.0 - before) * b, a)


def _free_move(move: np.ndarray, pull: np.ndarray, drag: np.ndarray) -> np.ndarray:
    """The free link's next step: its load's ``pull`` against gear friction ``drag``;
    friction stops it rather than reverse it, and holds it while the pull is weaker."""
    moving = move != 0
    sign = np.sign(np.where(moving, move, pull))
    acts = moving | (np.abs(pull) > drag)
    new = move + (pull - drag * sign) * acts
    return np.where(moving & (new * move < 0), 0.0, new)
