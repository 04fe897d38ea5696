"""The emulated I2C bus and chips, driven by the real Adafruit drivers, byte for byte."""

from __future__ import annotations

import errno
import math
import statistics
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

adafruit_pca9685 = pytest.importorskip("adafruit_pca9685")
adafruit_ads1x15 = pytest.importorskip("adafruit_ads1x15")
adafruit_bno055 = pytest.importorskip("adafruit_bno055")

from plend.hal.emulated import (  # noqa: E402  (after the skips: the drivers are optional)
    EmulatedADS1115,
    EmulatedBNO055,
    EmulatedI2C,
    EmulatedPCA9685,
    transaction_bits,
)

ADS_ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)
FS_GAIN_1 = 4.096
CONFIG_860_AIN0 = 0x8000 | 4 << 12 | 0x0200 | 0x0100 | 0x00E0 | 0x0003  # OS, AIN0, 4.096 V, single, 860
PRESCALE_50HZ = 121

Pwm = tuple[EmulatedI2C, EmulatedPCA9685, Any]  # bus, chip, driver
Adcs = tuple[EmulatedI2C, list[EmulatedADS1115], list[Any]]
Imu = tuple[EmulatedI2C, EmulatedBNO055, Any]


def expected_code(volts: float, full_scale: float = FS_GAIN_1) -> int:
    return max(-32768, min(32767, round(volts / full_scale * 32768)))


def read_reg(bus: EmulatedI2C, address: int, reg: int, n: int) -> bytes:
    buf = bytearray(n)
    bus.writeto_then_readfrom(address, bytes([reg]), buf)
    return bytes(buf)


def read_u16(bus: EmulatedI2C, address: int, reg: int) -> int:
    return int.from_bytes(read_reg(bus, address, reg, 2), "big")


def os_error(excinfo: pytest.ExceptionInfo[OSError]) -> int | None:
    return excinfo.value.errno


# -- the bus ---------------------------------------------------------------------------


def test_missing_address_nacks_like_i2c_dev() -> None:
    bus = EmulatedI2C()
    for call in (
        lambda: bus.writeto(0x33, b"\x00"),
        lambda: bus.readfrom_into(0x33, bytearray(2)),
        lambda: bus.writeto_then_readfrom(0x33, b"\x00", bytearray(2)),
    ):
        with pytest.raises(OSError, match="Remote I/O error") as excinfo:
            call()
        assert os_error(excinfo) == errno.EREMOTEIO
    assert (bus.stats.transactions, bus.stats.errors, bus.stats.bytes) == (3, 3, 3)
    assert bus.now == pytest.approx(3 * 11 / 400_000)  # START, address byte + NACK, STOP


def test_scan_lists_attached_chips_and_detach_removes_one() -> None:
    bus = EmulatedI2C()
    for chip in (EmulatedPCA9685(), EmulatedBNO055(), *(EmulatedADS1115(a) for a in ADS_ADDRESSES)):
        bus.attach(chip)
    assert bus.scan() == [0x28, 0x40, 0x48, 0x49, 0x4A, 0x4B]
    pca = adafruit_pca9685.PCA9685(bus)
    bus.detach(0x40)
    assert bus.scan() == [0x28, 0x48, 0x49, 0x4A, 0x4B]
    with pytest.raises(OSError) as excinfo:
        pca.channels[0].duty_cycle = 0x8000
    assert os_error(excinfo) == errno.EREMOTEIO
    with pytest.raises(ValueError, match="No I2C device at address: 0x40"):
        adafruit_pca9685.PCA9685(bus)  # adafruit_bus_device's probe turns the NACK into ValueError


def test_io_error_rate_one_fails_every_transaction_with_eio() -> None:
    bus = EmulatedI2C()
    pca = EmulatedPCA9685()
    bus.attach(pca)
    bus.faults.io_error_rate = 1.0
    with pytest.raises(OSError, match="Input/output error") as excinfo:
        bus.writeto(0x40, b"\x00\x20")
    assert os_error(excinfo) == errno.EIO
    with pytest.raises(OSError):
        read_reg(bus, 0x40, 0x00, 1)
    assert (bus.stats.errors, bus.stats.transactions) == (2, 2)
    assert pca.writes == []  # a failed transaction does not reach the chip
    bus.faults.io_error_rate = 0.0
    assert read_reg(bus, 0x40, 0x00, 1) == b"\x11"


def test_io_errors_are_reproducible_from_the_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        bus = EmulatedI2C(seed=seed)
        bus.attach(EmulatedPCA9685())
        bus.faults.io_error_rate = 0.3
        failed = []
        for _ in range(400):
            try:
                bus.writeto(0x40, b"\x06\x00")
                failed.append(False)
            except OSError:
                failed.append(True)
        assert bus.stats.errors == sum(failed)
        return failed

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 0.22 < sum(pattern(7)) / 400 < 0.38


def test_bus_time_of_a_pwm_burst_and_an_imu_burst() -> None:
    bus = EmulatedI2C(400_000)
    bus.attach(EmulatedPCA9685())
    bus.attach(EmulatedBNO055())
    bus.writeto(0x40, bytes(65))  # LED0_ON_L + 16 channels x 4 bytes
    assert bus.now == pytest.approx(1.5e-3, rel=0.3)
    start = bus.now
    read_reg(bus, 0x28, 0x08, 24)  # ACC, MAG, GYR, EUL: HARDWARE.md's "burst read", 0.6 ms
    assert bus.now - start == pytest.approx(0.6e-3, rel=0.3)
    start = bus.now
    read_reg(bus, 0x28, 0x08, 44)  # every data register, 0x08-0x33: 44 bytes cannot fit in 0.6 ms
    assert bus.now - start == pytest.approx(transaction_bits(1, 44) / 400_000)
    assert bus.now - start == pytest.approx(1.065e-3)


def test_advance_moves_the_clock_and_counts_as_bus_time() -> None:
    bus = EmulatedI2C(100_000)
    bus.advance(0.25)
    assert bus.now == bus.stats.bus_time_s == 0.25
    with pytest.raises(ValueError):
        bus.advance(-1.0)


def test_deinit_closes_the_bus() -> None:
    with EmulatedI2C() as bus:
        bus.attach(EmulatedPCA9685())
        assert bus.try_lock() and not bus.try_lock()
        bus.unlock()
    with pytest.raises(OSError) as excinfo:
        bus.writeto(0x40, b"\x00")
    assert os_error(excinfo) == errno.EBADF


def test_stock_driver_costs_match_hardware_md() -> None:
    bus = EmulatedI2C()
    bus.attach(EmulatedPCA9685())
    for address in ADS_ADDRESSES:
        bus.attach(EmulatedADS1115(address))
    pca = adafruit_pca9685.PCA9685(bus)
    adcs = [adafruit_ads1x15.ADS1115(bus, address=a, gain=1, data_rate=860) for a in ADS_ADDRESSES]
    inputs = [adafruit_ads1x15.AnalogIn(adc, ch) for adc in adcs for ch in range(4)]
    tick = bus.stats.transactions, bus.now
    for channel in pca.channels:
        channel.duty_cycle = 0x1333
    assert bus.stats.transactions - tick[0] == 16
    assert bus.now - tick[1] == pytest.approx(2.2e-3, rel=0.05)
    tick = bus.stats.transactions, bus.now
    for analog in inputs:
        analog.value  # noqa: B018
    assert bus.stats.transactions - tick[0] == 192
    assert bus.now - tick[1] == pytest.approx(22.6e-3, rel=0.05)


# -- PCA9685 ---------------------------------------------------------------------------


@pytest.fixture
def pwm() -> Iterator[Pwm]:
    bus = EmulatedI2C()
    chip = EmulatedPCA9685()
    bus.attach(chip)
    driver = adafruit_pca9685.PCA9685(bus)
    driver.frequency = 50
    chip.writes.clear()
    yield bus, chip, driver


def test_frequency_setter_writes_these_bytes() -> None:
    bus = EmulatedI2C()
    chip = EmulatedPCA9685()
    bus.attach(chip)
    assert chip.registers[0x00] == 0x11 and chip.registers[0xFE] == 0x1E
    driver = adafruit_pca9685.PCA9685(bus)
    driver.frequency = 50
    assert chip.writes == [
        b"",  # adafruit_bus_device's probe
        b"\x00\x00",  # reset(): MODE1 = 0, awake, auto-increment off
        b"\x00",  # the frequency setter reads MODE1 ...
        b"\x00\x10",  # ... sleeps,
        bytes([0xFE, PRESCALE_50HZ]),  # sets the prescaler,
        b"\x00\x00",  # wakes,
        b"\x00\xa0",  # and sets RESTART | AI
    ]
    assert chip.registers[0x00] == 0x20  # AI; RESTART reads 0
    assert chip.frequency_hz == pytest.approx(25e6 / (4096 * 122))
    assert driver.frequency == pytest.approx(50.03, abs=0.01)


def test_duty_cycle_gives_the_pulse(pwm: Pwm) -> None:
    _bus, chip, driver = pwm
    count_us = 1e6 / chip.frequency_hz / 4096
    driver.channels[5].duty_cycle = 307 << 4
    assert chip.writes == [bytes([0x06 + 20, 0, 0, 307 & 0xFF, 307 >> 8])]
    assert chip.pulse_us(5) == pytest.approx(307 * count_us)
    assert chip.pulse_us(5) == pytest.approx(1498.2, abs=0.1)
    driver.channels[5].duty_cycle = 0xFFFF
    assert chip.pulse_us(5) == pytest.approx(1e6 / chip.frequency_hz)
    driver.channels[5].duty_cycle = 0
    assert chip.pulse_us(5) is None


def test_one_burst_write_sets_all_sixteen_channels(pwm: Pwm) -> None:
    bus, chip, _driver = pwm
    payload = b"".join(struct.pack("<HH", 0, 250 + 10 * ch) for ch in range(16))
    before = bus.stats.transactions
    bus.writeto(0x40, b"\x06" + payload)
    assert bus.stats.transactions - before == 1
    count_us = 1e6 / chip.frequency_hz / 4096
    assert [chip.pulse_us(ch) for ch in range(16)] == pytest.approx(
        [(250 + 10 * ch) * count_us for ch in range(16)]
    )
    assert read_reg(bus, 0x40, 0x06, 64) == payload  # reads auto-increment too


def test_channel_write_before_the_frequency_lands_in_one_register() -> None:
    bus = EmulatedI2C()
    chip = EmulatedPCA9685()
    bus.attach(chip)
    driver = adafruit_pca9685.PCA9685(bus)  # MODE1 = 0: awake, AI off
    driver.channels[3].duty_cycle = 0x5000
    assert chip.writes[-1] == bytes([0x12, 0x00, 0x00, 0x00, 0x05])
    assert chip.registers[0x12:0x16] == bytes([0x05, 0x00, 0x00, 0x10])  # the last byte won; full-off stays
    assert chip.pulse_us(3) is None
    driver.frequency = 50
    driver.channels[3].duty_cycle = 0x5000
    assert chip.pulse_us(3) == pytest.approx(0x500 * 1e6 / chip.frequency_hz / 4096)


def test_prescale_is_ignored_while_awake(pwm: Pwm) -> None:
    bus, chip, _driver = pwm
    bus.writeto(0x40, bytes([0xFE, 30]))
    assert chip.registers[0xFE] == PRESCALE_50HZ
    bus.writeto(0x40, b"\x00\x30")  # SLEEP | AI
    bus.writeto(0x40, bytes([0xFE, 1]))
    assert chip.registers[0xFE] == 3  # the chip's minimum


def test_sleep_stops_the_outputs_until_restart(pwm: Pwm) -> None:
    bus, chip, driver = pwm
    driver.channels[0].duty_cycle = 0x5000
    bus.writeto(0x40, b"\x00\x30")  # SLEEP while a channel runs
    assert chip.pulse_us(0) is None
    assert read_reg(bus, 0x40, 0x00, 1) == b"\xb0"  # RESTART set
    bus.writeto(0x40, b"\x00\x20")  # awake, but the outputs wait for RESTART
    assert chip.pulse_us(0) is None
    bus.writeto(0x40, b"\x00\xa0")
    assert chip.pulse_us(0) is not None and read_reg(bus, 0x40, 0x00, 1) == b"\x20"


def test_all_led_full_off_turns_every_channel_off(pwm: Pwm) -> None:
    bus, chip, driver = pwm
    for channel in driver.channels:
        channel.duty_cycle = 0xFFFF
    bus.writeto(0x40, b"\xfd\x10")  # ALL_LED_OFF_H: full off wins over full on
    assert [chip.pulse_us(ch) for ch in range(16)] == [None] * 16
    assert read_reg(bus, 0x40, 0xFA, 4) == bytes(4)  # ALL_LED registers read as zero


def test_pulse_wraps_when_off_is_before_on(pwm: Pwm) -> None:
    bus, chip, _driver = pwm
    bus.writeto(0x40, b"\x0a" + struct.pack("<HH", 4000, 100))
    assert chip.pulse_us(1) == pytest.approx(196 * 1e6 / chip.frequency_hz / 4096)


@settings(max_examples=60, deadline=None)
@given(duty=st.integers(0, 0xFFFF), channel=st.integers(0, 15))
def test_any_duty_cycle_maps_to_its_pulse(duty: int, channel: int) -> None:
    bus = EmulatedI2C()
    chip = EmulatedPCA9685()
    bus.attach(chip)
    driver = adafruit_pca9685.PCA9685(bus)
    driver.mode1_reg = 0x10  # the frequency setter's steps without its 5 ms sleep
    driver.prescale_reg = PRESCALE_50HZ
    driver.mode1_reg = 0x20
    driver.channels[channel].duty_cycle = duty
    frame_us = 1e6 / chip.frequency_hz
    expected = None if duty < 0x10 else frame_us if duty == 0xFFFF else (duty >> 4) * frame_us / 4096
    assert chip.pulse_us(channel) == pytest.approx(expected)
    assert driver.channels[channel].duty_cycle == (
        0 if duty < 0x10 else 0xFFFF if duty == 0xFFFF else duty >> 4 << 4
    )


# -- ADS1115 ---------------------------------------------------------------------------


def volts(address: int, channel: int) -> float:
    return 0.3 + 0.9 * channel + 0.05 * (address - 0x48)


def inputs_of(address: int) -> Callable[[int], float]:
    return lambda channel: volts(address, channel)


@pytest.fixture
def adcs() -> Adcs:
    bus = EmulatedI2C()
    chips = [EmulatedADS1115(a, inputs_of(a), bus=bus) for a in ADS_ADDRESSES]
    drivers = [adafruit_ads1x15.ADS1115(bus, address=a, gain=1, data_rate=860) for a in ADS_ADDRESSES]
    return bus, chips, drivers


def test_all_sixteen_channels_read_their_voltages(adcs: Adcs) -> None:
    _bus, _chips, drivers = adcs
    for address, driver in zip(ADS_ADDRESSES, drivers, strict=True):
        for channel in range(4):
            analog = adafruit_ads1x15.AnalogIn(driver, channel)
            assert abs(analog.value - expected_code(volts(address, channel))) <= 1
            assert analog.voltage == pytest.approx(volts(address, channel), abs=FS_GAIN_1 / 32768)


def test_a_conversion_takes_one_over_the_data_rate(adcs: Adcs) -> None:
    bus, chips, _drivers = adcs
    chip = chips[0]
    bus.writeto(0x48, struct.pack(">BH", 1, CONFIG_860_AIN0))
    old = chip.conversion
    started = bus.now
    assert read_u16(bus, 0x48, 1) & 0x8000 == 0  # OS = 0: converting
    assert read_u16(bus, 0x48, 0) == old  # the previous result; reads never block
    read_cost = transaction_bits(1, 2) / bus.frequency_hz
    bus.advance(started + 1 / 860 - bus.now - read_cost - 1e-6)
    assert read_u16(bus, 0x48, 1) & 0x8000 == 0
    bus.advance(2e-6)
    assert read_u16(bus, 0x48, 1) & 0x8000
    assert read_u16(bus, 0x48, 0) == expected_code(volts(0x48, 0))


def test_the_driver_waits_for_the_conversion(adcs: Adcs) -> None:
    bus, chips, drivers = adcs
    chips[1].voltage = lambda ch: 1.0
    start = bus.now
    assert adafruit_ads1x15.AnalogIn(drivers[1], 2).value == expected_code(1.0)
    assert 1 / 860 < bus.now - start < 1 / 860 + 0.3e-3  # the driver polls OS every 120 us


def test_continuous_mode_converts_back_to_back() -> None:
    bus = EmulatedI2C()
    level = [0.5]
    chip = EmulatedADS1115(0x48, lambda ch: level[0], bus=bus)
    bus.writeto(0x48, struct.pack(">BH", 1, CONFIG_860_AIN0 & ~0x8100 & ~0x00E0))  # continuous, 8 SPS
    assert read_u16(bus, 0x48, 1) & 0x8000 == 0
    bus.advance(0.130)
    assert read_u16(bus, 0x48, 0) == expected_code(0.5)
    level[0] = 2.0
    assert read_u16(bus, 0x48, 0) == expected_code(0.5)  # held until the next conversion
    bus.advance(0.125)
    assert read_u16(bus, 0x48, 0) == expected_code(2.0)
    bus.advance(0.5)
    read_u16(bus, 0x48, 0)
    assert chip.conversions_done == 6


def test_stuck_code_and_noise(adcs: Adcs) -> None:
    _bus, chips, drivers = adcs
    chips[2].stuck_code = -1234
    assert [adafruit_ads1x15.AnalogIn(drivers[2], ch).value for ch in range(4)] == [-1234] * 4
    chips[2].stuck_code = None
    chips[3].noise_counts = 5.0
    analog = adafruit_ads1x15.AnalogIn(drivers[3], 1)
    samples = [analog.value for _ in range(300)]
    assert statistics.mean(samples) == pytest.approx(expected_code(volts(0x4B, 1)), abs=1.5)
    assert statistics.stdev(samples) == pytest.approx(5.0, rel=0.25)
    twins = [EmulatedADS1115(0x4B, chips[3].voltage) for _ in range(2)]
    for twin in twins:
        twin.noise_counts = 5.0
    runs = [[twin.code_for(CONFIG_860_AIN0) for _ in range(20)] for twin in twins]
    assert runs[0] == runs[1] and len(set(runs[0])) > 1  # seeded by the address


def test_full_scale_clamps_and_differential_inputs() -> None:
    bus = EmulatedI2C()
    inputs = {0: 5.0, 1: 0.2, 2: 3.3, 3: 0.0}
    EmulatedADS1115(0x48, inputs.__getitem__, bus=bus)
    adc = adafruit_ads1x15.ADS1115(bus, address=0x48, gain=1, data_rate=860)
    assert adafruit_ads1x15.AnalogIn(adc, 0).value == 32767
    assert adafruit_ads1x15.AnalogIn(adc, 1, 3).value == expected_code(0.2)
    assert adafruit_ads1x15.AnalogIn(adc, 0, 1).value == 32767
    inputs[1] = 5.0
    inputs[0] = 0.0
    assert adafruit_ads1x15.AnalogIn(adc, 0, 1).value == -32768
    adc.gain = 2 / 3
    assert adafruit_ads1x15.AnalogIn(adc, 1).value == expected_code(5.0, 6.144)
    adc.gain = 16
    assert adafruit_ads1x15.AnalogIn(adc, 2).value == 32767


@settings(max_examples=60, deadline=None)
@given(v=st.floats(-4.0, 4.0), gain=st.sampled_from([2 / 3, 1, 2, 4, 8, 16]))
def test_any_voltage_reads_within_one_code(v: float, gain: float) -> None:
    bus = EmulatedI2C()
    EmulatedADS1115(0x4A, lambda ch: v if ch == 0 else 0.0, bus=bus)
    adc = adafruit_ads1x15.ADS1115(bus, address=0x4A, gain=gain, data_rate=475)
    full_scale = {2 / 3: 6.144, 1: 4.096, 2: 2.048, 4: 1.024, 8: 0.512, 16: 0.256}[gain]
    assert abs(adafruit_ads1x15.AnalogIn(adc, 0, 1).value - expected_code(v, full_scale)) <= 1


# -- BNO055 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imu() -> Imu:
    """One driver for the module: its initialisation sleeps about 0.8 s of real time."""
    bus = EmulatedI2C()
    chip = EmulatedBNO055()
    bus.attach(chip)
    return bus, chip, adafruit_bno055.BNO055_I2C(bus)


def quat_about(axis: tuple[float, float, float], angle_deg: float) -> tuple[float, float, float, float]:
    half = math.radians(angle_deg) / 2
    return (math.cos(half), *(math.sin(half) * a for a in axis))  # type: ignore[return-value]


def rotation(q: tuple[float, ...]) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rz_rx_ry(heading: float, roll: float, pitch: float) -> np.ndarray:
    """Intrinsic z-x'-y'' rotation from the emulated chip's Euler angles (degrees)."""
    h, r, p = np.radians([heading, roll, pitch])
    rz = np.array([[np.cos(h), -np.sin(h), 0], [np.sin(h), np.cos(h), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    return rz @ rx @ ry


def test_driver_initialises_in_ndof(imu: Imu) -> None:
    _bus, chip, driver = imu
    assert driver.mode == adafruit_bno055.NDOF_MODE
    assert chip.resets == 1 and chip.page == 0
    assert driver._read_register(0x39) == 5  # SYS_STATUS: fusion running
    assert (driver.accel_range, driver.gyro_range, driver.magnet_rate) == (1, 0, 5)


ORIENTATIONS = [
    ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    (quat_about((0, 0, 1), 30), (330.0, 0.0, 0.0)),  # yaw left 30 deg: heading is clockwise
    (quat_about((1, 0, 0), 10), (0.0, -10.0, 0.0)),
    (quat_about((0, 1, 0), -20), (0.0, 0.0, 20.0)),  # nose up (y points left)
    ((0.9, 0.1, -0.2, 0.3), None),
]


@pytest.mark.parametrize(("quat", "euler"), ORIENTATIONS)
def test_outputs_follow_set_motion(
    imu: Imu,
    quat: tuple[float, float, float, float],
    euler: tuple[float, float, float] | None,
) -> None:
    _bus, chip, driver = imu
    gyro, accel = (0.3, -1.2, 2.5), (0.4, -0.7, 9.6)
    chip.set_motion(quat, gyro, accel)
    unit = np.array(quat) / np.linalg.norm(quat)
    assert driver.quaternion == pytest.approx(tuple(unit), abs=1.0 / (1 << 14))
    assert driver.gyro == pytest.approx(gyro, abs=math.radians(1 / 16))
    assert driver.acceleration == pytest.approx(accel, abs=0.01)
    gravity = rotation(tuple(unit)).T @ [0, 0, 9.80665]
    assert driver.gravity == pytest.approx(tuple(gravity), abs=0.01)
    assert driver.linear_acceleration == pytest.approx(tuple(np.subtract(accel, gravity)), abs=0.02)
    heading, roll, pitch = driver.euler
    if euler is not None:
        assert ((heading + 180) % 360 - 180, roll, pitch) == pytest.approx(
            ((euler[0] + 180) % 360 - 180, euler[1], euler[2]), abs=1 / 16
        )
    assert rz_rx_ry(heading, roll, pitch) == pytest.approx(rotation(tuple(unit)).T, abs=3e-3)


def test_one_burst_read_decodes_like_the_driver(imu: Imu) -> None:
    bus, chip, driver = imu
    chip.set_motion((0.9, 0.1, -0.2, 0.3), (0.3, -1.2, 2.5), (0.4, -0.7, 9.6))
    raw = read_reg(bus, 0x28, 0x08, 44)
    acc, _mag, gyr, eul = (struct.unpack_from("<3h", raw, offset) for offset in (0, 6, 12, 18))
    quat = struct.unpack_from("<4h", raw, 24)
    assert tuple(1 / 100 * v for v in acc) == driver.acceleration
    assert tuple(v * 0.001090830782496456 for v in gyr) == driver.gyro
    assert tuple(v / 16 for v in eul) == driver.euler
    assert tuple(v / (1 << 14) for v in quat) == driver.quaternion


def test_config_mode_zeroes_every_output(imu: Imu) -> None:
    bus, chip, driver = imu
    chip.set_motion((0.9, 0.1, -0.2, 0.3), (0.3, -1.2, 2.5), (0.4, -0.7, 9.6))
    driver.mode = adafruit_bno055.CONFIG_MODE
    try:
        assert read_reg(bus, 0x28, 0x08, 44) == bytes(44)
        assert driver._read_register(0x39) == 0
    finally:
        driver.mode = adafruit_bno055.NDOF_MODE
    assert read_reg(bus, 0x28, 0x08, 44) != bytes(44)


def test_calibration_status(imu: Imu) -> None:
    _bus, chip, driver = imu
    chip.calib_status = 0b11_10_01_00
    assert driver.calibration_status == (3, 2, 1, 0)
    assert not driver.calibrated
    chip.calib_status = 0xFF
    assert driver.calibrated


def test_offsets_round_trip(imu: Imu) -> None:
    bus, chip, driver = imu
    driver.offsets_accelerometer = (12, -34, 56)
    driver.offsets_gyroscope = (-1, 2, -3)
    driver.radius_magnetometer = 480
    assert chip.offsets[:6] == struct.pack("<3h", 12, -34, 56)
    assert chip.offsets[12:18] == struct.pack("<3h", -1, 2, -3)
    assert chip.offsets[20:] == struct.pack("<h", 480)
    chip.offsets = struct.pack("<11h", *range(-5, 6))
    assert driver.offsets_magnetometer == (-2, -1, 0)
    assert driver.mode == adafruit_bno055.NDOF_MODE
    bus.writeto(0x28, b"\x55\x7f")  # ignored outside CONFIG mode
    assert chip.offsets[0] == 0xFB
    assert read_reg(bus, 0x28, 0x55, 22) == chip.offsets  # readable in any mode


def test_reset_restores_power_on_registers_and_can_be_busy() -> None:
    bus = EmulatedI2C()
    chip = EmulatedBNO055()
    bus.attach(chip)
    chip.reset_busy_s = 0.65
    chip.offsets = bytes(range(22))
    bus.writeto(0x28, b"\x3d\x0c")
    assert chip.mode == 0x0C
    bus.writeto(0x28, b"\x3f\x20")  # SYS_TRIGGER: reset
    with pytest.raises(OSError) as excinfo:
        read_reg(bus, 0x28, 0x00, 1)
    assert os_error(excinfo) == errno.EREMOTEIO
    bus.advance(0.65)
    assert read_reg(bus, 0x28, 0x00, 7) == bytes((0xA0, 0xFB, 0x32, 0x0F, 0x11, 0x03, 0x15))
    assert chip.mode == 0 and chip.offsets == bytes(22)
    assert read_reg(bus, 0x28, 0x3B, 1) == b"\x80"


@settings(max_examples=200, deadline=None)
@given(q=st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: sum(c * c for c in q) > 0.01))
def test_euler_convention_is_z_x_y_of_the_inverse_rotation(q: tuple[float, float, float, float]) -> None:
    from plend.hal.emulated import euler_from_quaternion

    unit = tuple(np.array(q) / np.linalg.norm(q))
    heading, roll, pitch = euler_from_quaternion(unit)
    assert 0 <= heading < 360 and -90 <= roll <= 90 and -180 <= pitch <= 180
    if abs(roll) < 89:  # gimbal lock leaves heading and pitch ambiguous
        assert rz_rx_ry(heading, roll, pitch) == pytest.approx(rotation(unit).T, abs=1e-6)


def test_imports_neither_blinka_nor_a_driver() -> None:
    code = (
        "import sys\n"
        "sys.modules['board'] = sys.modules['busio'] = None  # importing them now fails\n"
        "import plend.hal.emulated\n"
        "bad = [m for m in sys.modules if m.startswith(('adafruit', 'board', 'busio', 'micropython'))]\n"
        "assert bad == ['board', 'busio'], bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
