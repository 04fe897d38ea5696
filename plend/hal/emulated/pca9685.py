"""Register-level emulation of the PCA9685 16-channel 12-bit PWM controller.

What is modelled, from the NXP datasheet (rev. 4):

- MODE1 auto-increment (AI, bit 5): with AI clear, every byte of a multi-byte write
  lands in the one register the pointer names (the last byte wins), and reads repeat
  one register. That is the trap of setting a channel before the Adafruit driver's
  ``frequency`` setter has turned AI on: the channel's four-byte write lands in
  LEDn_ON_L and the channel stays dark.
- SLEEP (bit 4): the oscillator is off and every output is low; PRE_SCALE only accepts
  writes while SLEEP is set.
- RESTART (bit 7): set when SLEEP is set while any channel was running; once awake the
  outputs stay off until a 1 is written to RESTART or any LED register is written
  (the datasheet's "other actions that clear RESTART", OCH = 0).
- LEDn_ON/OFF with the full-on (bit 4 of ON_H) and full-off (bit 4 of OFF_H, which wins)
  bits; ALL_LED_ON/OFF (0xFA-0xFD) load every channel's register and read back as zero.

Not modelled: the 500 us oscillator start-up before RESTART (the Adafruit driver waits
for it with a real-time sleep the emulated clock cannot see), EXTCLK, MODE2 output
inversion and drive, the sub-addresses and the ALLCALL address 0x70 (the emulated chip
answers at its own address only), and the frame-synchronous output update (``pulse_us``
reports the registers as they are now; the emulated robot models when a servo sees a
new pulse, from :attr:`EmulatedPCA9685.written_at`).
"""

from __future__ import annotations

from plend.hal.emulated.bus import EmulatedChip

OSC_HZ = 25_000_000
COUNTS = 4096

MODE1 = 0x00
MODE2 = 0x01
LED0_ON_L = 0x06
ALL_LED_ON_L = 0xFA
ALL_LED_OFF_H = 0xFD
PRE_SCALE = 0xFE

MODE1_RESTART = 0x80
MODE1_AI = 0x20
MODE1_SLEEP = 0x10
FULL_BIT = 0x10  # bit 4 of LEDn_ON_H (full on) and of LEDn_OFF_H (full off)
PRESCALE_MIN = 3

_LED_LAST = LED0_ON_L + 4 * 16 - 1  # 0x45


def _power_on_registers() -> bytearray:
    regs = bytearray(256)
    regs[MODE1] = MODE1_SLEEP | 0x01  # SLEEP | ALLCALL
    regs[MODE2] = 0x04  # OUTDRV (totem pole)
    regs[0x02:0x06] = bytes((0xE2, 0xE4, 0xE8, 0xE0))  # SUBADR1-3, ALLCALLADR
    for channel in range(16):
        regs[LED0_ON_L + 4 * channel + 3] = FULL_BIT  # every output starts full off
    regs[ALL_LED_OFF_H] = FULL_BIT
    regs[PRE_SCALE] = 0x1E  # 200 Hz
    return regs


class EmulatedPCA9685(EmulatedChip):
    """A PCA9685 with its internal 25 MHz oscillator.

    Attributes:
        registers: The 256 register bytes (ALL_LED registers hold what was last written
            to them, although the bus reads them as zero).
        written_at: Emulated time of the last write that reached an LED register (the
            end of that transaction), for a model of when the outputs take it up.
        writes: Every write payload the chip received, in order, the register-pointer
            byte of a write-then-read included, for exact-byte assertions.
    """

    def __init__(self, address: int = 0x40) -> None:
        super().__init__(address)
        self.registers = _power_on_registers()
        self.writes: list[bytes] = []
        self.pointer = 0
        self.written_at = 0.0
        self._halted = False  # RESTART pending: awake but outputs held off

    @property
    def frequency_hz(self) -> float:
        """PWM frame rate set by PRE_SCALE: 25 MHz / (4096 * (prescale + 1))."""
        return OSC_HZ / (COUNTS * (self.registers[PRE_SCALE] + 1))

    @property
    def asleep(self) -> bool:
        """True while MODE1.SLEEP is set (oscillator off, outputs low)."""
        return bool(self.registers[MODE1] & MODE1_SLEEP)

    def counts(self, channel: int) -> tuple[int, int, bool, bool]:
        """``(on, off, full_on, full_off)`` of ``channel`` as the registers hold them."""
        if not 0 <= channel < 16:
            raise IndexError(f"PCA9685 channel {channel} out of range 0..15")
        on_l, on_h, off_l, off_h = self.registers[LED0_ON_L + 4 * channel : LED0_ON_L + 4 * channel + 4]
        on = (on_h & 0x0F) << 8 | on_l
        off = (off_h & 0x0F) << 8 | off_l
        return on, off, bool(on_h & FULL_BIT), bool(off_h & FULL_BIT)

    def pulse_us(self, channel: int) -> float | None:
        """High time of ``channel``'s pulse in microseconds, or None when the output is off.

        Off means the full-off bit (also set by ALL_LED_OFF_H), the chip asleep, or awake
        with a RESTART pending. Full on gives the whole frame; otherwise the high time
        runs from the ON count to the OFF count, wrapping past 4095 when OFF < ON.
        """
        on, off, full_on, full_off = self.counts(channel)
        if full_off or self.asleep or self._halted:
            return None
        frame_us = 1e6 / self.frequency_hz
        if full_on:
            return frame_us
        return (off - on) % COUNTS * frame_us / COUNTS

    # -- bus side ----------------------------------------------------------------------

    def handle_write(self, data: bytes, now: float) -> None:
        self.writes.append(bytes(data))
        if not data:
            return
        self.pointer = data[0]
        if len(data) > 1 and LED0_ON_L <= self.pointer <= ALL_LED_OFF_H:
            self.written_at = now
        for value in data[1:]:
            self._store(self.pointer, value)
            self._step()

    def handle_read(self, n: int, now: float) -> bytes:
        out = bytearray()
        for _ in range(n):
            out.append(0 if ALL_LED_ON_L <= self.pointer <= ALL_LED_OFF_H else self.registers[self.pointer])
            self._step()
        return bytes(out)

    def _step(self) -> None:
        if self.registers[MODE1] & MODE1_AI:
            self.pointer = (self.pointer + 1) & 0xFF

    def _store(self, reg: int, value: int) -> None:
        if reg == MODE1:
            self._store_mode1(value)
        elif reg == PRE_SCALE:
            if self.asleep:  # the datasheet: writes are blocked while the oscillator runs
                self.registers[reg] = max(value, PRESCALE_MIN)
        elif LED0_ON_L <= reg <= _LED_LAST:
            self.registers[reg] = value
            self._clear_restart()
        elif ALL_LED_ON_L <= reg <= ALL_LED_OFF_H:
            self.registers[reg] = value
            for channel in range(16):
                self.registers[LED0_ON_L + 4 * channel + reg - ALL_LED_ON_L] = value
            self._clear_restart()
        elif reg < LED0_ON_L or reg == 0xFF:
            self.registers[reg] = value
        # 0x46-0xF9 are reserved: writes are ignored

    def _store_mode1(self, value: int) -> None:
        old = self.registers[MODE1]
        going_to_sleep = value & MODE1_SLEEP and not old & MODE1_SLEEP
        new = (value & ~MODE1_RESTART) | (old & MODE1_RESTART)  # RESTART is not set by writing 1
        if going_to_sleep and not self._halted and self._any_running():
            new |= MODE1_RESTART
        self.registers[MODE1] = new
        if new & MODE1_RESTART and not new & MODE1_SLEEP:
            self._halted = True
            if value & MODE1_RESTART:  # writing 1 while awake restarts every channel
                self._clear_restart()

    def _clear_restart(self) -> None:
        self.registers[MODE1] &= ~MODE1_RESTART
        self._halted = False

    def _any_running(self) -> bool:
        return any(not self.counts(channel)[3] for channel in range(16))
