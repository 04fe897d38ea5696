"""The hardware backend on an emulated bus, closed through the simulated robot.

The real backend code and the Adafruit drivers talk to register-level models of the
chips; this module couples those to PyBullet: the PCA9685's pulses become the simulated
servos' targets, the simulated joint angles become potentiometer voltages at the ADS1115
inputs, and the torso's motion becomes BNO055 data. The emulated robot may differ from
its calibration (horn offsets, mirrored servos, potentiometer gains) through
``truth``, so calibration can be tested against a robot that needs it.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from plend.core.config import Config, HardwareConfig, SimWorld
from plend.core.errors import HalError
from plend.hal.base import BusFigures, GroundTruth, JointTruth, Sensors, ServoTruth, TorsoTruth
from plend.hal.hardware import HardwareHal
from plend.hal.sim import SimHal
from plend.model.robot import JOINTS, stand_pose
from plend.model.servo_map import (
    ADC_VOLTS_PER_CODE,
    Calibration,
    JointCalibration,
    angle_to_code,
    pulse_us_to_angle,
)


def miscalibrated(seed: int, feedback_polarity: int = 1) -> Calibration:
    """A robot as built, not as designed: every servo's horn a few degrees off, some servos
    mounted mirrored, each potentiometer with its own gain and offset.

    The potentiometer turns with the servo's shaft, so its codes run with the servo's
    degrees (``feedback_polarity``) and with the joint angle times the mounting direction.
    """
    rng = np.random.default_rng(seed)
    nominal = JointCalibration()
    joints = {}
    for j in JOINTS:
        if not j.wired:
            continue
        offset = float(rng.uniform(-15.0, 15.0))
        direction = int(rng.choice((-1, 1)))
        gain = float(rng.uniform(0.7, 1.3))
        joints[j.name] = JointCalibration(
            offset_deg=offset,
            direction=direction,
            code_at_zero=nominal.code_at_zero + float(rng.uniform(-800.0, 800.0)),
            codes_per_rad=nominal.codes_per_rad * gain * direction * feedback_polarity,
        )
    return Calibration(joints, measured=True, source=f"emulated robot, miscalibration seed {seed}")


# The hidden truth of a robot's servos (``[hardware] emulated_servo_seed``), drawn per joint
# from these ranges; each differs from the simulation's defaults (HARDWARE.md, "Servo
# behaviour"). The delay is the servo's own reaction to a pulse it has seen; the wait for the
# PCA9685's next frame comes on top (modelled separately). A servo under the robot's own
# load and at the battery's voltage is slower than the 9.5 rad/s no-load figure.
SERVO_TRUTH_RANGES: dict[str, tuple[float, float]] = {
    "delay_ms": (1.0, 8.0),
    "time_constant_ms": (5.0, 25.0),
    "dead_band_deg": (0.2, 1.0),
    "backlash_deg": (0.5, 2.5),
    "speed_rad_s": (5.5, 10.5),
}


def true_servos(seed: int) -> dict[str, dict[str, float]]:
    """The seeded "true" servo of every wired joint: ``[sim.servo.joints]`` tables."""
    rng = np.random.default_rng([seed, 0x5E7])
    return {
        j.name: {key: round(float(rng.uniform(lo, hi)), 3) for key, (lo, hi) in SERVO_TRUTH_RANGES.items()}
        for j in JOINTS
        if j.wired
    }


def with_true_servos(world: SimWorld, seed: int) -> SimWorld:
    """``world`` whose wired joints have the servos of :func:`true_servos` (``seed``)."""
    joints = {name: dict(table) for name, table in world.servo.joints.items()}
    for name, table in true_servos(seed).items():
        joints[name] = {**joints.get(name, {}), **table}
    return dataclasses.replace(world, servo=dataclasses.replace(world.servo, joints=joints))


class PwmFrames:
    """When a servo sees a new pulse: the PCA9685 starts a frame every ``1 / frequency``
    seconds and a pulse written during one frame goes out from the start of the next.

    Args:
        phase_s: when a frame starts, on the bus's clock.
    """

    def __init__(self, phase_s: float):
        self.phase_s = phase_s

    def next_frame(self, written_at: float, frequency_hz: float) -> float:
        """The start of the first frame at or after ``written_at``."""
        period = 1.0 / frequency_hz
        return self.phase_s + math.ceil((written_at - self.phase_s) / period - 1e-9) * period


FULL_SCALE_CODE = 3.3 / ADC_VOLTS_PER_CODE  # the potentiometer's supply, in codes
NOISY_WIRE_CODES = 400.0  # a loose contact: about 2-3 degrees of noise


def _bad_wire(fault: str, code: float, rng: np.random.Generator) -> float:
    """What a bad feedback wire makes of a good reading."""
    if fault == "stuck":
        return 3100.0  # an open wire floating near a few hundred millivolts
    if fault == "noisy":
        return code + float(rng.normal(0.0, NOISY_WIRE_CODES))
    return FULL_SCALE_CODE - code  # "reversed": the potentiometer's ends swapped


# When each BNO055 level reaches 3 after a reset, in seconds: the emulation does not
# model the motions that calibrate the real chip, only that it takes a while.
IMU_CALIBRATION_SCHEDULE_S = {"gyro": 1.0, "mag": 3.0, "accel": 6.0, "sys": 8.0}


class EmulatedRobot:
    """Emulated chips on an emulated bus, driven by and driving the simulation."""

    def __init__(
        self, hardware: HardwareConfig, world: SimWorld, truth: Calibration, initial_pose: np.ndarray
    ):
        from plend.hal.emulated import EmulatedADS1115, EmulatedBNO055, EmulatedI2C, EmulatedPCA9685

        self.truth = truth
        servo_seed = hardware.emulated_servo_seed
        if servo_seed is not None:
            world = with_true_servos(world, servo_seed)
        # A robot with its own servos also has a PCA9685 whose frames run on their own clock.
        phase = float(np.random.default_rng(servo_seed or 0).uniform(0.0, 0.02))
        self.frames = None if servo_seed is None else PwmFrames(phase)
        # Per tick: its readings' stamp, its PWM write's and its frame's time after its start.
        self._waits: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=100_000)
        self._tick_bus = 0.0
        self.tick_stamp = 0.0  # the stamp of the tick's sensor reading
        self.sim = SimHal(world, initial_pose)
        self.bus = EmulatedI2C(frequency_hz=hardware.i2c_frequency_hz, seed=world.seed)
        self.pca = EmulatedPCA9685(hardware.pwm_address)
        self.bus.attach(self.pca)
        self.adcs = []
        for address in hardware.adc_addresses:
            chip = EmulatedADS1115(address, voltage=self._voltage_for(address))
            self.adcs.append(chip)
            self.bus.attach(chip)
        self.imu = EmulatedBNO055(hardware.imu_address)
        self.bus.attach(self.imu)
        self._angles = np.asarray(initial_pose, float).copy()
        self._hold = stand_pose()
        self._sim_open = False
        self._faults = dict(hardware.emulated_feedback_faults)
        self._rng = np.random.default_rng(world.seed)
        # The offsets this robot's BNO055 finds once fully calibrated.
        imu_seed = hardware.emulated_miscalibration_seed or 0
        self._learned = bytes(np.random.default_rng(imu_seed).integers(0, 256, 22).tolist())
        # A robot as built starts with an uncalibrated IMU; the designed one is calibrated.
        self._imu_learns = hardware.emulated_miscalibration_seed is not None
        if self._imu_learns:
            self.imu.calib_status = 0
        self._imu_resets_seen, self._imu_reset_at = self.imu.resets, 0.0

    def open(self, tick_period_s: float) -> None:
        self.sim.open(tick_period_s)
        self._sim_open = True
        self.refresh()

    def _voltage_for(self, address: int):  # type: ignore[no-untyped-def]
        inputs = {j.adc.channel: j for j in JOINTS if j.adc is not None and j.adc.address == address}

        def voltage(channel: int) -> float:
            j = inputs.get(channel)
            if j is None:
                return 0.0
            code = angle_to_code(float(self._angles[j.index]), self.truth.joints[j.name])
            fault = self._faults.get(j.name)
            if fault is not None:
                code = _bad_wire(fault, code, self._rng)
            return code * ADC_VOLTS_PER_CODE

        return voltage

    @property
    def angles(self) -> np.ndarray:
        """The simulated joint angles the chips were last given."""
        return self._angles

    def refresh(self) -> None:
        """Push the simulated robot's state into the chips' inputs."""
        reading: Sensors = self.sim.read()
        self._tick_bus = self.bus.now  # the tick starts here: the ADCs sample this state
        self._angles = reading.joint_pos
        self.imu.set_motion(reading.imu.quat, reading.imu.gyro, reading.imu.accel)
        if self._imu_learns:
            self._learn_imu_calibration()

    def _learn_imu_calibration(self) -> None:
        """The BNO055's calibration levels rise from its last reset on a schedule, ten
        times faster when the offsets it learned before were restored; once fully
        calibrated its offset registers hold what it learned."""
        if self.imu.resets != self._imu_resets_seen:
            self._imu_resets_seen, self._imu_reset_at = self.imu.resets, self.bus.now
        learned = self._learned
        speed = 10.0 if self.imu.offsets == learned else 1.0
        since = (self.bus.now - self._imu_reset_at) * speed
        levels = {
            k: 3 if since >= t else min(2, int(3 * since / t)) for k, t in IMU_CALIBRATION_SCHEDULE_S.items()
        }
        self.imu.calib_status = (
            levels["sys"] << 6 | levels["gyro"] << 4 | levels["accel"] << 2 | levels["mag"]
        )
        if self.imu.calib_status == 0xFF and self.imu.offsets != learned:
            self.imu.offsets = learned

    def step(self) -> None:
        """Apply the PCA9685's outputs to the servos and advance one control period."""
        targets = self._hold.copy()
        powered = np.zeros(len(JOINTS), bool)
        for j in JOINTS:
            if j.pwm_channel is None:
                continue
            pulse = self.pca.pulse_us(j.pwm_channel)
            if pulse is not None:
                powered[j.index] = True
                targets[j.index] = pulse_us_to_angle(pulse, self.truth.joints[j.name])
        wired = np.array([j.wired for j in JOINTS])
        after = self._frame_wait() if powered.any() else 0.0
        if powered[wired].all():
            self.sim.write(targets, after)
        elif powered.any():
            self.sim.write_some(targets, powered | ~wired, after)
        else:
            self.sim.relax()
        behind = self.sim.sim_time - self.bus.now
        if behind > 0:
            self.bus.advance(behind)  # the rest of the period, as far as the bus knows

    def _frame_wait(self) -> float:
        """How long after the tick began the servos see this tick's pulses (0 without a
        frame model): the next PCA9685 frame after the write."""
        if self.frames is None:
            return 0.0
        written = max(self.pca.written_at, self._tick_bus)
        wait = self.frames.next_frame(written, self.pca.frequency_hz) - self._tick_bus
        self._waits.append((self.tick_stamp, written - self._tick_bus, wait))
        return wait

    def pwm_latency(self, since: float, until: float = math.inf) -> tuple[float, float]:
        """Over the ticks whose readings are stamped from ``since`` to ``until``, the mean
        time from a tick's start to its PWM write, and the mean time from its start to the
        frame that took the write up, s (both 0 without a frame model)."""
        ticks = [(written, wait) for t, written, wait in self._waits if since <= t < until]
        if not ticks:
            return 0.0, 0.0
        written, wait = np.mean(ticks, axis=0)
        return float(written), float(wait)

    def close(self) -> None:
        if self._sim_open:
            self.sim.close()
            self._sim_open = False


class EmulatedHardwareHal(HardwareHal, GroundTruth, JointTruth, BusFigures, ServoTruth):
    """:class:`HardwareHal` on the emulated bus, stepping the simulation each tick."""

    def __init__(self, hardware: HardwareConfig, calibration: Calibration, robot: EmulatedRobot):
        super().__init__(
            hardware, calibration, lambda: robot.bus, sleep=robot.bus.advance, clock=lambda: robot.bus.now
        )
        self.robot = robot
        self._ticks = 0
        self._bus_at_open = (0, 0, 0.0)

    def open(self, tick_period_s: float) -> None:
        self.robot.open(tick_period_s)
        super().open(tick_period_s)
        s = self.robot.bus.stats
        self._bus_at_open = (s.transactions, s.bytes, s.bus_time_s)
        self._busy_s = 0.0

    def read(self) -> Sensors:
        self.robot.refresh()
        started = self.robot.bus.now
        sensors = super().read()
        self._busy_s += self.robot.bus.now - started
        self.robot.tick_stamp = sensors.stamp
        return sensors

    def write(self, targets: np.ndarray) -> None:
        started = self.robot.bus.now
        super().write(targets)
        self._finish_tick(started)

    def write_some(self, targets: np.ndarray, powered: np.ndarray) -> None:
        started = self.robot.bus.now
        super().write_some(targets, powered)
        self._finish_tick(started)

    def relax(self) -> None:
        started = self.robot.bus.now
        super().relax()
        self._finish_tick(started)

    def _finish_tick(self, started: float) -> None:
        self._busy_s += self.robot.bus.now - started
        self._ticks += 1
        self.robot.step()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.robot.close()

    def truth(self) -> TorsoTruth:
        return self.robot.sim.truth()

    @property
    def pwm_frame_s(self) -> float | None:
        """The PCA9685's frame period, where the emulation makes a pulse wait for the next
        frame (``[hardware] emulated_servo_seed``); None where a pulse acts at once."""
        return super().pwm_frame_s if self.robot.frames is not None else None

    def true_servo(self, index: int, since: float, until: float = math.inf) -> dict[str, float]:
        """Joint ``index``'s true servo, as identification should find it from the ticks
        whose readings are stamped from ``since`` to ``until``. Its delay counts from the
        start of the tick that wrote a pulse: the write's time in the tick and the wait for
        the PCA9685's next frame (``pwm_ms``, their mean over those ticks), then the
        servo's own reaction (``own_delay_ms``)."""
        table = self.robot.sim.world.servo_table()
        _, wait = self.robot.pwm_latency(since, until)
        own_ms = 1000.0 * float(table.delay_s[index])
        return {
            "delay_ms": own_ms + 1000.0 * wait, "own_delay_ms": own_ms, "pwm_ms": 1000.0 * wait,
            "time_constant_ms": 1000.0 * float(table.time_constant_s[index]),
            "dead_band_deg": math.degrees(float(table.dead_band_rad[index])),
            "backlash_deg": math.degrees(float(table.backlash_rad[index])),
            "speed_rad_s": float(table.speed_rad_s[index]),
        }  # fmt: skip

    def true_joint_angles(self) -> np.ndarray:
        """The simulated joints' actual angles at the last read, whatever the calibration says."""
        return self.robot.angles.copy()

    def bus_time(self) -> float:
        """The emulated bus's clock (s): how long the transfers would take on the robot."""
        return float(self.robot.bus.now)

    def bus_figures(self) -> dict[str, float]:
        """Per-tick bus figures since open: transactions, bytes and busy milliseconds."""
        s = self.robot.bus.stats
        t0, b0, _ = self._bus_at_open
        ticks = max(1, self._ticks)
        return {
            "bus_transactions_per_tick": round((s.transactions - t0) / ticks, 2),
            "bus_bytes_per_tick": round((s.bytes - b0) / ticks, 1),
            "bus_ms_per_tick": round(1000.0 * self._busy_s / ticks, 3),
        }


def make_emulated_hardware_hal(
    config: Config, calibration: Calibration | None = None, initial_pose: np.ndarray | None = None
) -> EmulatedHardwareHal:
    """The hardware backend on emulated chips that drive the simulation (``[hardware] bus =
    "emulated"``), read through ``calibration`` like the real robot; the robot itself is
    exact or miscalibrated as ``emulated_miscalibration_seed`` says."""
    if calibration is None:
        raise HalError(
            "the hardware backend needs the robot's calibration (plend.daemon.runtime.robot_calibration)"
        )
    hardware = config.hardware
    pose = stand_pose() if initial_pose is None else initial_pose
    seed = hardware.emulated_miscalibration_seed
    truth = Calibration() if seed is None else miscalibrated(seed, hardware.feedback_polarity)
    return EmulatedHardwareHal(hardware, calibration, EmulatedRobot(hardware, config.sim, truth, pose))
