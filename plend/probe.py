"""``plend probe``: check a newly built robot's electronics, chip by chip.

Scans the bus, says which expected chips answer, shows their configuration, a few live
readings per feedback channel (raw and in radians), the BNO055's calibration status and
the measured time of each kind of transfer. Works on the emulated bus too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from plend.config import Config
from plend.errors import HalError
from plend.hal.hardware import HardwareHal, make_hardware_hal
from plend.robot import JOINTS, stand_pose
from plend.servo_map import angle_to_code

PERIOD_S = 0.02


def _register(hal: HardwareHal, device: Any, register: int, length: int = 1) -> bytes | None:
    buf = bytearray(length)
    return bytes(buf) if hal._transfer(device, bytes([register]), buf) else None


def _timed(hal: HardwareHal, action: Callable[[], object], repeats: int = 20) -> tuple[float, float | None]:
    """Mean wall time (ms) of ``action``, and mean emulated bus time if there is one."""
    bus_now = getattr(hal.bus, "now", None)
    wall0, bus0 = time.perf_counter(), bus_now
    for _ in range(repeats):
        action()
    wall = (time.perf_counter() - wall0) * 1000 / repeats
    bus = None if bus0 is None else (hal.bus.now - bus0) * 1000 / repeats
    return wall, bus


def _chips(hal: HardwareHal, found: set[int]) -> list[str]:
    lines = ["chips:"]
    for address, name in hal._expected().items():
        lines.append(f"  0x{address:02x}  {name:<28} {'answers' if address in found else 'MISSING'}")
    extra = sorted(found - set(hal._expected()))
    if extra:
        lines.append("  also answering: " + " ".join(f"0x{a:02x}" for a in extra))
    return lines


def _configuration(hal: HardwareHal) -> list[str]:
    mode1, prescale = _register(hal, hal._pwm, 0x00), _register(hal, hal._pwm, 0xFE)
    lines = ["configuration:"]
    if mode1 and prescale:
        freq = 25e6 / 4096 / (prescale[0] + 1)
        ai = "on" if mode1[0] & 0x20 else "OFF"
        lines.append(
            f"  PCA9685  MODE1 0x{mode1[0]:02x} (auto-increment {ai}), prescale {prescale[0]} = {freq:.1f} Hz"
        )
    for address, device in zip(hal.config.adc_addresses, hal._adcs, strict=True):
        config = _register(hal, device, 0x01, 2)
        text = f"0x{int.from_bytes(config, 'big'):04x}" if config else "unreadable"
        lines.append(f"  ADS1115 0x{address:02x} config {text}, {hal.config.adc_data_rate} SPS, +-4.096 V")
    ident, mode, status, calib = (_register(hal, hal._bno, r) for r in (0x00, 0x3D, 0x39, 0x35))
    if ident and mode and status and calib:
        c = calib[0]
        lines.append(
            f"  BNO055   chip id 0x{ident[0]:02x}, mode 0x{mode[0]:02x}, system status {status[0]}, "
            f"calibration sys {c >> 6 & 3}/3 gyro {c >> 4 & 3}/3 accel {c >> 2 & 3}/3 mag {c & 3}/3"
        )
    return lines


def _readings(hal: HardwareHal, samples: int) -> list[str]:
    readings = []
    for _ in range(samples):
        sensors = hal.read()
        readings.append(sensors.joint_pos)
    lines = ["feedback (code = raw ADC value, angle in rad, from the calibration):"]
    for j in JOINTS:
        if j.adc is None:
            continue
        cal = hal.calibration.joints[j.name]
        cells = "  ".join(f"{round(angle_to_code(r[j.index], cal)):6d} {r[j.index]:+.3f}" for r in readings)
        lines.append(f"  {j.name:<22} 0x{j.adc.address:02x}/{j.adc.channel}  {cells}")
    imu = hal.read().imu
    roll, pitch, yaw = np.degrees(imu.euler)
    lines.append(
        f"imu: roll {roll:+.1f} pitch {pitch:+.1f} yaw {yaw:+.1f} deg, accel {np.round(imu.accel, 2)} m/s2"
    )
    return lines


def _timings(hal: HardwareHal) -> list[str]:
    lines = ["transfer times (wall ms; bus ms on the emulated bus):"]
    # The base class's transfers only: the emulated backend's write also runs the physics.
    cases = {
        "16 PWM channels, one burst": lambda: HardwareHal.write(hal, stand_pose()),
        "16 ADC channels, 4 in parallel": lambda: hal._sweep([0, 1, 2, 3]),
        "IMU data, one burst": hal._read_imu,
    }
    for name, action in cases.items():
        wall, bus = _timed(hal, action)
        lines.append(f"  {name:<28} {wall:7.3f}" + ("" if bus is None else f"   bus {bus:6.3f}"))
    hal.relax()
    return lines


def probe(config: Config, samples: int = 3) -> tuple[int, str]:
    """Run the checks; return the exit code and the report."""
    hal = make_hardware_hal(config, stand_pose())
    lines = [f"plend probe: {config.hardware.bus} bus"]
    try:
        hal.open(PERIOD_S)
    except HalError as exc:
        return 1, "\n".join([*lines, f"error: {exc}"])
    try:
        found = hal.scan()
        lines += _chips(hal, found) + _configuration(hal) + _readings(hal, samples) + _timings(hal)
    finally:
        hal.close()
    return 0, "\n".join(lines)
