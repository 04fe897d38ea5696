"""Value checks shared by every configuration section: each error names the key and the range."""

from __future__ import annotations

import math

from plend.core.errors import ConfigError


def check_range(key: str, value: float, lo: float, hi: float) -> None:
    """A finite number in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{key} = {value!r} is out of range; use a value in [{lo}, {hi}]")


def check_int(key: str, value: int, lo: int, hi: int) -> None:
    """An integer (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    check_range(key, value, lo, hi)


def check_bool(key: str, value: object) -> None:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_choice(key: str, value: object, choices: tuple[object, ...]) -> None:
    """One of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{key} = {value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def check_vector(key: str, value: object, size: int, lo: float, hi: float) -> tuple[float, ...]:
    """A list of ``size`` numbers, each in [lo, hi]; returned as a tuple of floats."""
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ConfigError(f"{key} must be a list of {size} numbers, got {value!r}")
    for item in value:
        check_range(f"{key}[]", item, lo, hi)
    return tuple(float(v) for v in value)
