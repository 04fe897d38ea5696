"""The simulation's servos as identified on the robot: ``[sim] servo_model`` resolved.

``plenctl calibrate --servos`` keeps each servo's fitted model in the calibration file's
``servos`` section; with ``[sim] servo_model = "calibration"`` (the state directory's
calibration file) or a file's path (``plend run --servo-model FILE``) the simulation
drives each of those joints with it. The composition root calls :func:`apply_servo_model`
once, before anything is built; the file is read there, never on the control thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from plend.core.config import Config
from plend.core.errors import ConfigError

log = logging.getLogger("plend.sim")


def servo_model_path(config: Config) -> Path | None:
    """The calibration file ``[sim] servo_model`` names, or None."""
    source = config.sim.servo_model.strip()
    if not source:
        return None
    if source == "calibration":
        return Path(config.paths.state_dir) / "calibration.json"
    return Path(source).expanduser()


def apply_servo_model(config: Config) -> Config:
    """``config`` whose ``[sim.servo]`` joints are those of the servo model it names.

    Raises:
        ConfigError: the file cannot be read, is not a valid calibration file, or holds
            no identified servos; the message names it and what to do.
    """
    from calibration.store import SERVO_MODEL_KEYS, CalibrationError, load

    path = servo_model_path(config)
    if path is None:
        return config
    if not path.name or os.path.isdir(path):  # "/", ".", a directory: no calibration file
        raise ConfigError(
            f"sim.servo_model: {path} is a directory; give the path of a calibration file "
            "(calibration.json, written by 'plenctl calibrate --servos')"
        )
    try:
        record = load(path)
    except CalibrationError as exc:
        raise ConfigError(f"sim.servo_model: {exc}") from None
    if not record.servos:
        raise ConfigError(
            f"sim.servo_model: {path} holds no identified servos; measure them with "
            "'plenctl calibrate --servos', or leave servo_model out"
        )
    world = config.sim
    joints = {name: dict(table) for name, table in world.servo.joints.items()}
    for name, found in record.servos.items():
        joints[name] = {**joints.get(name, {}), **{k: getattr(found, k) for k in SERVO_MODEL_KEYS}}
        if found.rate_hz != config.loop.rate_hz or found.substeps != world.substeps:
            log.warning(
                "%s's servo was identified for %g Hz with %d substeps; this simulation runs %g Hz with %d: "
                "PyBullet's motor follows at a different pace", name, found.rate_hz, found.substeps,
                config.loop.rate_hz, world.substeps,
            )  # fmt: skip
    servo = dataclasses.replace(world.servo, joints=joints)
    log.info("simulated servos of %d joints from %s", len(record.servos), path)
    return dataclasses.replace(config, sim=dataclasses.replace(world, servo=servo))
