"""An emulated I2C bus with a bus-time model, for running the real chip drivers off the robot.

:class:`EmulatedI2C` implements the ``busio.I2C`` methods that the Adafruit drivers and
``adafruit_bus_device`` call, and routes each transaction to the :class:`EmulatedChip`
attached at its address. Time is emulated: ``now`` advances by each transaction's bus
time (and by :meth:`EmulatedI2C.advance`), never with the wall clock, so a test can ask
what a control tick would cost on a real 400 kHz bus.

Bus-time model: one bit time per START, repeated START and STOP, and nine bit times per
byte (eight data bits and the ACK), the address byte included. A write of ``n`` bytes
costs ``2 + 9 * (n + 1)`` bits; a write-then-read of ``w`` and ``r`` bytes costs
``3 + 9 * (w + 1) + 9 * (r + 1)``; an address that nobody acknowledges costs
``2 + 9``. Clock stretching, bus turnaround and the host's own overhead are not
modelled. Chips see each transaction at its end: the ``now`` passed to their handlers is
the time of the STOP.
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass, field
from types import TracebackType

START_STOP_BITS = 2
BITS_PER_BYTE = 9  # eight data bits and the acknowledge
ReadableBuffer = bytes | bytearray | memoryview
WriteableBuffer = bytearray | memoryview
# Addresses a scan probes, as i2cdetect does (0x00-0x07 and 0x78-0x7F are reserved).
SCAN_RANGE = range(0x08, 0x78)


def transaction_bits(*byte_counts: int) -> int:
    """Bit times of one transaction made of phases of ``byte_counts`` data bytes each.

    Each phase has its own address byte; every phase after the first starts with a
    repeated START.
    """
    phases = len(byte_counts)
    return START_STOP_BITS + (phases - 1) + BITS_PER_BYTE * sum(n + 1 for n in byte_counts)


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class BusStats:
    """Counters of everything that crossed the bus.

    ``bytes`` counts bytes on the wire, address bytes included; ``bus_time_s`` includes
    the timed waits made with :meth:`EmulatedI2C.advance`.
    """

    transactions: int = 0
    bytes: int = 0
    bus_time_s: float = 0.0
    errors: int = 0


@dataclass
class FaultInjector:
    """Random transaction failures, reproducible from ``seed``.

    Attributes:
        io_error_rate: Probability that a transaction fails with ``OSError(EIO)``, as
            the Pi's controller does when a chip stretches the clock. The failed
            transaction does not reach the chip but still costs its full bus time.
        seed: Seed of the generator (changing it later restarts the sequence).
    """

    io_error_rate: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _rng_seed: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._reseed()

    def _reseed(self) -> None:
        self._rng = random.Random(self.seed)
        self._rng_seed = self.seed

    def strikes(self) -> bool:
        """Draw once: should the next transaction fail?"""
        if self.io_error_rate <= 0.0:
            return False
        if self._rng_seed != self.seed:
            self._reseed()
        return self._rng.random() < self.io_error_rate


class EmulatedChip:
    """A chip on the emulated bus, answering at ``address``.

    Subclasses keep a register pointer like the real chips: a write's first byte sets
    it, later bytes are stored from it; a read returns bytes from it. A write-then-read
    is ``handle_write(pointer)`` followed by ``handle_read``.
    """

    def __init__(self, address: int) -> None:
        self.address = address

    def acks(self, now: float) -> bool:
        """Whether the chip acknowledges its address at ``now`` (False while it is busy)."""
        return True

    def handle_write(self, data: bytes, now: float) -> None:
        """Take a write transaction's payload (the address byte excluded)."""
        raise NotImplementedError

    def handle_read(self, n: int, now: float) -> bytes:
        """Return the ``n`` bytes of a read transaction."""
        raise NotImplementedError


def _span(buffer_len: int, start: int, end: int | None) -> tuple[int, int]:
    stop = buffer_len if end is None else end
    if not 0 <= start <= stop <= buffer_len:
        raise ValueError(f"buffer slice [{start}:{end}] out of range for length {buffer_len}")
    return start, stop


class EmulatedI2C:
    """A ``busio.I2C`` stand-in whose chips are register-level emulations.

    Args:
        frequency_hz: SCL clock; only used for the bus-time model.
        seed: Seed of the fault injector (``faults``).

    A missing address is NACKed like Linux i2c-dev does: ``OSError(EREMOTEIO)``.
    """

    def __init__(self, frequency_hz: int = 400_000, seed: int = 0) -> None:
        if frequency_hz <= 0:
            raise ValueError(f"frequency_hz must be positive, got {frequency_hz}")
        self.frequency_hz = frequency_hz
        self.now = 0.0
        self.stats = BusStats()
        self.faults = FaultInjector(seed=seed)
        self.chips: dict[int, EmulatedChip] = {}
        self._locked = False
        self._closed = False

    # -- emulation control -------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Wait ``seconds`` of emulated time with the bus held (counted as bus time)."""
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative time ({seconds} s)")
        self.now += seconds
        self.stats.bus_time_s += seconds

    def attach(self, chip: EmulatedChip) -> None:
        """Put ``chip`` on the bus at ``chip.address``, replacing any chip there."""
        self.chips[chip.address] = chip

    def detach(self, address: int) -> None:
        """Remove the chip at ``address``; later transactions to it are NACKed."""
        self.chips.pop(address, None)

    # -- busio.I2C ---------------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the bus lock; False when it is already held."""
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        """Release the bus lock."""
        self._locked = False

    def scan(self) -> list[int]:
        """Addresses that acknowledge, probed one address-only transaction each.

        The probes cost bus time and count as transactions; their NACKs are the expected
        answer, so they do not count as errors.
        """
        self._check_open()
        found = []
        for address in SCAN_RANGE:
            self._spend(transaction_bits(0))
            chip = self.chips.get(address)
            if chip is not None and chip.acks(self.now):
                found.append(address)
        return found

    def writeto(
        self, address: int, buffer: ReadableBuffer, *, start: int = 0, end: int | None = None
    ) -> None:
        """Write ``buffer[start:end]`` to the chip at ``address``, then STOP."""
        lo, hi = _span(len(buffer), start, end)
        data = bytes(buffer[lo:hi])
        chip = self._begin(address, transaction_bits(len(data)))
        chip.handle_write(data, self.now)

    def readfrom_into(
        self, address: int, buffer: WriteableBuffer, *, start: int = 0, end: int | None = None
    ) -> None:
        """Read ``end - start`` bytes from the chip at ``address`` into ``buffer[start:end]``."""
        lo, hi = _span(len(buffer), start, end)
        chip = self._begin(address, transaction_bits(hi - lo))
        buffer[lo:hi] = self._read(chip, hi - lo)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: ReadableBuffer,
        buffer_in: WriteableBuffer,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        """Write ``buffer_out[out_start:out_end]``, repeated START, read into ``buffer_in``.

        The two buffers may be the same object (adafruit_register passes one buffer for
        both), so the outgoing bytes are copied before anything is read.
        """
        olo, ohi = _span(len(buffer_out), out_start, out_end)
        ilo, ihi = _span(len(buffer_in), in_start, in_end)
        data = bytes(buffer_out[olo:ohi])
        chip = self._begin(address, transaction_bits(len(data), ihi - ilo))
        chip.handle_write(data, self.now)
        buffer_in[ilo:ihi] = self._read(chip, ihi - ilo)

    def deinit(self) -> None:
        """Release the bus; later transactions fail with ``OSError(EBADF)``."""
        self._closed = True
        self._locked = False

    def __enter__(self) -> EmulatedI2C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deinit()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _os_error(errno.EBADF)

    def _spend(self, bits: int) -> None:
        self.stats.transactions += 1
        self.stats.bytes += (bits - START_STOP_BITS) // BITS_PER_BYTE
        seconds = bits / self.frequency_hz
        self.now += seconds
        self.stats.bus_time_s += seconds

    def _begin(self, address: int, bits: int) -> EmulatedChip:
        """Account for one transaction; return its chip or raise the bus error."""
        self._check_open()
        if self.faults.strikes():
            self._spend(bits)
            self.stats.errors += 1
            raise _os_error(errno.EIO)
        chip = self.chips.get(address)
        if chip is None or not chip.acks(self.now):
            self._spend(transaction_bits(0))
            self.stats.errors += 1
            raise _os_error(errno.EREMOTEIO)
        self._spend(bits)
        return chip

    def _read(self, chip: EmulatedChip, n: int) -> bytes:
        data = chip.handle_read(n, self.now)
        if len(data) != n:
            raise RuntimeError(f"{type(chip).__name__} returned {len(data)} bytes for a {n}-byte read")
        return data
