"""Servo identification: the simulation's servo model fitted to recorded responses.

The model is the simulation's own (:mod:`plend.hal.servo_model`, and PyBullet's motor as it
moves a joint of the robot on its stand), replayed here in numpy, physics step by physics
step, for many runs and candidate parameter sets at once:

- the target written in tick ``k`` acts ``delay`` after the start of that tick (the start
  is when the tick read the feedback, so the delay includes the wait for the write and
  for the PCA9685's next frame);
- a dead band: the servo holds still while its target moves less than half the band;
- a first-order lag (``time_constant``);
- the link follows the servo's output as PyBullet's position motor makes it: a fixed
  fraction of the gap each physics step, at most ``speed``, and no faster than the
  motor's torque can accelerate the link;
- backlash: inside the gear play the link is free; there it stays put (gear friction),
  or, where its weight pulls it, falls towards the side its load points to. The load is
  a pendulum's, ``-a * sin(angle - neutral)``, against a friction ``f``.

The motor's acceleration and the load are fitted too, but are not part of the servo
model: the simulation has its own masses. The fit minimises the rms difference between
replayed and measured angles (an offset and a slope within 5 % between them are free:
what the feedback's calibration left) by a pattern search from the best of a few grids.
The parameters found are those with which the simulation, at the run's loop rate and
physics substeps, reproduces the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plend.hal.servo_model import POSITION_GAIN

_D = math.radians
# Parameter vector: delay s, time constant s, dead band rad, backlash rad, speed rad/s,
# load a rad/s^2, friction f rad/s^2, neutral rad, log10 of the motor's acceleration,
# phase of the PCA9685's frames s.
_LOW = np.array([0.0, 0.0, 0.0, 0.0, 0.5, -3000.0, 0.0, -math.pi, 1.5, -np.inf])
_HIGH = np.array([0.2, 0.2, _D(5.0), _D(5.0), 40.0, 3000.0, 3000.0, math.pi, 6.0, np.inf])
_STEP = np.array([0.004, 0.004, _D(0.3), _D(0.3), 1.0, 40.0, 10.0, _D(4.0), 0.4, 0.003])
_MIN_STEP = np.array([0.0002, 0.0002, _D(0.01), _D(0.01), 0.05, 1.0, 0.5, _D(0.2), 0.02, 0.0002])
MAX_ITERATIONS = 80
FAST_SPEED_RAD_S = 40.0  # a servo this fast never binds: "speed not reached"
SKIP_S = 0.3  # the start of a run is not fitted: the play's side is not known there
FEEDBACK_SCALE = (0.95, 1.05)  # a calibrated feedback's slope is this good
HUBER_RAD = _D(0.3)


@dataclass(frozen=True)
class Run:
    """One recorded run of one joint.

    Attributes:
        sent: the angle each tick's pulse commanded (rad, as the servo got it).
        measured: the feedback angle read at the start of each tick (rad); NaN where the
            tick took no fresh reading.
        period_s: the control period; substeps: physics steps per tick of the simulation
            the parameters are for.
        frame_s: the PCA9685's frame period: a pulse written in a tick reaches the servo
            at the start of the next frame; None where a pulse acts at once.
    """

    sent: np.ndarray
    measured: np.ndarray
    period_s: float
    substeps: int = 3
    frame_s: float | None = None


@dataclass(frozen=True)
class RunFit:
    """The servo model fitted to one run.

    Attributes:
        delay_s: from the start of the tick that wrote a target to the servo acting on it,
            on average over the run (what the simulation's delay is). With PWM frames it
            changes with the frames' phase, which drifts against the loop's ticks.
        time_constant_s, dead_band_rad, backlash_rad, speed_rad_s: the servo model.
        speed_reached: False when the run never drove the servo at its speed limit: then
            ``speed_rad_s`` is only the slowest speed that fits (the servo may be faster).
        fit_error_rad: rms of replayed minus measured angles.
        offset_rad: measured minus commanded angle where they settle (calibration's residual).
        nuisance: the load ``a``, friction ``f``, neutral angle, log10 of the motor's
            acceleration and the PWM frames' phase the fit used (not part of the model).
    """

    delay_s: float
    time_constant_s: float
    dead_band_rad: float
    backlash_rad: float
    speed_rad_s: float
    speed_reached: bool
    fit_error_rad: float
    offset_rad: float
    nuisance: tuple[float, ...]


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
    p = np.clip(np.atleast_2d(np.asarray(params, float)), _LOW, _HIGH)
    n = len(p)
    sent = np.broadcast_to(np.asarray(sent, float).reshape(len(sent), -1), (len(sent), n))
    dt = period_s / substeps
    delay, tau, band, play, speed, load, friction, neutral, accel, phase = p.T
    frames = np.broadcast_to(np.asarray(np.nan if frame_s is None else frame_s, float), (n,))
    arrive = _arrivals(len(sent), period_s, delay, phase, frames)
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


def _arrivals(
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


class _Batch:
    """Runs padded to one length, with the cost of a parameter set per column."""

    def __init__(self, runs: Sequence[Run]):
        self.period, self.substeps = runs[0].period_s, runs[0].substeps
        if any(r.period_s != self.period or r.substeps != self.substeps for r in runs):
            raise ValueError("runs fitted together must share the period and substeps")
        ticks = max(len(r.sent) for r in runs)
        self.frames = np.array([np.nan if r.frame_s is None else r.frame_s for r in runs])
        self.sent = np.empty((ticks, len(runs)))
        self.measured = np.full((ticks, len(runs)), np.nan)
        skip = round(SKIP_S / self.period)
        for i, r in enumerate(runs):
            if len(r.sent) != len(r.measured):
                raise ValueError("a run needs one measured angle per sent angle")
            self.sent[:, i] = np.concatenate([r.sent, np.full(ticks - len(r.sent), r.sent[-1])])
            self.measured[skip : len(r.measured), i] = r.measured[skip:]
        self.use = np.isfinite(self.measured)
        self.robust = True
        if (self.use.sum(axis=0) < 20).any():
            raise ValueError("a run has too few fresh feedback readings to fit")

    def cost(
        self, runs: np.ndarray, params: np.ndarray, frames: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """rms error and offset (rad) of ``params[i]`` on run ``runs[i]`` (without its PWM
        frames: a delay that does not depend on the frame's phase). The measured angles
        may differ from the replayed ones by an offset and a scale within
        :data:`FEEDBACK_SCALE` (what the feedback's calibration left): both are solved for."""
        frame = self.frames[runs] if frames else np.nan
        predicted = replay(self.sent[:, runs], self.period, self.substeps, params, frame)
        use = self.use[:, runs]
        count = use.sum(axis=0)
        p_mean = np.where(use, predicted, 0.0).sum(axis=0) / count
        m_mean = np.where(use, self.measured[:, runs], 0.0).sum(axis=0) / count
        p, m = np.where(use, predicted - p_mean, 0.0), np.where(use, self.measured[:, runs] - m_mean, 0.0)
        scale = np.clip((p * m).sum(axis=0) / np.maximum((p * p).sum(axis=0), 1e-18), *FEEDBACK_SCALE)
        error = np.where(use, m - scale * p, 0.0)
        offset = m_mean - scale * p_mean
        if not self.robust:
            return np.sqrt((error**2).sum(axis=0) / count), offset
        # Huber's loss: a few ticks the model cannot follow (a heavy link's fast swing)
        # weigh like a fixed slope, not like their square, so they do not bend the rest.
        size = np.abs(error)
        loss = np.where(size <= HUBER_RAD, error**2, 2 * HUBER_RAD * size - HUBER_RAD**2)
        return np.sqrt(loss.sum(axis=0) / count), offset


def _start(batch: _Batch, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Starting points of the search: per run and per time constant of a coarse grid, the
    best delay, play and load (the delay taken as fixed), then the best phase of the PWM
    frames. The fit's worst valleys trade lag for delay, so each run is searched from
    every lag."""
    cell = batch.period / batch.substeps
    centre = np.nanmedian(batch.sent, axis=0)
    shapes = ((0.4, 1.2, 0.0, 0.0, 6.0), (0.4, 1.2, 300.0, 20.0, 3.0), (1.0, 0.3, 0.0, 0.0, 6.0))
    lags = (0.004, 0.01, 0.02, 0.04)
    grid = np.array([[d, t, _D(b), _D(p), 10.0, a, f, 0.0, accel, 0.0]
                     for t in lags for d in np.arange(0.5 * cell, 0.15, cell)
                     for b, p, a, f, accel in shapes])  # fmt: skip
    trials = np.tile(grid, (runs, 1))
    trials[:, 7] = np.repeat(centre, len(grid))
    cost = batch.cost(np.repeat(np.arange(runs), len(grid)), trials, frames=False)[0]
    pick = np.argmin(cost.reshape(runs, len(lags), -1), axis=2)  # (runs, lags)
    per_lag = len(grid) // len(lags)
    x = np.array(
        [trials[r * len(grid) + k * per_lag + pick[r, k]] for r in range(runs) for k in range(len(lags))]
    )
    owner = np.repeat(np.arange(runs), len(lags))
    return _best_phase(batch, x, owner, keep_mean=True)[0], owner


def _best_phase(
    batch: _Batch, x: np.ndarray, owner: np.ndarray, keep_mean: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with, for each point whose run has PWM frames, the best of 16 phases of the
    frames; with ``keep_mean`` the delay is moved with the phase so that its mean over the
    run stays ``x[0]`` (a delay found without frames), else it is kept as it is."""
    phases = np.arange(16) / 16
    frames = batch.frames[owner]
    framed = np.isfinite(frames)
    trials = np.repeat(x, len(phases), axis=0)
    trials[:, 9] = (np.where(framed, frames, 0.0)[:, None] * phases[None]).ravel()
    if keep_mean:
        ticks = np.arange(len(batch.sent))[:, None] * batch.period
        period = np.repeat(np.where(framed, frames, 1.0), len(phases))
        mean_wait = np.mod(trials[:, 9][None] - ticks, period[None]).mean(axis=0)
        shift = np.where(np.repeat(framed, len(phases)), period / 2 - mean_wait, 0.0)
        trials[:, 0] = np.clip(trials[:, 0] + shift, _LOW[0], _HIGH[0])
    cost = batch.cost(np.repeat(owner, len(phases)), trials)[0].reshape(len(x), -1)
    pick = np.argmin(cost, axis=1)
    return trials[np.arange(len(x)) * len(phases) + pick], cost[np.arange(len(x)), pick]


def _search(
    batch: _Batch, x: np.ndarray, runs: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pattern search from every starting point ``x[i]`` (of run ``runs[i]``) at once: each
    round tries, around each point, every coordinate up and down, trades of dead band for
    backlash and of delay for lag, and a few random moves; a point whose round finds
    nothing better halves its steps, and stops when they are all at their floor."""
    points, dims = x.shape
    step = np.tile(_STEP, (points, 1))
    best = batch.cost(runs, x)[0]
    moves = []
    for i in range(dims):
        for sign in (-1.0, 1.0):
            e = np.zeros(dims)
            e[i] = sign
            moves.append(e)
    for sign in (-1.0, 1.0):
        moves.append(np.r_[0, 0, sign, -sign, np.zeros(dims - 4)])
        moves.append(np.r_[sign, -sign, np.zeros(dims - 2)])
    active = np.ones(points, bool)
    for iteration in range(MAX_ITERATIONS):
        if iteration % 10 == 9:
            active &= ~_dominated(runs, best)
        live = np.flatnonzero(active)
        if not len(live):
            break
        shifts = np.concatenate([np.array(moves), rng.normal(0.0, 0.7, (4, dims))])
        trials = (x[live, None, :] + shifts[None] * step[live, None, :]).reshape(-1, dims)
        cost, _ = batch.cost(np.repeat(runs[live], len(shifts)), np.clip(trials, _LOW, _HIGH))
        cost = cost.reshape(len(live), len(shifts))
        pick = np.argmin(cost, axis=1)
        for row, r in enumerate(live):
            if cost[row, pick[row]] < best[r] - 1e-12:
                x[r] = np.clip(trials[row * len(shifts) + pick[row]], _LOW, _HIGH)
                best[r] = cost[row, pick[row]]
            elif np.all(step[r] <= _MIN_STEP):
                active[r] = False
            else:
                step[r] = np.maximum(step[r] / 2, _MIN_STEP)
    return x, best


def _dominated(runs: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Points far worse than the best point of their run: not worth searching on."""
    lowest = np.full(runs.max() + 1, np.inf)
    np.minimum.at(lowest, runs, best)
    floor = lowest[runs]
    return best > np.maximum(1.3 * floor, floor + _D(0.01))


def _speeds(batch: _Batch, x: np.ndarray, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run the speed to report and whether the run reached it: when a servo far faster
    fits as well, the run never drove this one at its limit, and only the slowest speed
    that still fits is known."""
    runs = len(x)
    speeds = np.linspace(0.0, 1.0, 24)
    trials = np.repeat(x, len(speeds), axis=0)
    trials[:, 4] = (x[:, 4, None] + (FAST_SPEED_RAD_S - x[:, 4, None]) * speeds[None]).ravel()
    cost = batch.cost(np.repeat(np.arange(runs), len(speeds)), trials)[0].reshape(runs, -1)
    tolerance = np.maximum(0.02 * best, _D(0.002))
    fits = cost <= (best + tolerance)[:, None]
    reached = ~fits[:, -1]
    slowest = np.array([trials[r * len(speeds) + int(np.argmax(fits[r])), 4] for r in range(runs)])
    return np.where(reached, x[:, 4], slowest), reached


def _swap(batch: _Batch, x: np.ndarray, best: np.ndarray, partners: Sequence[int]) -> np.ndarray:
    """Runs whose partner's result (at the PWM frames' phase that suits the run best: the
    phase drifts between runs) fits them better than their own, which is then a search
    that ended in a worse valley: those, to be searched again from the partner's result."""
    runs = np.arange(len(x))
    theirs, cost = _best_phase(batch, x[list(partners)], runs, keep_mean=False)
    again = np.flatnonzero(cost < best - 1e-12)
    x[again] = theirs[again]
    return again


def fit_runs(runs: Sequence[Run], partners: Sequence[int] | None = None, seed: int = 0) -> list[RunFit]:
    """Fit the servo model to each run (all at once: numpy's cost is per step, not per run).

    Args:
        runs: the runs.
        partners: for each run, the index of another run of the same servo (its repeat);
            a run that its partner's result fits better is searched again from there.
        seed: of the search's random moves.

    Raises:
        ValueError: a run is malformed, has too few readings, or the runs differ in period.
    """
    if not runs:
        return []
    batch = _Batch(runs)
    rng = np.random.default_rng(seed)
    starts, owner = _start(batch, len(runs))
    ends, cost = _search(batch, starts, owner, rng)
    pick = [np.flatnonzero(owner == r)[np.argmin(cost[owner == r])] for r in range(len(runs))]
    x, best = ends[pick], cost[pick]
    if partners is not None:
        again = _swap(batch, x, best, partners)
        if len(again):
            x[again], best[again] = _search(batch, x[again], again, rng)
    speed, reached = _speeds(batch, x, best)
    batch.robust = False  # the fit error reported is the plain rms
    best, offset = batch.cost(np.arange(len(runs)), x)
    for i, run in enumerate(runs):  # the delay over the run, whatever the frames' phase did
        arrive = _arrivals(len(run.sent), run.period_s, x[i, :1], x[i, 9:], batch.frames[i : i + 1])
        x[i, 0] = float(np.mean(arrive[:, 0] - np.arange(len(run.sent)) * run.period_s))
    return [
        RunFit(
            delay_s=float(p[0]),
            time_constant_s=float(p[1]),
            dead_band_rad=float(p[2]),
            backlash_rad=float(p[3]),
            speed_rad_s=float(v),
            speed_reached=bool(ok),
            fit_error_rad=float(e),
            offset_rad=float(o),
            nuisance=tuple(float(v) for v in p[5:]),
        )
        for p, v, ok, e, o in zip(x, speed, reached, best, offset, strict=True)
    ]
