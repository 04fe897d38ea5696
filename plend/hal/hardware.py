"""The robot's backend: PCA9685 servos, four ADS1115 feedback ADCs and a BNO055 on I2C.

The Adafruit drivers set the chips up (frequency before any channel, gain and data rate,
fusion mode). The per-tick path then uses the drivers' I2C devices directly, because the
stock calls cap the loop near 30 Hz: all 16 PWM channels in one auto-increment burst,
the four ADCs converting in parallel with timed waits instead of polling, and the IMU's
data registers in one burst read. Every transaction is retried once; a source that keeps
failing goes stale (the supervisor then acts) and is named in ``faults``. All I2C stays
on the control thread. Nothing here imports a driver or Blinka until :meth:`open`.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plend.core.config import Config, HardwareConfig
from plend.core.errors import HalError
from plend.hal.base import Calibratable, Diagnostics, Hal, ImuReading, Sensors, StatusReport
from plend.model.robot import JOINTS, NUM_JOINTS, stand_pose
from plend.model.servo_map import Calibration, JointCalibration, angle_to_pulse_us, code_to_angle

log = logging.getLogger("plend.hardware")

_LED0_ON_L = 0x06
_ALL_LED_OFF_H = 0xFD
_FULL_OFF = 0x10
_ADS_CONVERSION, _ADS_CONFIG = 0x00, 0x01
_ADS_RATE_BITS = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}
_BNO_DATA = 0x08  # ACC_DATA_X_LSB: accel, mag, gyro, euler, quaternion (up to 0x27)
_BNO_DATA_LEN = 0x28 - 0x08
_BNO_OPR_MODE, _BNO_CONFIG, _BNO_NDOF, _BNO_OFFSETS = 0x3D, 0x00, 0x0C, 0x55
_BNO_CALIB_STAT = 0x35
# Rough cost of one tick's transfers at 400 kHz, to decide whether a full ADC sweep fits.
_SWEEP_S, _OTHER_S = 0.0062, 0.0020


@dataclass
class BusCounters:
    """Transactions this backend made, and the failures."""

    transactions: int = 0
    retries: int = 0
    failures: int = 0
    missed_writes: int = 0


def ads_single_shot_config(channel: int, data_rate: int) -> int:
    """ADS1115 config word: start one conversion of AIN``channel`` at gain 1 (+-4.096 V)."""
    mux = 4 + channel
    return 0x8000 | (mux << 12) | (1 << 9) | (1 << 8) | (_ADS_RATE_BITS[data_rate] << 5) | 0x03


def quat_to_euler(w: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    """Roll, pitch, yaw (rad) of a unit quaternion (torso to world, z up)."""
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


class HardwareHal(Hal, Calibratable, StatusReport, Diagnostics):
    """The real robot (or its emulation) behind the HAL interface."""

    name = "hardware"

    def __init__(
        self,
        config: HardwareConfig,
        calibration: Calibration,
        bus_factory: Callable[[], Any],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.calibration = calibration
        self._bus_factory = bus_factory
        self._sleep = sleep
        self._clock = clock
        self.bus: Any = None
        self.counters = BusCounters()
        self._pwm_channels = [
            (j.pwm_channel, j.index, calibration.joints[j.name]) for j in JOINTS if j.pwm_channel is not None
        ]
        self._feedback = [j.index for j in JOINTS if j.adc is not None]
        self._joint_pos = np.full(NUM_JOINTS, np.nan)
        self._codes = np.full(NUM_JOINTS, np.nan)
        self._joint_stamp = np.full(NUM_JOINTS, -np.inf)
        self._imu = ImuReading((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
        self._imu_stamp = -math.inf
        self._faults: dict[str, str] = {}
        self._last_error: BaseException | str = "I/O error"
        self._next_channel = 0
        self.round_robin = False

    # -- life cycle ---------------------------------------------------------------------

    def open(self, tick_period_s: float) -> None:
        if self.bus is not None:
            raise HalError("hardware is already open")
        if self.calibration.problem:
            log.error("%s; the servos stay relaxed until the robot is calibrated", self.calibration.problem)
        elif not self.calibration.measured:
            log.warning(
                "NO SERVO CALIBRATION: using built-in defaults (no horn offsets, default feedback fit); "
                "joints will be off by several degrees. Run 'plenctl calibrate' before walking."
            )
        self.bus = self._bus_factory()
        self._check_chips()
        for chip, set_up in (
            ("PCA9685", self._set_up_pwm),
            ("ADS1115", self._set_up_adcs),
            ("BNO055", self._set_up_imu),
        ):
            try:
                set_up()
            except (OSError, RuntimeError, ValueError) as exc:
                self.close()
                raise HalError(
                    f"{chip} set-up failed: {exc}; check its wiring and power, then restart"
                ) from exc
        self._sweep([0, 1, 2, 3])  # every joint read once before the first tick
        self._read_imu()
        sweep = self.config.adc_sweep
        self.round_robin = sweep == "round_robin" or (
            sweep == "auto" and 0.8 * tick_period_s < _SWEEP_S + _OTHER_S
        )
        log.info(
            "hardware up: PCA9685 0x%02x, ADS1115 %s, BNO055 0x%02x; ADC %s",
            self.config.pwm_address,
            " ".join(f"0x{a:02x}" for a in self.config.adc_addresses),
            self.config.imu_address,
            "round-robin (one channel per chip a tick)" if self.round_robin else "full sweep every tick",
        )

    def expected_chips(self) -> dict[int, str]:
        """The chips this robot should have: I2C address -> what it is."""
        chips = {self.config.pwm_address: "PCA9685 (servo PWM)", self.config.imu_address: "BNO055 (IMU)"}
        chips.update({a: f"ADS1115 #{i} (servo feedback)" for i, a in enumerate(self.config.adc_addresses)})
        return chips

    def scan(self) -> set[int]:
        """Addresses that answer on the bus."""
        while not self.bus.try_lock():
            pass
        try:
            return set(self.bus.scan())
        finally:
            self.bus.unlock()

    def _check_chips(self) -> None:
        found = self.scan()
        missing = [f"{name} at 0x{a:02x}" for a, name in self.expected_chips().items() if a not in found]
        if missing:
            answered = ", ".join(f"0x{a:02x}" for a in sorted(found)) or "none"
            self.close()
            raise HalError(
                f"missing on the I2C bus: {'; '.join(missing)}. Addresses that answered: {answered}. "
                "Check wiring, power and address jumpers ('i2cdetect -y 1' lists the bus)."
            )

    def _set_up_pwm(self) -> None:
        from adafruit_pca9685 import PCA9685

        pca = PCA9685(self.bus, address=self.config.pwm_address)
        pca.frequency = self.config.pwm_frequency_hz  # before any channel: turns auto-increment on
        self._pwm = pca.i2c_device
        self._pwm_hz = float(pca.frequency)  # what the prescale gives, not what was asked
        self._counts_per_us = self._pwm_hz * 4096 / 1e6
        self._transfer(self._pwm, bytes([_ALL_LED_OFF_H, _FULL_OFF]))  # servos unpowered until asked

    def _set_up_adcs(self) -> None:
        from adafruit_ads1x15.ads1115 import ADS1115

        rate = self.config.adc_data_rate
        self._adcs = [
            ADS1115(self.bus, gain=1, data_rate=rate, address=a).i2c_device for a in self.config.adc_addresses
        ]
        self._adc_wait = 1.1 / rate + 20e-6
        self._adc_starts = [
            bytes([_ADS_CONFIG, *ads_single_shot_config(ch, rate).to_bytes(2, "big")]) for ch in range(4)
        ]
        by_input = {(j.adc.address, j.adc.channel): j for j in JOINTS if j.adc is not None}
        self._adc_joints = [
            [by_input.get((a, ch)) for a in self.config.adc_addresses] for ch in range(4)
        ]  # [channel][chip] -> joint or None

    def _set_up_imu(self) -> None:
        from adafruit_bno055 import BNO055_I2C

        bno = BNO055_I2C(self.bus, address=self.config.imu_address)  # resets, then NDOF fusion
        self._bno = bno.i2c_device
        offsets = self.calibration.imu_offsets
        if offsets:
            # Offsets are writable in CONFIG mode only (datasheet 3.6.4); 19 ms to switch
            # into it, 7 ms out of it.
            self._transfer(self._bno, bytes([_BNO_OPR_MODE, _BNO_CONFIG]))
            self._sleep(0.025)
            restored = self._transfer(self._bno, bytes([_BNO_OFFSETS, *offsets]))
            self._transfer(self._bno, bytes([_BNO_OPR_MODE, _BNO_NDOF]))
            self._sleep(0.01)
            log.info("BNO055 calibration offsets %s", "restored" if restored else "NOT restored (I/O error)")

    def close(self) -> None:
        if self.bus is None:
            return
        try:
            if hasattr(self, "_pwm"):
                self.relax()
        finally:
            deinit = getattr(self.bus, "deinit", None)
            if deinit is not None:
                deinit()
            self.bus = None

    # -- per tick ------------------------------------------------------------------------

    def read(self) -> Sensors:
        self._require()
        self._sweep([self._next_channel] if self.round_robin else [0, 1, 2, 3])
        self._next_channel = (self._next_channel + 1) % 4
        self._read_imu()
        now = self._clock()
        return Sensors(
            stamp=now, joint_pos=self._joint_pos.copy(), imu=self._imu, contacts=(False, False),
            faults=tuple(f"{k}: {v}" for k, v in self._faults.items()),
            joint_stamp=float(self._joint_stamp[self._feedback].min()), imu_stamp=self._imu_stamp,
        )  # fmt: skip

    def _sweep(self, channels: list[int]) -> None:
        """Read ``channels`` on all four ADCs, converting in parallel: each chip's next
        conversion starts right after its last result is read, and each read waits only
        until that chip's own conversion must be done, so the waits overlap the traffic."""
        started = [self._start(i, channels[0]) for i in range(len(self._adcs))]
        for k, channel in enumerate(channels):
            for i in range(len(self._adcs)):
                began = started[i]
                if began is not None:
                    self._wait_until(began + self._adc_wait)
                self._collect(i, channel, ok=began is not None)
                if k + 1 < len(channels):
                    started[i] = self._start(i, channels[k + 1])

    def _start(self, chip: int, channel: int) -> float | None:
        ok = self._transfer(self._adcs[chip], self._adc_starts[channel])
        return self._clock() if ok else None

    def _wait_until(self, deadline: float) -> None:
        delay = deadline - self._clock()
        if delay > 0:
            self._sleep(delay)

    def _collect(self, chip: int, channel: int, ok: bool) -> None:
        name = f"ADS1115 at 0x{self.config.adc_addresses[chip]:02x}"
        buf = bytearray(2)
        if not ok or not self._transfer(self._adcs[chip], bytes([_ADS_CONVERSION]), buf):
            self._fault(name, "conversion not read")
            return
        self._clear(name)
        j = self._adc_joints[channel][chip]
        if j is not None:
            code = int.from_bytes(buf, "big", signed=True)
            self._codes[j.index] = code
            self._joint_pos[j.index] = code_to_angle(code, self.calibration.joints[j.name])
            self._joint_stamp[j.index] = self._clock()

    def _read_imu(self) -> None:
        buf = bytearray(_BNO_DATA_LEN)
        name = f"BNO055 at 0x{self.config.imu_address:02x}"
        if not self._transfer(self._bno, bytes([_BNO_DATA]), buf):
            self._fault(name, "data not read")
            return
        self._clear(name)
        ax, ay, az = struct.unpack_from("<hhh", buf, 0x08 - _BNO_DATA)
        gx, gy, gz = struct.unpack_from("<hhh", buf, 0x14 - _BNO_DATA)
        qw, qx, qy, qz = (v / 16384.0 for v in struct.unpack_from("<hhhh", buf, 0x20 - _BNO_DATA))
        dps = math.pi / 180.0 / 16.0
        self._imu = ImuReading(
            quat=(qw, qx, qy, qz), euler=quat_to_euler(qw, qx, qy, qz),
            gyro=(gx * dps, gy * dps, gz * dps), accel=(ax / 100.0, ay / 100.0, az / 100.0),
        )  # fmt: skip
        self._imu_stamp = self._clock()

    def write(self, targets: np.ndarray) -> None:
        self._write_frame(targets, None)

    def write_some(self, targets: np.ndarray, powered: np.ndarray) -> None:
        self._write_frame(targets, powered)

    def _write_frame(self, targets: np.ndarray, powered: np.ndarray | None) -> None:
        self._require()
        frame = bytearray(1 + 64)
        frame[0] = _LED0_ON_L
        for channel, index, cal in self._pwm_channels:
            if powered is not None and not powered[index]:
                off = _FULL_OFF << 8  # the channel's full-off bit: no pulse at all
            else:
                off = self._counts(float(targets[index]), cal)
            struct.pack_into("<HH", frame, 1 + 4 * channel, 0, off)
        if not self._transfer(self._pwm, bytes(frame)):
            self.counters.missed_writes += 1
            self._fault(f"PCA9685 at 0x{self.config.pwm_address:02x}", "servo write lost")

    def relax(self) -> None:
        self._require()
        if not self._transfer(self._pwm, bytes([_ALL_LED_OFF_H, _FULL_OFF])):
            self.counters.missed_writes += 1

    # -- calibration ---------------------------------------------------------------------

    def raw_code(self, index: int) -> float:
        """The last feedback ADC code of joint ``index`` (NaN before the first read)."""
        return float(self._codes[index])

    def feedback_stamp(self, index: int) -> float:
        """When joint ``index``'s feedback was last read (-inf before the first read)."""
        return float(self._joint_stamp[index])

    @property
    def pwm_frame_s(self) -> float | None:
        """The PCA9685's frame period: a pulse written now reaches the servos at the start
        of the next frame (None before the chip is set up)."""
        hz = getattr(self, "_pwm_hz", None)
        return None if hz is None else 1.0 / hz

    def pulse_us(self, index: int, angle_rad: float) -> float:
        """The pulse the PCA9685 actually produces for ``angle_rad`` (whole counts)."""
        return self._counts(angle_rad, self.calibration.joints[JOINTS[index].name]) / self._counts_per_us

    def _counts(self, angle_rad: float, cal: JointCalibration) -> int:
        """The PCA9685 OFF count that makes the pulse for ``angle_rad``."""
        return max(0, min(4095, round(angle_to_pulse_us(angle_rad, cal) * self._counts_per_us)))

    def set_calibration(self, calibration: Calibration) -> None:
        """Drive and read every joint through ``calibration`` from the next tick on."""
        self.calibration = calibration
        self._pwm_channels = [(c, i, calibration.joints[JOINTS[i].name]) for c, i, _ in self._pwm_channels]
        for j in JOINTS:
            code = self._codes[j.index]
            if j.adc is not None and math.isfinite(code):
                self._joint_pos[j.index] = code_to_angle(code, calibration.joints[j.name])

    def imu_calibration_status(self) -> int | None:
        """The BNO055's CALIB_STAT byte (sys, gyro, accel, mag; two bits each), or None."""
        buf = bytearray(1)
        return buf[0] if self._transfer(self._bno, bytes([_BNO_CALIB_STAT]), buf) else None

    def read_imu_offsets(self) -> tuple[int, ...]:
        """The BNO055's 22 calibration offset bytes, read in CONFIG mode (about 35 ms).

        Raises:
            HalError: The chip did not answer.
        """
        buf = bytearray(22)
        ok = self._transfer(self._bno, bytes([_BNO_OPR_MODE, _BNO_CONFIG]))
        self._sleep(0.025)
        ok = ok and self._transfer(self._bno, bytes([_BNO_OFFSETS]), buf)
        back = self._transfer(self._bno, bytes([_BNO_OPR_MODE, _BNO_NDOF]))
        self._sleep(0.01)
        if not (ok and back):
            raise HalError(
                f"BNO055 at 0x{self.config.imu_address:02x} did not answer while its offsets were read"
            )
        return tuple(buf)

    # -- diagnostics (plend probe) --------------------------------------------------------

    def read_register(self, address: int, register: int, length: int = 1) -> bytes | None:
        """``length`` bytes from ``register`` of the chip at ``address`` (retried once), or
        None when it did not answer."""
        self._require()
        devices = {self.config.pwm_address: self._pwm, self.config.imu_address: self._bno}
        devices.update(zip(self.config.adc_addresses, self._adcs, strict=True))
        if address not in devices:
            raise HalError(f"no chip of this robot at 0x{address:02x}; expected: {sorted(devices)}")
        buf = bytearray(length)
        return bytes(buf) if self._transfer(devices[address], bytes([register]), buf) else None

    def transfers(self) -> dict[str, Callable[[], object]]:
        """The per-tick transfers, one call each, as the loop makes them (the servo burst
        holds the stand pose)."""
        pose = stand_pose()
        return {
            "16 PWM channels, one burst": lambda: self._write_frame(pose, None),
            "16 ADC channels, 4 in parallel": lambda: self._sweep([0, 1, 2, 3]),
            "IMU data, one burst": self._read_imu,
        }

    def bus_time(self) -> float | None:
        """A real bus has no clock of its own."""
        return None

    # -- transfers -----------------------------------------------------------------------

    def _transfer(self, device: Any, out: bytes, into: bytearray | None = None) -> bool:
        """One write (or write-then-read), retried once; False if both tries failed."""
        for attempt in (0, 1):
            self.counters.transactions += 1
            try:
                with device as i2c:
                    if into is None:
                        i2c.write(out)
                    else:
                        i2c.write_then_readinto(out, into)
                return True
            except OSError as exc:
                if attempt:
                    self.counters.failures += 1
                    self._last_error = exc
                else:
                    self.counters.retries += 1
        return False

    def _fault(self, chip: str, what: str) -> None:
        if chip not in self._faults:
            log.error("%s: %s (%s)", chip, what, self._last_error)
        self._faults[chip] = f"{what} ({self._last_error})"

    def _clear(self, chip: str) -> None:
        if self._faults.pop(chip, None) is not None:
            log.info("%s answers again", chip)

    def _require(self) -> None:
        if self.bus is None:
            raise HalError("hardware is not open; call open() first")

    def status(self) -> dict[str, Any]:
        """Bus figures and the ADC mode, for plenctl status."""
        return {
            "adc": "round-robin" if self.round_robin else "full sweep",
            "calibration": self.calibration.source,
            **vars(self.counters),
        }


def make_hardware_hal(
    config: Config, calibration: Calibration | None = None, initial_pose: np.ndarray | None = None
) -> HardwareHal:
    """The hardware backend on the robot's I2C bus, driving and reading the servos through
    ``calibration`` (the start-up code loads it: plend.daemon.runtime.robot_calibration)."""
    from plend.hal.i2c_bus import make_i2c_bus

    if calibration is None:
        raise HalError(
            "the hardware backend needs the robot's calibration (plend.daemon.runtime.robot_calibration)"
        )
    return HardwareHal(config.hardware, calibration, make_i2c_bus)
