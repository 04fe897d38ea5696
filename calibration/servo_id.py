"""Servo identification: the simulation's servo model fitted to recorded responses.

The model is the simulation's own servo as :mod:`calibration.servo_replay` replays it:
delay (with the PCA9685's frames), dead band, lag, PyBullet's motor following the
servo's output at its speed and torque, and backlash with a pendulum load inside the
play. The motor's acceleration and the load are fitted too, but are not part of the
servo model: the simulation has its own masses. The fit minimises the difference between
replayed and measured angles (an offset and a slope within 5 % between them are free:
what the feedback's calibration left; a few large misses weigh less, Huber's loss) by a
pattern search, for every servo at once. A servo's two runs share one model, each run
with its own phase of the PWM frames (which drift between runs). The search starts from
every lag of a coarse grid and from a strong and a weak motor, and its result is searched
again from elsewhere along the fit's two long valleys (dead band traded for play, lag for
delay), where a load makes other minima. It is made without the excitation's fast
swing, which a heavy link's inertia, weight and limp neighbours shape more than a
one-joint model can follow; the speed, which only the swing shows, is fitted afterwards
on the whole run. The parameters found are those with which the simulation, at the
run's loop rate and physics substeps, reproduces the run. The search itself is in
:mod:`calibration.servo_search`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from calibration.servo_replay import HIGH, LOW, arrivals, replay
from calibration.servo_search import Shared, restart, search

_D = math.radians
_LOW, _HIGH = LOW, HIGH  # the parameter vector's bounds (see calibration.servo_replay)
FAST_SPEED_RAD_S = 40.0  # a servo this fast never binds: "speed not reached"
SKIP_S = 0.3  # the start of a run is not fitted: the play's side is not known there
FEEDBACK_SCALE = (0.95, 1.05)  # a calibrated feedback's slope is this good
HUBER_RAD = _D(0.3)
SWING_S = 0.6  # after the excitation's largest step: its fast swing (see _Batch.calm)
LAGS = (0.004, 0.01, 0.02, 0.04)  # the time constants the search starts from
# The shapes it starts from (dead band deg, play deg, load a, friction f, log10 of the
# motor's acceleration), in two families that one search hardly crosses between: a strong
# motor (a light link, or a load that the gears' friction holds inside the play), and a
# weak one under a heavy link's weight.
SHAPES = (
    ((0.4, 1.2, 0.0, 0.0, 6.0), (1.0, 0.3, 0.0, 0.0, 6.0), (0.4, 1.8, 30.0, 30.0, 6.0),
     (0.4, 1.2, 300.0, 20.0, 6.0)),
    ((0.4, 1.2, 300.0, 20.0, 3.0), (0.6, 0.8, 0.0, 0.0, 3.0)),
)  # fmt: skip


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
        alone: the time constant, dead band and backlash that this run alone fits best,
            searched from the model its servo's runs share (their spread between a
            servo's runs is its repeatability); empty for a run fitted on its own.
        params: the replay's parameter vector (:mod:`calibration.servo_replay`) that the
            fit found, its delay the replay's own (before the frames' wait): with it,
            :func:`~calibration.servo_replay.replay` reproduces the run.
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
    alone: tuple[float, ...] = ()
    params: tuple[float, ...] = ()


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

    def calm(self) -> _Batch:
        """The same runs without their fastest swing (from the largest step a tick to
        :data:`SWING_S` after it), which a heavy link's inertia, weight and limp neighbours
        shape more than its servo: the model's other parameters are fitted without it."""
        calm = copy.copy(self)
        calm.measured = self.measured.copy()
        after = round(SWING_S / self.period)
        for column in range(self.sent.shape[1]):
            big = int(np.argmax(np.abs(np.diff(self.sent[:, column]))))
            calm.measured[max(0, big - 2) : big + after, column] = np.nan
        calm.use = np.isfinite(calm.measured)
        return calm if (calm.use.sum(axis=0) >= 20).all() else self

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
    """Starting points of the search: per run, per time constant of a coarse grid and per
    family of :data:`SHAPES`, the best delay, play and load (the delay taken as fixed),
    then the best phase of the PWM frames. The fit's worst valleys trade lag for delay, or
    a weak motor for a strong one, so each run is searched from every lag and family."""
    cell = batch.period / batch.substeps
    centre = np.nanmedian(batch.sent, axis=0)
    rows, cells = [], []
    for k, t in enumerate(LAGS):
        for family, shapes in enumerate(SHAPES):
            for d in np.arange(0.5 * cell, 0.15, cell):
                for b, p, a, f, accel in shapes:
                    rows.append([d, t, _D(b), _D(p), 10.0, a, f, 0.0, accel, 0.0])
                    cells.append(k * len(SHAPES) + family)
    grid, cell_of = np.array(rows), np.array(cells)
    trials = np.tile(grid, (runs, 1))
    trials[:, 7] = np.repeat(centre, len(grid))
    cost = batch.cost(np.repeat(np.arange(runs), len(grid)), trials, frames=False)[0].reshape(runs, -1)
    count = len(LAGS) * len(SHAPES)
    x = np.array(
        [
            grid[np.flatnonzero(cell_of == c)[np.argmin(cost[r, cell_of == c])]]
            for r in range(runs)
            for c in range(count)
        ]
    )
    owner = np.repeat(np.arange(runs), count)
    x[:, 7] = centre[owner]
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


def _fit_speed(batch: _Batch, x: np.ndarray) -> np.ndarray:
    """``x`` with the speed and the motor's acceleration that fit the whole runs best (the
    speed shows in the fast swing only), and the delay as the swing has it (a swing of
    40 deg in a few ticks is timed to the millisecond; the frames' phase drifts), the
    other parameters as they are."""
    speeds = np.geomspace(1.0, FAST_SPEED_RAD_S, 24)
    accels = np.array([2.0, 2.5, 3.0, 3.5, 4.5, 6.0])
    shifts = np.array([-0.006, -0.003, 0.0, 0.003])
    grid = np.array([(d, v, a) for d in shifts for v in speeds for a in accels])
    trials = np.repeat(x, len(grid), axis=0)
    trials[:, [4, 8]] = np.tile(grid[:, 1:], (len(x), 1))
    trials[:, 0] += np.tile(grid[:, 0], len(x))
    cost = batch.cost(np.repeat(np.arange(len(x)), len(grid)), trials)[0].reshape(len(x), -1)
    best = trials[np.arange(len(x)) * len(grid) + np.argmin(cost, axis=1)]

    def rms(owner: np.ndarray, params: np.ndarray) -> np.ndarray:
        return batch.cost(owner, params)[0]

    return search(rms, best, np.arange(len(x)), np.random.default_rng(0), only=(0, 4, 8))[0]


def _speeds(batch: _Batch, x: np.ndarray, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run the speed to report and whether the run reached it: when a servo far faster
    fits as well, the run never drove this one at its limit, and only the slowest speed
    that still fits is known: searched down from the best fit, in steps of 2 %, to the
    last that fits (a lower bound of the servo's speed, where the best fit is any of the
    speeds above it that fit as well)."""
    runs = len(x)
    tolerance = np.maximum(0.02 * best, _D(0.002))
    shares = np.linspace(1.0, 0.3, 36)  # of the best fit; the first is the best fit itself
    speeds = np.column_stack([np.full(runs, FAST_SPEED_RAD_S), x[:, 4, None] * shares[None]])
    trials = np.repeat(x, speeds.shape[1], axis=0)
    trials[:, 4] = speeds.ravel()
    cost = batch.cost(np.repeat(np.arange(runs), speeds.shape[1]), trials)[0].reshape(runs, -1)
    fits = cost <= (best + tolerance)[:, None]
    reached = ~fits[:, 0]
    fitting = np.logical_and.accumulate(fits[:, 1:], axis=1).sum(axis=1)  # shares that fit, from 1 down
    slowest = speeds[np.arange(runs), np.maximum(fitting, 1)]  # the last of them, at least the best fit
    return np.where(reached, x[:, 4], slowest), reached


def _joint_starts(shared: Shared, x: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """The joint starting points from the runs' own (``x``: per run, ``lags`` rows): per
    group and lag, the better of its runs' points, each with the phase that suits
    every run of the group."""
    groups, width = len(shared.members), shared.width
    # candidate (group, lag, whose point) for each run of the group: its best phase
    whose = np.repeat(shared.members, lags, axis=0).reshape(groups, lags, width)
    source = (whose * lags + np.arange(lags)[None, :, None])[..., None].repeat(width, axis=3)
    target = np.broadcast_to(shared.members[:, None, None, :], source.shape)
    phased, _ = _best_phase(shared.batch, x[source.ravel()], target.ravel(), keep_mean=False)
    points = np.concatenate(
        [x[source[..., 0].ravel(), :9], phased[:, 9].reshape(-1, width)], axis=1
    )  # (groups * lags * width, 9 + width)
    owner = np.repeat(np.arange(groups), lags * width)
    cost = shared.cost(owner, points).reshape(groups * lags, width)
    pick = np.arange(groups * lags) * width + np.argmin(cost, axis=1)
    return points[pick], owner[pick]


def fit_runs(runs: Sequence[Run], partners: Sequence[int] | None = None, seed: int = 0) -> list[RunFit]:
    """Fit the servo model to each run (all at once: numpy's cost is per step, not per run).

    Args:
        runs: the runs.
        partners: for each run, the index of another run of the same servo (its repeat):
            the two are fitted with one servo model (each with its own phase of the PWM
            frames), and its speed is then fitted to each run.
        seed: of the search's random moves.

    Raises:
        ValueError: a run is malformed, has too few readings, or the runs differ in period.
    """
    if not runs:
        return []
    full = _Batch(runs)
    batch = full.calm()
    rng = np.random.default_rng(seed)
    shared = Shared(batch, _groups(len(runs), partners))
    starts, _ = _start(batch, len(runs))
    points, group = _joint_starts(shared, starts, len(starts) // len(runs))
    ends, cost = search(shared.cost, points, group, rng)
    pick = [np.flatnonzero(group == g)[np.argmin(cost[group == g])] for g in range(len(shared.members))]
    ends, _ = restart(shared, ends[pick], cost[pick], rng)
    rows, members = shared.rows(np.arange(len(pick)), ends)
    x = np.empty((len(runs), 10))
    real = shared.weight.ravel() > 0  # not a short group's padding
    x[members[real]] = rows[real]
    alone = _alone(batch, x, shared.width > 1, rng)
    full.robust = False  # the speed is in the swing: its every tick counts
    swing = _fit_speed(full, x.copy())
    speed, reached = _speeds(full, swing, full.cost(np.arange(len(runs)), swing)[0])
    x[:, [4, 8]] = swing[:, [4, 8]]  # the fit error is that of the speed that fits best
    batch.robust = False  # the fit error reported is the plain rms, where the model holds
    best, offset = batch.cost(np.arange(len(runs)), x)
    replayed = x.copy()
    for i, run in enumerate(runs):  # the delay over the run, whatever the frames' phase did
        arrive = arrivals(len(run.sent), run.period_s, x[i, :1], x[i, 9:], batch.frames[i : i + 1])
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
            alone=tuple(float(v) for v in a),
            params=tuple(float(v) for v in r),
        )
        for p, v, ok, e, o, a, r in zip(x, speed, reached, best, offset, alone, replayed, strict=True)
    ]


def _alone(batch: _Batch, x: np.ndarray, shared: bool, rng: np.random.Generator) -> np.ndarray:
    """Per run, the time constant, dead band and backlash it fits best alone, searched
    from ``x`` (its servo's shared model); no columns where nothing was shared."""
    if not shared:
        return np.empty((len(x), 0))

    def cost(owner: np.ndarray, params: np.ndarray) -> np.ndarray:
        return batch.cost(owner, params)[0]

    return search(cost, x.copy(), np.arange(len(x)), rng)[0][:, 1:4]


def _groups(count: int, partners: Sequence[int] | None) -> list[list[int]]:
    """The runs fitted with one model: each run with its partner (and theirs, in turn)."""
    if partners is None:
        return [[i] for i in range(count)]
    if len(partners) != count or any(not 0 <= p < count for p in partners):
        raise ValueError("partners needs one run index per run, each of a run that exists")
    group = list(range(count))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, p in enumerate(partners):
        group[root(i)] = root(p)
    roots = sorted({root(i) for i in range(count)})
    return [[i for i in range(count) if root(i) == r] for r in roots]
