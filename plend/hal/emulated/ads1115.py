"""Register-level emulation of the TI ADS1115 16-bit delta-sigma ADC.

Registers are 16 bits, big-endian, behind a 2-bit pointer: 0 conversion (read only),
1 config (power-on 0x8583), 2 Lo_thresh (0x8000), 3 Hi_thresh (0x7FFF). Reads longer
than two bytes repeat the register.

Conversions run on the emulated clock. Writing config with OS = 1 in single-shot mode
(MODE, bit 8, = 1) starts one conversion of the MUX-selected input, which completes
``1 / data_rate`` seconds after the write's STOP; until then config reads back with
OS = 0 and the conversion register keeps the previous result (a read never blocks).
Writing OS = 1 while a conversion runs has no effect, as on the chip. Continuous mode
(MODE = 0) converts back to back every ``1 / data_rate`` from the config write on; OS
reads 0 while it runs. The input is sampled when a conversion completes, or more
exactly at the first transaction to the chip at or after that moment (a callable that
changed in between is read as it is then).

Not modelled: the comparator and the ALERT/RDY pin (the threshold registers are only
stored), the internal oscillator's +-10 % tolerance, the ~25 us wake-up from power-down,
and the input's absolute limits (only the full-scale range clamps).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from plend.hal.emulated.bus import EmulatedChip, EmulatedI2C

CONVERSION = 0
CONFIG = 1
LO_THRESH = 2
HI_THRESH = 3

OS_BIT = 0x8000
MODE_SINGLE = 0x0100
DATA_RATES_SPS = (8, 16, 32, 64, 128, 250, 475, 860)
FULL_SCALE_V = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
# MUX codes 0-3 are differential (positive, negative input); 4-7 are AINx against GND.
MUX_INPUTS: tuple[tuple[int, int | None], ...] = (
    (0, 1),
    (0, 3),
    (1, 3),
    (2, 3),
    (0, None),
    (1, None),
    (2, None),
    (3, None),
)
CODE_MIN = -32768
CODE_MAX = 32767


def volts_to_code(volts: float, full_scale_v: float) -> int:
    """The ADS1115's output code for ``volts`` at a full-scale range of ``full_scale_v``."""
    return max(CODE_MIN, min(CODE_MAX, round(volts / full_scale_v * 32768)))


def data_rate_sps(config: int) -> int:
    """Samples per second selected by the DR bits of a config value."""
    return DATA_RATES_SPS[(config >> 5) & 0x07]


def full_scale_v(config: int) -> float:
    """Full-scale range (V) selected by the PGA bits of a config value."""
    return FULL_SCALE_V[(config >> 9) & 0x07]


class EmulatedADS1115(EmulatedChip):
    """An ADS1115 whose four inputs read ``voltage(channel)`` volts.

    Args:
        address: 0x48-0x4B on the real chip (ADDR pin); any address is accepted.
        voltage: Volts at AIN0..AIN3 given the channel number; 0 V when None.
        bus: When given, the chip attaches itself to this bus.
        seed: Seed of the noise generator (default: the address).

    Attributes:
        stuck_code: Fault: every conversion returns this code (signed, -32768..32767).
        noise_counts: Fault: standard deviation of gaussian noise added to each code.
    """

    def __init__(
        self,
        address: int,
        voltage: Callable[[int], float] | None = None,
        bus: EmulatedI2C | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(address)
        self.voltage: Callable[[int], float] = voltage if voltage is not None else (lambda _channel: 0.0)
        self.stuck_code: int | None = None
        self.noise_counts = 0.0
        self.pointer = CONVERSION
        self.config = 0x8583
        self.lo_thresh = 0x8000
        self.hi_thresh = 0x7FFF
        self.conversion = 0  # raw 16-bit register value
        self.conversions_done = 0  # completed conversions, for tests
        self._rng = random.Random(address if seed is None else seed)
        self._single_due: float | None = None  # completion time of the running single shot
        self._single_config = 0
        self._continuous_since: float | None = None
        self._continuous_done = 0  # conversions completed since _continuous_since
        if bus is not None:
            bus.attach(self)

    @property
    def converting(self) -> bool:
        """True while a single-shot conversion runs or continuous mode is on."""
        return self._single_due is not None or self._continuous_since is not None

    def code_for(self, config: int) -> int:
        """The signed code a conversion with ``config`` would produce now (faults included)."""
        if self.stuck_code is not None:
            return max(CODE_MIN, min(CODE_MAX, self.stuck_code))
        positive, negative = MUX_INPUTS[(config >> 12) & 0x07]
        volts = self.voltage(positive) - (0.0 if negative is None else self.voltage(negative))
        code = volts / full_scale_v(config) * 32768
        if self.noise_counts > 0:
            code += self._rng.gauss(0.0, self.noise_counts)
        if math.isnan(code):
            raise ValueError(f"ADS1115 0x{self.address:02X}: input voltage is NaN")
        return max(CODE_MIN, min(CODE_MAX, round(code)))

    # -- bus side ----------------------------------------------------------------------

    def handle_write(self, data: bytes, now: float) -> None:
        self._settle(now)
        if not data:
            return
        self.pointer = data[0] & 0x03
        if len(data) < 3:  # a register takes effect only once both bytes have arrived
            return
        value = data[1] << 8 | data[2]
        if self.pointer == CONFIG:
            self._write_config(value, now)
        elif self.pointer == LO_THRESH:
            self.lo_thresh = value
        elif self.pointer == HI_THRESH:
            self.hi_thresh = value

    def handle_read(self, n: int, now: float) -> bytes:
        self._settle(now)
        value = self._register(self.pointer)
        pair = bytes((value >> 8, value & 0xFF))
        return (pair * (n // 2 + 1))[:n]

    def _register(self, pointer: int) -> int:
        if pointer == CONVERSION:
            return self.conversion
        if pointer == CONFIG:
            return self.config & ~OS_BIT | (0 if self.converting else OS_BIT)
        return self.lo_thresh if pointer == LO_THRESH else self.hi_thresh

    def _write_config(self, value: int, now: float) -> None:
        self.config = value & ~OS_BIT
        if not value & MODE_SINGLE:
            self._single_due = None
            self._continuous_since = now
            self._continuous_done = 0
            return
        self._continuous_since = None
        if value & OS_BIT and self._single_due is None:
            self._single_due = now + 1.0 / data_rate_sps(value)
            self._single_config = value

    def _settle(self, now: float) -> None:
        """Complete every conversion due by ``now``."""
        if self._single_due is not None and now >= self._single_due:
            self._single_due = None
            self._complete(self._single_config)
        if self._continuous_since is not None:
            period = 1.0 / data_rate_sps(self.config)
            # The small epsilon keeps a read exactly at a completion time from missing it.
            done = math.floor((now - self._continuous_since) / period + 1e-9)
            if done > self._continuous_done:
                self._complete(self.config, done - self._continuous_done)
                self._continuous_done = done

    def _complete(self, config: int, count: int = 1) -> None:
        self.conversion = self.code_for(config) & 0xFFFF
        self.conversions_done += count
