"""Benchmark: one control tick's I2C traffic, stock Adafruit driver calls vs plend's fast path.

Run with ``.venv/bin/python tests/benchmarks/bus_path.py [TICKS]``. Both paths run the
real drivers against the emulated chips at 400 kHz and move the same data: 16 PWM
channels, 16 feedback channels on four ADS1115, and the IMU's orientation, rate and
acceleration. Prints per tick: transactions, bytes, bus time (transfers plus waits) and
Python time (wall clock of this process, which on a Pi is several times larger).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from gaits.sine import stand_pose
from plend.core.config import Config, replace_section
from plend.daemon.runtime import robot_calibration
from plend.hal.emulated.robot import EmulatedHardwareHal, make_emulated_hardware_hal
from plend.model.robot import JOINTS


def measure(hal: EmulatedHardwareHal, tick: Callable[[], None], ticks: int) -> dict[str, float]:
    bus = hal.robot.bus
    t0, b0, now0 = bus.stats.transactions, bus.stats.bytes, bus.now
    walls = []
    for _ in range(ticks):
        began = time.perf_counter()
        tick()
        walls.append(time.perf_counter() - began)
    return {
        "transactions": (bus.stats.transactions - t0) / ticks,
        "bytes": (bus.stats.bytes - b0) / ticks,
        "bus_ms": (bus.now - now0) * 1000 / ticks,
        "python_ms": statistics.median(walls) * 1000,
    }


def stock_tick(hal: EmulatedHardwareHal) -> Callable[[], None]:
    """The drivers' own calls: one write per PWM channel, polled single-shot conversions,
    one read per IMU quantity."""
    from adafruit_ads1x15.ads1115 import ADS1115
    from adafruit_ads1x15.analog_in import AnalogIn
    from adafruit_bno055 import BNO055_I2C
    from adafruit_pca9685 import PCA9685

    bus = hal.robot.bus
    pca = PCA9685(bus, address=hal.config.pwm_address)
    pca.frequency = 50
    adcs = [ADS1115(bus, gain=1, data_rate=860, address=a) for a in hal.config.adc_addresses]
    inputs = [AnalogIn(ads, ch) for ads in adcs for ch in range(4)]
    bno = BNO055_I2C(bus, address=hal.config.imu_address)
    duty = [int(0xFFFF * 1500 / 20000)] * 16

    def tick() -> None:
        for channel, value in zip(pca.channels, duty, strict=True):
            channel.duty_cycle = value
        for analog in inputs:
            _ = analog.value
        _ = (bno.euler, bno.gyro, bno.acceleration)

    return tick


def fast_tick(hal: EmulatedHardwareHal) -> Callable[[], None]:
    pose = stand_pose()

    def tick() -> None:
        hal.read()
        hal.write(pose)

    return tick


def main() -> int:
    ticks = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    config = replace_section(Config(hal="hardware"), "hardware", bus="emulated", adc_sweep="full")
    hal = make_emulated_hardware_hal(config, robot_calibration(config))
    assert isinstance(hal, EmulatedHardwareHal)
    hal.open(0.02)
    hal.write = super(EmulatedHardwareHal, hal).write  # type: ignore[method-assign]  # no physics step
    hal.read = super(EmulatedHardwareHal, hal).read  # type: ignore[method-assign]
    results = {"fast": measure(hal, fast_tick(hal), ticks), "stock": measure(hal, stock_tick(hal), ticks)}
    hal.close()
    print(f"per tick ({ticks} ticks, 400 kHz): 16 PWM + 16 ADC + IMU")
    print(f"{'path':<6} {'transactions':>13} {'bytes':>8} {'bus ms':>8} {'python ms':>10}")
    for name, r in results.items():
        print(
            f"{name:<6} {r['transactions']:13.0f} {r['bytes']:8.0f} {r['bus_ms']:8.2f} {r['python_ms']:10.3f}"
        )
    s, f = results["stock"], results["fast"]
    print(
        f"stock / fast: {s['transactions'] / f['transactions']:.1f}x transactions, "
        f"{s['bus_ms'] / f['bus_ms']:.1f}x bus time, {s['python_ms'] / f['python_ms']:.1f}x Python time; "
        f"max rate {1000 / s['bus_ms']:.0f} Hz vs {1000 / f['bus_ms']:.0f} Hz"
    )
    wired = sum(1 for j in JOINTS if j.adc is not None)
    assert wired == 16 and np.isfinite(f["bus_ms"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
