"""Bumpless switching: a new behaviour's targets are blended in from the measured pose.

A behaviour that does not move at its own pace (a walk, a policy, a replay) holds its
first pose while :class:`Blend` carries the joints there from where they were measured,
along a minimum-jerk path no faster than :data:`BLEND_SPEED_RAD_S` at its mean (the
min-jerk profile peaks at 1.9x that) and never in under :data:`MIN_BLEND_S`.
"""

from __future__ import annotations

import numpy as np

from plend.control.behaviours import min_jerk

BLEND_SPEED_RAD_S = 1.5
MIN_BLEND_S = 0.3


class Blend:
    """One switch's blend; :meth:`begin` at the switch, :meth:`apply` once a tick."""

    def __init__(self) -> None:
        self._start: np.ndarray | None = None
        self._t = 0.0
        self._duration = MIN_BLEND_S

    @property
    def active(self) -> bool:
        return self._start is not None

    def begin(self, measured: np.ndarray | None) -> None:
        """Blend from ``measured`` (None: no blend, the behaviour paces itself)."""
        self._start = None if measured is None else measured.copy()
        self._t = 0.0  # the first apply sets the duration from the distance to go

    def apply(self, targets: np.ndarray, period_s: float) -> np.ndarray:
        """This tick's point on the way from the measured pose to ``targets``; the blend
        ends (and :attr:`active` turns false) when it arrives."""
        assert self._start is not None
        if self._t == 0.0:
            distance = float(np.max(np.abs(targets - self._start)))
            self._duration = max(MIN_BLEND_S, distance / BLEND_SPEED_RAD_S)
        self._t += period_s
        w = min_jerk(self._t / self._duration)
        if w >= 1.0:
            self._start = None
            return targets
        return self._start + w * (targets - self._start)
