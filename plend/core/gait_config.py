"""The ``[gait]`` configuration: the sine gait's heading hold and stride, and the gains of
its balance layer (gaits.balance), each checked against its range. Imported by
plend.core.config; gaits.balance is imported where it is used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plend.core.checks import check_bool as _check_bool
from plend.core.checks import check_range as _check_range


@dataclass(frozen=True)
class GaitConfig:
    """The sine gait: heading hold and the balance layer fed by the IMU.

    Attributes:
        balance: run the balance layer (gaits.balance) under the gait; false walks open
            loop, as the gait alone.
        heading_gain: hip yaw steering (rad per step) per rad of heading error while not
            turning; 0 turns the heading hold off.
        heading_bias_gain: steering learnt per step per rad of heading error, for a robot
            that keeps turning one way (uneven feet, servo offsets).
        heading_average: the heading hold steers by the heading error averaged over the
            step just walked; false: by the error at each step boundary, as the gait
            under a residual policy does.
        stride_exponent: how stride grows with speed: stride = max stride x speed ** this
            (1: in proportion; below 1 the slower speeds take longer steps). The gait under
            a residual policy keeps 1, what policies trained on.
        roll_rate_gain, pitch_rate_gain, pitch_gain, level_gain, max_level_m, lean_gain, max_lean_m,
        max_lean_back_m, lean_ahead_m, lean_deadband_deg, mean_tau_s, rock_deg, duty_gain,
        start_duty, duty_decay, max_duty, settle_deg, settle_max_s, max_correction_rad,
        recover_deg, recover_back_deg, recover_s: the balance gains, as in
            gaits.balance.GAIN_RANGES (each key's meaning and range). The defaults are the
            sine gait's (gaits.balance.SINE_GAINS); the gait under a residual policy keeps
            the retuned ones at the values it trained with (:meth:`balance_gains`).
    """

    balance: bool = True
    heading_gain: float = 0.5
    heading_bias_gain: float = 0.05
    heading_average: bool = True
    stride_exponent: float = 0.75
    roll_rate_gain: float = 0.05
    pitch_rate_gain: float = 0.05
    pitch_gain: float = 0.0
    level_gain: float = 0.05
    max_level_m: float = 0.008
    lean_gain: float = 0.15
    max_lean_m: float = 0.01
    max_lean_back_m: float = 0.002
    lean_ahead_m: float = 0.004
    lean_deadband_deg: float = 2.0
    mean_tau_s: float = 0.3
    rock_deg: float = 2.0
    duty_gain: float = 3.0
    start_duty: float = 0.1
    duty_decay: float = 0.03
    max_duty: float = 0.72
    settle_deg: float = 1.5
    settle_max_s: float = 2.0
    max_correction_rad: float = 0.3
    recover_deg: float = 20.0
    recover_back_deg: float = 10.0
    recover_s: float = 1.0

    def __post_init__(self) -> None:
        from gaits.balance import GAIN_RANGES

        _check_bool("gait.balance", self.balance)
        _check_range("gait.heading_gain", self.heading_gain, 0.0, 2.0)
        _check_range("gait.heading_bias_gain", self.heading_bias_gain, 0.0, 0.5)
        _check_range("gait.stride_exponent", self.stride_exponent, 0.5, 1.0)
        _check_bool("gait.heading_average", self.heading_average)
        for name, (lo, hi, _) in GAIN_RANGES.items():
            _check_range(f"gait.{name}", getattr(self, name), lo, hi)

    def sine_gains(self) -> Any:
        """The balance gains of the sine gait (a gaits.balance.BalanceGains)."""
        from gaits.balance import GAIN_RANGES, BalanceGains

        return BalanceGains(**{name: getattr(self, name) for name in GAIN_RANGES})

    def balance_gains(self, recorded: Mapping[str, float] | None = None) -> Any:
        """The balance gains of the gait under a residual policy: a gain retuned since
        policies first learnt on the balanced gait (gaits.balance.RETUNED) keeps the value
        the policy trained with, ``recorded`` (from its metadata) or else the original one;
        the other gains come from here."""
        from gaits.balance import trained_gains

        return trained_gains(self.sine_gains(), recorded)
