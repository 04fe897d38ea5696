"""The hardware backend on an emulated bus, closed through the simulated robot.

The real backend code and the Adafruit drivers talk to register-level models of the
chips; this module couples those to PyBullet: the PCA9685's pulses become the simulated
servos' targets, the simulated joint angles become potentiometer voltages at the ADS1115
inputs, and the torso's motion becomes BNO055 data. The emulated robot may differ from
its calibration (horn offsets, mirrored servos, potentiometer gains) through
``truth``, so calibration can be tested against a robot that needs it.
"""

from __future__ import annotations

import numpy as np

from plend.config import Config, HardwareConfig, SimWorld
from plend.errors import HalError
from plend.hal.base import BusFigures, GroundTruth, JointTruth, Sensors, TorsoTruth
from plend.hal.hardware import HardwareHal
from plend.hal.sim import SimHal
from plend.robot import JOINTS, stand_pose
from plend.servo_map import (
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
        if powered[wired].all():
            self.sim.write(targets)
        elif powered.any():
            self.sim.write_some(targets, powered | ~wired)
        else:
            self.sim.relax()
        behind = self.sim.sim_time - self.bus.now
        if behind > 0:
            self.bus.advance(behind)  # the rest of the period, as far as the bus knows

    def close(self) -> None:
        if self._sim_open:
            self.sim.close()
            self._sim_open = False


class EmulatedHardwareHal(HardwareHal, GroundTruth, JointTruth, BusFigures):
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
        raise HalError("the hardware backend needs the robot's calibration (plend.runtime.robot_calibration)")
    hardware = config.hardware
    pose = stand_pose() if initial_pose is None else initial_pose
    seed = hardware.emulated_miscalibration_seed
    truth = Calibration() if seed is None else miscalibrated(seed, hardware.feedback_polarity)
    return EmulatedHardwareHal(hardware, calibration, EmulatedRobot(hardware, config.sim, truth, pose))
