"""HAL backends, picked by name and imported only when asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from plend.core.errors import ConfigError
from plend.hal.base import Hal, ImuReading, Sensors

if TYPE_CHECKING:
    import numpy as np

    from plend.model.servo_map import Calibration

_BACKENDS = {
    "sim": ("plend.hal.sim", "make_sim_hal"),
    "hardware": ("plend.hal.hardware", "make_hardware_hal"),
}
# The hardware backend on ``[hardware] bus = "emulated"``: emulated chips driving the simulation.
_EMULATED = ("plend.hal.emulated.robot", "make_emulated_hardware_hal")


def backend_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_hal`."""
    return tuple(_BACKENDS)


def make_hal(
    name: str, config: Any, calibration: Calibration | None = None, initial_pose: np.ndarray | None = None
) -> Hal:
    """Build the backend called ``name`` from ``config``; an unknown name lists the valid ones.

    Args:
        name: "sim" or "hardware".
        config: the whole configuration (plend.core.config.Config).
        calibration: the servo calibration the hardware backend drives and reads through
            (the start-up code loads it); the simulation has none.
        initial_pose: where the simulated robot's joints start (default: the stand pose).
    """
    try:
        module_name, factory = _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown HAL backend {name!r}; choose one of: {', '.join(_BACKENDS)}") from None
    if name == "hardware" and config.hardware.bus == "emulated":
        module_name, factory = _EMULATED
    module = importlib.import_module(module_name)
    hal: Hal = getattr(module, factory)(config, calibration, initial_pose)
    return hal


__all__ = ["Hal", "ImuReading", "Sensors", "backend_names", "make_hal"]
