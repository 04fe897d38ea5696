"""Register-level emulations of plend's I2C chips on an emulated bus with a time model.

The real Adafruit drivers run against :class:`EmulatedI2C` unmodified, byte for byte, so
the hardware backend can be tested (and its bus time measured) without a robot. Nothing
here imports ``board``, ``busio`` or a chip driver.

- :class:`EmulatedI2C`: the bus (``busio.I2C`` methods, emulated clock, stats, faults).
- :class:`EmulatedPCA9685`: the 16-channel PWM board (0x40).
- :class:`EmulatedADS1115`: the servo feedback ADCs (0x48-0x4B).
- :class:`EmulatedBNO055`: the IMU (0x28).
"""

from __future__ import annotations

from plend.hal.emulated.ads1115 import EmulatedADS1115
from plend.hal.emulated.bno055 import EmulatedBNO055, euler_from_quaternion
from plend.hal.emulated.bus import BusStats, EmulatedChip, EmulatedI2C, FaultInjector, transaction_bits
from plend.hal.emulated.pca9685 import EmulatedPCA9685

__all__ = [
    "BusStats",
    "EmulatedADS1115",
    "EmulatedBNO055",
    "EmulatedChip",
    "EmulatedI2C",
    "EmulatedPCA9685",
    "FaultInjector",
    "euler_from_quaternion",
    "transaction_bits",
]
