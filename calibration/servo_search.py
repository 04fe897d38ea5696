"""The search of servo identification: a pattern search of many points at once, the
points that share a model between the runs of one servo, and the restarts along the
fit's long valleys (see :mod:`calibration.servo_id`).

A point is the replay's parameter vector (:mod:`calibration.servo_replay`); a point of a
group of runs (:class:`Shared`) has one phase of the PWM frames per run, past the
model's ten values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from calibration.servo_replay import HIGH, LOW

if TYPE_CHECKING:
    from calibration.servo_id import _Batch

_D = math.radians
_STEP = np.array([0.004, 0.004, _D(0.3), _D(0.3), 1.0, 40.0, 10.0, _D(4.0), 0.4, 0.003])
_MIN_STEP = np.array([0.0002, 0.0002, _D(0.01), _D(0.01), 0.05, 1.0, 0.5, _D(0.2), 0.02, 0.0002])
MAX_ITERATIONS = 80
SPLITS = (0.15, 0.35, 0.55)  # dead band's shares of its sum with the play, searched again
LAG_TIMES = (0.6, 1.5)  # and the lag times these, the delay moved to keep their sum


def search(
    cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    owner: np.ndarray,
    rng: np.random.Generator,
    only: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pattern search from every starting point ``x[i]`` (of run or group ``owner[i]``,
    ``cost(owner, x)`` its cost) at once: each round tries, around each point, every
    coordinate (or ``only`` those) up and down, trades of dead band for backlash and of
    delay for lag, and a few random moves; a point whose round finds nothing better halves
    its steps, and stops when they are all at their floor. Columns past the model's ten
    are more PWM frames' phases (see :class:`Shared`)."""
    points, dims = x.shape
    low, high, base, least = (
        np.r_[v, np.repeat(v[-1:], dims - len(v))] for v in (LOW, HIGH, _STEP, _MIN_STEP)
    )
    free = np.zeros(dims, bool)
    free[list(range(dims) if only is None else only)] = True
    step = np.tile(np.where(free, base, 0.0), (points, 1))
    floor = np.where(free, least, 0.0)
    best = cost(owner, x)
    moves = []
    for i in np.flatnonzero(free):
        for sign in (-1.0, 1.0):
            e = np.zeros(dims)
            e[i] = sign
            moves.append(e)
    if only is None:
        for sign in (-1.0, 1.0):
            moves.append(np.r_[0, 0, sign, -sign, np.zeros(dims - 4)])
            moves.append(np.r_[sign, -sign, np.zeros(dims - 2)])
    active = np.ones(points, bool)
    for iteration in range(MAX_ITERATIONS):
        if iteration % 10 == 9:
            active &= ~_dominated(owner, best)
        live = np.flatnonzero(active)
        if not len(live):
            break
        shifts = np.concatenate([np.array(moves), rng.normal(0.0, 0.7, (4, dims))])
        trials = np.clip((x[live, None, :] + shifts[None] * step[live, None, :]).reshape(-1, dims), low, high)
        tried = cost(np.repeat(owner[live], len(shifts)), trials).reshape(len(live), len(shifts))
        pick = np.argmin(tried, axis=1)
        for row, r in enumerate(live):
            if tried[row, pick[row]] < best[r] - 1e-12:
                x[r] = trials[row * len(shifts) + pick[row]]
                best[r] = tried[row, pick[row]]
            elif np.all(step[r] <= floor):
                active[r] = False
            else:
                step[r] = np.maximum(step[r] / 2, floor)
    return x, best


def _dominated(runs: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Points far worse than the best point of their run: not worth searching on."""
    lowest = np.full(runs.max() + 1, np.inf)
    np.minimum.at(lowest, runs, best)
    floor = lowest[runs]
    return best > np.maximum(1.3 * floor, floor + _D(0.01))


class Shared:
    """The runs of one servo fitted with one model: a point is the model's first nine
    parameters, shared by a group's runs, then one PWM frames' phase per run of the group
    (the board's frames drift against the loop's ticks between runs; the servo does not).
    Its cost is the rms over all the group's runs together."""

    def __init__(self, batch: _Batch, groups: Sequence[Sequence[int]]):
        self.batch = batch
        self.width = max(len(g) for g in groups)
        self.members = np.array([[*g, *[g[0]] * (self.width - len(g))] for g in groups])
        self.weight = np.array([[1.0] * len(g) + [0.0] * (self.width - len(g)) for g in groups])
        self.count = batch.use.sum(axis=0).astype(float)

    def rows(self, owner: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each point as the model's parameter vectors of its group's runs, and those runs."""
        rows = np.repeat(x[:, :10], self.width, axis=0)
        rows[:, 9] = x[:, 9:].ravel()
        return rows, self.members[owner].ravel()

    def cost(self, owner: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Each point's rms over its group's runs (``owner``: the point's group)."""
        rows, runs = self.rows(owner, x)
        rms = self.batch.cost(runs, rows)[0].reshape(len(x), self.width)
        count = self.count[runs].reshape(len(x), self.width) * self.weight[owner]
        return np.sqrt((rms**2 * count).sum(axis=1) / count.sum(axis=1))


def restart(
    shared: Shared, x: np.ndarray, best: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (a point per group) searched again from elsewhere along the fit's two long
    valleys: other splits of its dead band and play (their sum, which a slow move shows,
    kept; the shares :data:`SPLITS`), and other lags with the delay moved to keep their
    sum (the times :data:`LAG_TIMES`). The load, the motor and the frames' phases first
    follow the move, then everything is free; each group keeps its lowest end."""
    moves = len(SPLITS) + len(LAG_TIMES)
    groups = np.repeat(np.arange(len(x)), moves)
    moved = np.repeat(x, moves, axis=0).reshape(len(x), moves, -1)
    total = x[:, 2] + x[:, 3]
    for k, share in enumerate(SPLITS):
        moved[:, k, 2], moved[:, k, 3] = share * total, (1 - share) * total
    for k, times in enumerate(LAG_TIMES, len(SPLITS)):
        moved[:, k, 1] = np.clip(x[:, 1] * times, LOW[1], HIGH[1])
        moved[:, k, 0] = np.clip(x[:, 0] + x[:, 1] - moved[:, k, 1], LOW[0], HIGH[0])
    trials = moved.reshape(len(groups), -1)
    trials, _ = search(shared.cost, trials, groups, rng, only=tuple(range(5, x.shape[1])))
    trials, cost = search(shared.cost, trials, groups, rng)
    cost = cost.reshape(len(x), moves)
    pick = np.argmin(cost, axis=1)
    lowest = cost[np.arange(len(x)), pick]
    better = lowest < best
    x, best = x.copy(), best.copy()
    x[better] = trials[(np.arange(len(x)) * moves + pick)[better]]
    best[better] = lowest[better]
    return x, best
