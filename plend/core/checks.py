"""Value checks shared by every configuration section: each error names the key and the range."""

from __future__ import annotations

import math

from plend.core.errors import ConfigError

QUOTE_CHARS = 60


def shown(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error repeats a value it refuses.
    An integer too long to quote is described by its length (Python refuses to write one of
    more than 4300 digits, and nobody wants to read one of 60)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        size = abs(value)
        digits = int((size.bit_length() - 1) * math.log10(2)) + 1
        return f"an integer of {digits + (size >= 10**digits)} digits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def check_range(key: str, value: float, lo: float, hi: float) -> None:
    """A finite number in [lo, hi] (an integer of any size compared exactly)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{key} must be a number, got {shown(value)}")
    if not lo <= value <= hi:
        raise ConfigError(f"{key} = {shown(value)} is out of range; use a value in [{lo}, {hi}]")


def check_int(key: str, value: int, lo: int, hi: int) -> None:
    """An integer (not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {shown(value)}")
    check_range(key, value, lo, hi)


def check_bool(key: str, value: object) -> None:
    """true or false."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {shown(value)}")


def check_choice(key: str, value: object, choices: tuple[object, ...]) -> None:
    """One of ``choices``."""
    if value not in choices:
        raise ConfigError(
            f"{key} = {shown(value)} is not valid; choose one of: {', '.join(map(str, choices))}"
        )


def check_vector(key: str, value: object, size: int, lo: float, hi: float) -> tuple[float, ...]:
    """A list of ``size`` numbers, each in [lo, hi]; returned as a tuple of floats."""
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ConfigError(f"{key} must be a list of {size} numbers, got {shown(value)}")
    for item in value:
        check_range(f"{key}[]", item, lo, hi)
    return tuple(float(v) for v in value)
