"""Register-level emulation of the Bosch BNO055 9-axis IMU with sensor fusion, over I2C.

The chip's outputs follow a motion the test sets with :meth:`EmulatedBNO055.set_motion`;
there is no sensor model behind them (no noise, bias, filter lag or 100 Hz output
grid: the registers always show the latest motion). The magnetometer reads a fixed
world field rotated into the sensor frame.

Registers (two pages selected by PAGE_ID, 0x07, present on both; always
auto-incrementing): IDs 0x00-0x06, data 0x08-0x33 (ACC, MAG, GYR, EUL, QUA, LIA, GRV,
int16 little-endian, in the units UNIT_SEL selects: bits 0 m/s^2 x100 or mg, 1 dps x16
or rad/s x900, 2 degrees x16 or rad x900), TEMP 0x34 (always Celsius),
CALIB_STAT 0x35, SYS_STATUS 0x39 (0 idle in CONFIG, 5 fusion running, 6 sensors
running without fusion), OPR_MODE 0x3D, PWR_MODE 0x3E, SYS_TRIGGER 0x3F, the offsets
0x55-0x6A, and page 1's ACC_Config 0x08, MAG_Config 0x09, GYR_Config 0x0A/0x0B.
As the datasheet says, only OPR_MODE, PAGE_ID, SYS_TRIGGER and the interrupt registers
accept writes outside CONFIG mode; in CONFIG mode every output reads zero. A sensor the
operating mode leaves off reads zero; fusion outputs need a fusion mode (IMUPLUS and
the other relative modes report the same absolute orientation as NDOF).

SYS_TRIGGER bit 5 resets the chip: registers return to power-on values (the offsets
are lost; ``calib_status``, the motion and the fault settings are kept) and the chip
NACKs its address for ``reset_busy_s`` of emulated time. That window is 0 by default:
the datasheet's 650 ms would break the stock Adafruit driver, which waits for it with
``time.sleep(0.7)`` in real time, invisible to the emulated clock, and then writes
again at once. Set it to 0.65 to test code that waits on the bus's clock.

Euler convention: the datasheet gives heading (0..360, clockwise), roll (+-90) and
pitch (+-180) without the rotation order. This emulation uses the order that a
published comparison against a real chip's output matched (quaternion to Euler in
sequence Y-X-Z, sanjosetech.blogspot.com, 2016): with ``q`` the sensor-to-world
quaternion, (heading, roll, pitch) are the intrinsic z-x'-y'' Tait-Bryan angles of the
inverse (world-to-sensor) rotation, so with x forward, y left, z up:
heading = -yaw (clockwise seen from above), roll = -(rotation about x, right-handed),
pitch = -(rotation about y, right-handed: nose up is positive since y points left).
The ORI_Android_Windows bit of UNIT_SEL is stored but not modelled. Use the quaternion
where the convention matters.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from plend.hal.emulated.bus import EmulatedChip

STANDARD_GRAVITY = 9.80665
CHIP_ID = 0xA0
PAGE_ID = 0x07
DATA_FIRST = 0x08
TEMP = 0x34
CALIB_STAT = 0x35
SYS_STATUS = 0x39
UNIT_SEL = 0x3B
OPR_MODE = 0x3D
SYS_TRIGGER = 0x3F
OFFSETS_FIRST = 0x55
OFFSETS_LEN = 22
CONFIG_MODE = 0x00
NDOF_MODE = 0x0C
RST_SYS = 0x20
CLK_SEL = 0x80

# Which parts each operating mode (0-12) runs, from the datasheet's table 3-3.
_ACC_MODES = frozenset({1, 4, 5, 7, 8, 9, 10, 11, 12})
_MAG_MODES = frozenset({2, 4, 6, 7, 9, 10, 11, 12})
_GYR_MODES = frozenset({3, 5, 6, 7, 8, 11, 12})
_FUSION_MODES = frozenset({8, 9, 10, 11, 12})
# Writable in any operating mode (page 0: PAGE_ID, OPR_MODE, SYS_TRIGGER; page 1: INT_MSK, INT_EN).
_ANY_MODE_WRITABLE = ((0x07, 0x3D, 0x3F), (0x07, 0x0F, 0x10))
# Writable in CONFIG mode: UNIT_SEL, PWR_MODE, TEMP_SOURCE, axis map, SIC matrix, offsets;
# page 1's sensor, sleep and interrupt settings.
_CONFIG_WRITABLE = (
    frozenset({0x3B, 0x3E, 0x40, 0x41, 0x42, *range(0x43, 0x6B)}),
    frozenset(range(0x08, 0x20)),
)

Vec3 = tuple[float, float, float]


def _power_on_pages() -> tuple[bytearray, bytearray]:
    page0 = bytearray(256)
    page0[0x00:0x07] = bytes((CHIP_ID, 0xFB, 0x32, 0x0F, 0x11, 0x03, 0x15))  # IDs, SW 3.17, BL 21
    page0[0x36] = 0x0F  # ST_RESULT: every self test passed
    page0[UNIT_SEL] = 0x80  # table 4-2's reset value (section 4.3.60 says 0x00)
    page0[0x41] = 0x24  # AXIS_MAP_CONFIG: x->X, y->Y, z->Z
    for sic in (0x43, 0x4B, 0x53):  # soft-iron matrix: identity, 1.0 = 0x4000
        page0[sic + 1] = 0x40
    page1 = bytearray(256)
    page1[0x07] = 1
    page1[0x08:0x0C] = bytes((0x0D, 0x6D, 0x38, 0x00))  # ACC 4 g 62.5 Hz, MAG 20 Hz, GYR 2000 dps 32 Hz
    return page0, page1


def _int16(value: float) -> int:
    return max(-32768, min(32767, round(value)))


def _rotate_to_sensor(q: Sequence[float], v: Vec3) -> Vec3:
    """``R(q)^T v``: a world vector seen in the sensor frame."""
    w, x, y, z = q
    r = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return (
        r[0][0] * v[0] + r[1][0] * v[1] + r[2][0] * v[2],
        r[0][1] * v[0] + r[1][1] * v[1] + r[2][1] * v[2],
        r[0][2] * v[0] + r[1][2] * v[1] + r[2][2] * v[2],
    )


def euler_from_quaternion(q: Sequence[float]) -> Vec3:
    """(heading, roll, pitch) in degrees as the emulated BNO055 reports them (module doc)."""
    w, x, y, z = q
    heading = math.degrees(math.atan2(-2 * (x * y + w * z), 1 - 2 * (x * x + z * z))) % 360.0
    if heading >= 360.0:  # a tiny negative angle rounds up to 360.0 under %
        heading = 0.0
    roll = math.degrees(math.asin(max(-1.0, min(1.0, 2 * (y * z - w * x)))))
    pitch = math.degrees(math.atan2(-2 * (x * z + w * y), 1 - 2 * (x * x + y * y)))
    return heading, roll, pitch


class EmulatedBNO055(EmulatedChip):
    """A BNO055 on I2C, power-on state: CONFIG mode, page 0.

    Attributes:
        calib_status: CALIB_STAT (sys, gyr, acc, mag, two bits each, sys in the top bits).
        temperature_c: What TEMP reports, in whole degrees Celsius.
        magnetic_field_ut: The earth's field in the world frame (x: heading 0, z up), uT.
        reset_busy_s: Emulated seconds the chip NACKs after a reset (see the module doc).
    """

    def __init__(self, address: int = 0x28) -> None:
        super().__init__(address)
        self.calib_status = 0xFF
        self.temperature_c = 25
        self.magnetic_field_ut: Vec3 = (20.0, 0.0, -40.0)
        self.reset_busy_s = 0.0
        self.resets = 0
        self._quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
        self._gyro: Vec3 = (0.0, 0.0, 0.0)
        self._accel: Vec3 = (0.0, 0.0, STANDARD_GRAVITY)
        self._busy_until = -math.inf
        self.pages = _power_on_pages()
        self.pointer = 0

    # -- emulation control -------------------------------------------------------------

    def set_motion(
        self, quat_wxyz: Sequence[float], gyro_rad_s: Sequence[float], accel_m_s2: Sequence[float]
    ) -> None:
        """Set the torso's motion (sensor axes = torso axes: x forward, y left, z up).

        Args:
            quat_wxyz: Orientation, sensor frame to world (z up); normalised here.
            gyro_rad_s: Angular rate in the sensor frame.
            accel_m_s2: Specific force in the sensor frame (+9.81 on z when level and still).
        """
        norm = math.sqrt(sum(c * c for c in quat_wxyz))
        if len(quat_wxyz) != 4 or not norm > 1e-9:
            raise ValueError(f"quat_wxyz must be a non-zero 4-vector, got {tuple(quat_wxyz)}")
        w, x, y, z = (c / norm for c in quat_wxyz)
        self._quat = (w, x, y, z)
        self._gyro = _vec3(gyro_rad_s, "gyro_rad_s")
        self._accel = _vec3(accel_m_s2, "accel_m_s2")

    @property
    def mode(self) -> int:
        """The operating mode (OPR_MODE bits 3..0)."""
        return self.pages[0][OPR_MODE] & 0x0F

    @property
    def page(self) -> int:
        """The register page the bus sees (0 or 1)."""
        return self.pages[0][PAGE_ID]

    @property
    def offsets(self) -> bytes:
        """The 22 calibration offset bytes, registers 0x55-0x6A."""
        return bytes(self.pages[0][OFFSETS_FIRST : OFFSETS_FIRST + OFFSETS_LEN])

    @offsets.setter
    def offsets(self, value: bytes) -> None:
        if len(value) != OFFSETS_LEN:
            raise ValueError(f"BNO055 offsets are {OFFSETS_LEN} bytes, got {len(value)}")
        self.pages[0][OFFSETS_FIRST : OFFSETS_FIRST + OFFSETS_LEN] = value

    def reset(self, now: float = 0.0) -> None:
        """What SYS_TRIGGER.RST_SYS does: power-on registers, NACK for ``reset_busy_s``."""
        self.pages = _power_on_pages()
        self.pointer = 0
        self.resets += 1
        self._busy_until = now + self.reset_busy_s

    # -- bus side ----------------------------------------------------------------------

    def acks(self, now: float) -> bool:
        return now >= self._busy_until

    def handle_write(self, data: bytes, now: float) -> None:
        if not data:
            return
        self.pointer = data[0]
        for value in data[1:]:
            if self._store(self.pointer, value, now):
                return  # the chip reset itself: the rest of the write is lost
            self.pointer = (self.pointer + 1) & 0xFF

    def handle_read(self, n: int, now: float) -> bytes:
        page = self.pages[self.page]
        if self.page == 0:
            self._refresh_outputs()
        out = bytearray()
        for _ in range(n):
            out.append(page[self.pointer])
            self.pointer = (self.pointer + 1) & 0xFF
        return bytes(out)

    def _store(self, reg: int, value: int, now: float) -> bool:
        """Store one written byte; True when it reset the chip."""
        page = self.page
        if reg == PAGE_ID:
            if value in (0, 1):
                self.pages[0][PAGE_ID] = value
                self.pages[1][PAGE_ID] = value
            return False
        if page == 0 and reg == SYS_TRIGGER:
            if value & RST_SYS:
                self.reset(now)
                return True
            self.pages[0][SYS_TRIGGER] = value & CLK_SEL  # self test and RST_INT self-clear
            return False
        if reg in _ANY_MODE_WRITABLE[page] or (self.mode == CONFIG_MODE and reg in _CONFIG_WRITABLE[page]):
            self.pages[page][reg] = value
        return False

    def _refresh_outputs(self) -> None:
        """Write the data, status and temperature registers for the current mode."""
        regs = self.pages[0]
        mode = self.mode
        fusion = mode in _FUSION_MODES
        for reg, vec, lsb in self._outputs(mode, regs[UNIT_SEL]):
            struct.pack_into("<3h", regs, reg, *(_int16(c * lsb) for c in vec))
        quat = self._quat if fusion else (0.0, 0.0, 0.0, 0.0)
        struct.pack_into("<4h", regs, 0x20, *(_int16(c * (1 << 14)) for c in quat))
        struct.pack_into("<b", regs, TEMP, max(-128, min(127, round(self.temperature_c))))
        regs[CALIB_STAT] = self.calib_status & 0xFF
        regs[SYS_STATUS] = 0 if mode == CONFIG_MODE else 5 if fusion else 6

    def _outputs(self, mode: int, units: int) -> list[tuple[int, Vec3, float]]:
        """(register, vector, LSB per unit) of each three-axis output; zero when off."""
        acc_lsb = 1000.0 / STANDARD_GRAVITY if units & 0x01 else 100.0
        gyr_lsb = 900.0 if units & 0x02 else 16.0 * 180.0 / math.pi
        eul_lsb = 900.0 * math.pi / 180.0 if units & 0x04 else 16.0
        q = self._quat
        gravity = _rotate_to_sensor(q, (0.0, 0.0, STANDARD_GRAVITY))
        linear = (self._accel[0] - gravity[0], self._accel[1] - gravity[1], self._accel[2] - gravity[2])
        fusion = mode in _FUSION_MODES
        zero = (0.0, 0.0, 0.0)
        return [
            (0x08, self._accel if mode in _ACC_MODES else zero, acc_lsb),
            (0x0E, _rotate_to_sensor(q, self.magnetic_field_ut) if mode in _MAG_MODES else zero, 16.0),
            (0x14, self._gyro if mode in _GYR_MODES else zero, gyr_lsb),
            (0x1A, euler_from_quaternion(q) if fusion else zero, eul_lsb),
            (0x28, linear if fusion else zero, acc_lsb),
            (0x2E, gravity if fusion else zero, acc_lsb),
        ]


def _vec3(values: Sequence[float], name: str) -> Vec3:
    if len(values) != 3:
        raise ValueError(f"{name} must have three components, got {tuple(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))
