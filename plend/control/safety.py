"""The last word before the servos: joint limits, slew limit and non-finite targets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plend.core.config import SafetyConfig
from plend.model.robot import joint_limits


@dataclass
class Interventions:
    """How often the filter changed what a controller asked for."""

    limit: int = 0
    slew: int = 0
    non_finite: int = 0


@dataclass
class SafetyFilter:
    """Clamps targets to the joint limits and to what a servo can travel in one tick.

    Args:
        period_s: control period.
        max_speed_rad_s: slew limit per joint.
        lower, upper: joint limits (defaults: the joint table).
    """

    period_s: float
    max_speed_rad_s: float = 9.0
    lower: np.ndarray = field(default_factory=lambda: joint_limits()[0])
    upper: np.ndarray = field(default_factory=lambda: joint_limits()[1])
    counts: Interventions = field(default_factory=Interventions)
    _last: np.ndarray | None = None
    _configured: tuple[np.ndarray, np.ndarray, float] | None = None  # kept while overridden

    @classmethod
    def from_config(cls, config: SafetyConfig, period_s: float) -> SafetyFilter:
        """The filter with the configured slew limit and narrowed joint limits."""
        lower, upper = config.joint_limits()
        return cls(period_s, config.max_speed_rad_s, lower, upper)

    def reset(self, measured: np.ndarray) -> None:
        """Start slewing from the measured pose (bumpless start)."""
        finite = np.where(np.isfinite(measured), measured, 0.0)
        self._last = np.clip(finite, self.lower, self.upper)

    def override(
        self, max_speed_rad_s: float | None = None, limits: dict[int, tuple[float, float]] | None = None
    ) -> None:
        """Replace the slew limit and some joints' limits (joint index -> lower, upper) until
        :meth:`restore`; the configured values are kept. Calibration mode does this: a joint
        not yet calibrated has no true angle, so its table limits mean nothing; it may only
        move in a window around its assumed zero, slowly."""
        if self._configured is None:
            self._configured = (self.lower.copy(), self.upper.copy(), self.max_speed_rad_s)
        if max_speed_rad_s is not None:
            self.max_speed_rad_s = max_speed_rad_s
        for index, (lower, upper) in (limits or {}).items():
            self.lower[index], self.upper[index] = lower, upper

    @property
    def configured_speed_rad_s(self) -> float:
        """The configured slew limit, also while :meth:`override` replaces it."""
        return self.max_speed_rad_s if self._configured is None else self._configured[2]

    @property
    def overridden(self) -> bool:
        """True between :meth:`override` and :meth:`restore`."""
        return self._configured is not None

    def restore(self) -> None:
        """Back to the configured limits and slew limit (nothing to do when not overridden)."""
        if self._configured is None:
            return
        lower, upper, speed = self._configured
        self.lower[:], self.upper[:], self.max_speed_rad_s = lower, upper, speed
        self._configured = None

    def rebase(self, index: int, value: float) -> None:
        """Say that joint ``index``'s last target is now called ``value``: its calibration
        changed and the same servo position has a new angle, so nothing should move."""
        if self._last is not None:
            self._last[index] = value

    def apply(
        self, targets: np.ndarray, powered: np.ndarray | None = None, measured: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the targets made safe; a non-finite target holds the last one.

        With ``powered`` (a mask) the unpowered joints follow ``measured`` instead of their
        targets, so a joint powered later starts slewing from where it actually is.
        """
        if self._last is None:
            raise RuntimeError("SafetyFilter.reset() must be called with the measured pose first")
        q = np.array(targets, dtype=float, copy=True)
        if powered is not None:
            assert measured is not None, "measured is needed with powered"
            free = ~powered
            q[free] = np.clip(np.where(np.isfinite(measured), measured, self._last)[free],
                              self.lower[free], self.upper[free])  # fmt: skip
            self._last[free] = q[free]
        bad = ~np.isfinite(q)
        if bad.any():
            self.counts.non_finite += int(bad.sum())
            q[bad] = self._last[bad]
        clipped = np.clip(q, self.lower, self.upper)
        self.counts.limit += int(np.count_nonzero(clipped != q))
        step = self.max_speed_rad_s * self.period_s
        slewed = np.clip(clipped, self._last - step, self._last + step)
        self.counts.slew += int(np.count_nonzero(slewed != clipped))
        self._last = slewed
        return slewed.copy()
