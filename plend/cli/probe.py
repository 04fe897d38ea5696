"""``plend probe``: check a newly built robot's electronics, chip by chip.

Scans the bus, says which expected chips answer, shows their configuration, a few live
readings per feedback channel (raw and in radians), the BNO055's calibration status and
the measured time of each kind of transfer. Works on the emulated bus too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from plend.core.config import Config
from plend.core.errors import HalError
from plend.daemon.runtime import robot_calibration
from plend.hal import make_hal
from plend.hal.base import Diagnostics
from plend.hal.hardware import HardwareHal
from plend.model.robot import JOINTS, stand_pose
from plend.model.servo_map import angle_to_code

PERIOD_S = 0.02


def _timed(hal: Diagnostics, action: Callable[[], object], repeats: int = 20) -> tuple[float, float | None]:
    """Mean wall time (ms) of ``action``, and mean emulated bus time if there is one."""
    wall0, bus0 = time.perf_counter(), hal.bus_time()
    for _ in range(repeats):
        action()
    wall = (time.perf_counter() - wall0) * 1000 / repeats
    bus1 = hal.bus_time()
    bus = None if bus0 is None or bus1 is None else (bus1 - bus0) * 1000 / repeats
    return wall, bus


def _chips(hal: Diagnostics, found: set[int]) -> list[str]:
    lines = ["chips:"]
    expected = hal.expected_chips()
    for address, name in expected.items():
        lines.append(f"  0x{address:02x}  {name:<28} {'answers' if address in found else 'MISSING'}")
    extra = sorted(found - set(expected))
    if extra:
        lines.append("  also answering: " + " ".join(f"0x{a:02x}" for a in extra))
    return lines


def _configuration(hal: Diagnostics, config: Config) -> list[str]:
    hw = config.hardware
    mode1, prescale = hal.read_register(hw.pwm_address, 0x00), hal.read_register(hw.pwm_address, 0xFE)
    lines = ["configuration:"]
    if mode1 and prescale:
        freq = 25e6 / 4096 / (prescale[0] + 1)
        ai = "on" if mode1[0] & 0x20 else "OFF"
        lines.append(
            f"  PCA9685  MODE1 0x{mode1[0]:02x} (auto-increment {ai}), prescale {prescale[0]} = {freq:.1f} Hz"
        )
    for address in hw.adc_addresses:
        adc = hal.read_register(address, 0x01, 2)
        text = f"0x{int.from_bytes(adc, 'big'):04x}" if adc else "unreadable"
        lines.append(f"  ADS1115 0x{address:02x} config {text}, {hw.adc_data_rate} SPS, +-4.096 V")
    ident, mode, status, calib = (hal.read_register(hw.imu_address, r) for r in (0x00, 0x3D, 0x39, 0x35))
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
    # The transfers alone: on the emulated robot a write would also run the physics.
    for name, action in hal.transfers().items():
        wall, bus = _timed(hal, action)
        lines.append(f"  {name:<28} {wall:7.3f}" + ("" if bus is None else f"   bus {bus:6.3f}"))
    hal.relax()
    return lines


def probe(config: Config, samples: int = 3) -> tuple[int, str]:
    """Run the checks; return the exit code and the report."""
    hal = make_hal("hardware", config, robot_calibration(config), stand_pose())
    assert isinstance(hal, HardwareHal)  # real or emulated; its public diagnostics only
    lines = [f"plend probe: {config.hardware.bus} bus"]
    try:
        hal.open(PERIOD_S)
    except HalError as exc:
        return 1, "\n".join([*lines, f"error: {exc}"])
    try:
        found = hal.scan()
        lines += _chips(hal, found) + _configuration(hal, config) + _readings(hal, samples) + _timings(hal)
    finally:
        hal.close()
    return 0, "\n".join(lines)
