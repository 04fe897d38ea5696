"""HAL backends, picked by name and imported only when asked for."""

from __future__ import annotations

import importlib
from typing import Any

from plend.errors import ConfigError
from plend.hal.base import Hal, ImuReading, Sensors

_BACKENDS = {
    "sim": ("plend.hal.sim", "make_sim_hal"),
    "hardware": ("plend.hal.hardware", "make_hardware_hal"),
}


def backend_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_hal`."""
    return tuple(_BACKENDS)


def make_hal(name: str, config: Any, **options: Any) -> Hal:
    """Build the backend called ``name`` from ``config``; an unknown name lists the valid ones."""
    try:
        module_name, factory = _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown HAL backend {name!r}; choose one of: {', '.join(_BACKENDS)}") from None
    module = importlib.import_module(module_name)
    hal: Hal = getattr(module, factory)(config, **options)
    return hal


__all__ = ["Hal", "ImuReading", "Sensors", "backend_names", "make_hal"]
