"""plend.pwm_off: the last-resort relax writes exactly the right bytes, and fails clearly."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plend import pwm_off
from plend.core.errors import PlendError
from plend.pwm_off import PwmOffError, all_off, cli

ROOT = Path(__file__).resolve().parents[1]


class FakeI2cDev:
    """The system calls all_off makes on /dev/i2c-N, recorded in order; any one can be made to fail."""

    FD = 7

    def __init__(
        self, fail: str | None = None, err: int = errno.EIO, fail_register: int | None = None
    ) -> None:
        self.fail = fail
        self.err = err
        self.fail_register = fail_register
        self.calls: list[tuple[object, ...]] = []

    def _maybe_fail(self, name: str) -> None:
        if self.fail == name:
            raise OSError(self.err, os.strerror(self.err))

    def open(self, path: str, flags: int) -> int:
        self.calls.append(("open", path, flags))
        self._maybe_fail("open")
        return self.FD

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        self.calls.append(("ioctl", fd, request, arg))
        self._maybe_fail("ioctl")
        return 0

    def write(self, fd: int, data: bytes) -> int:
        self.calls.append(("write", fd, bytes(data)))
        if self.fail == "write" and (self.fail_register is None or data[0] == self.fail_register):
            raise OSError(self.err, os.strerror(self.err))
        return 1 if self.fail == "short" else len(data)

    def close(self, fd: int) -> None:
        self.calls.append(("close", fd))

    def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds))

    def run(self, bus: str = "/dev/i2c-1", address: int = 0x40) -> None:
        all_off(
            bus, address, self.open, ioctl=self.ioctl, write=self.write, close=self.close, sleep=self.sleep
        )

    @property
    def writes(self) -> list[bytes]:
        return [call[2] for call in self.calls if call[0] == "write"]  # type: ignore[misc]


def test_writes_full_off_then_sleep_after_one_frame() -> None:
    dev = FakeI2cDev()
    dev.run()
    assert dev.calls == [
        ("open", "/dev/i2c-1", os.O_RDWR | os.O_CLOEXEC),
        ("ioctl", 7, 0x0703, 0x40),
        ("write", 7, b"\xfd\x10"),  # ALL_LED_OFF_H: full-off bit on every channel
        ("sleep", pwm_off.FRAME_WAIT_S),  # let it take effect at the end of the frame
        ("write", 7, b"\x00\x10"),  # MODE1: SLEEP, the oscillator stops
        ("close", 7),
    ]
    # the wait covers one frame at the slowest rate the chip can run (prescale 255)
    assert pwm_off.FRAME_WAIT_S > 4096 * 256 / 25e6


def test_addresses_the_given_chip_on_the_given_bus() -> None:
    dev = FakeI2cDev()
    dev.run("/dev/i2c-3", 0x41)
    assert dev.calls[0][:2] == ("open", "/dev/i2c-3")
    assert dev.calls[1] == ("ioctl", 7, 0x0703, 0x41)


@pytest.mark.parametrize(
    ("fail", "err", "words"),
    [
        ("open", errno.ENOENT, ("cannot open the bus", "No such file", "enable I2C")),
        ("open", errno.EACCES, ("cannot open the bus", "group i2c")),
        ("ioctl", errno.EBUSY, ("cannot address the chip", "kernel driver")),
        ("write", errno.EREMOTEIO, ("cannot write register 0xfd", "powered")),
        ("write", errno.EPROTO, ("cannot write register 0xfd", "I2C is enabled", "powered", "group i2c")),
        ("short", 0, ("short write",)),
    ],
)
def test_a_failure_names_bus_address_and_what_to_check(fail: str, err: int, words: tuple[str, ...]) -> None:
    dev = FakeI2cDev(fail=fail, err=err)
    with pytest.raises(PwmOffError) as caught:
        dev.run("/dev/i2c-1", 0x40)
    message = str(caught.value)
    assert message.startswith("PCA9685 at 0x40 on /dev/i2c-1: ")
    assert "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(caught.value, PlendError) and isinstance(caught.value, OSError)
    assert isinstance(caught.value.__cause__, OSError)
    if fail != "open":
        assert dev.calls[-1] == ("close", 7), "the bus is closed even after a failure"


def test_a_failed_full_off_still_puts_the_chip_to_sleep() -> None:
    dev = FakeI2cDev(fail="write", fail_register=0xFD)
    with pytest.raises(PwmOffError, match="register 0xfd"):
        dev.run()
    assert dev.writes == [b"\xfd\x10", b"\x00\x10"]


def test_a_failed_sleep_is_reported_after_the_full_off() -> None:
    dev = FakeI2cDev(fail="write", fail_register=0x00)
    with pytest.raises(PwmOffError, match="register 0x00"):
        dev.run()
    assert dev.writes == [b"\xfd\x10", b"\x00\x10"]


def test_cli_on_a_missing_bus_prints_one_line_and_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLEND_DEBUG", raising=False)
    bus = str(tmp_path / "i2c-9")
    assert cli(["--bus", bus, "--address", "0x41"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"plend safe-off: error: PCA9685 at 0x41 on {bus}: cannot open the bus")


def test_cli_reports_success_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = FakeI2cDev()

    def fake_all_off(bus: str, address: int) -> None:
        dev.run(bus, address)

    monkeypatch.setattr(pwm_off, "all_off", fake_all_off)
    assert cli(["--address", "0x40"]) == 0
    assert capsys.readouterr().out == "plend safe-off: PCA9685 at 0x40 on /dev/i2c-1: all outputs off\n"
    assert dev.writes == [b"\xfd\x10", b"\x00\x10"]


@pytest.mark.parametrize(("text", "value"), [("0x40", 0x40), ("0X4f", 0x4F), ("64", 64), ("0x70", 0x70)])
def test_cli_parses_hex_and_decimal_addresses(text: str, value: int) -> None:
    assert pwm_off._parser().parse_args(["--address", text]).address == value


@pytest.mark.parametrize("text", ["forty", "0x80", "0x00", "-1"])
def test_cli_refuses_a_bad_address(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli(["--address", text])
    assert caught.value.code == 2
    assert "--address" in capsys.readouterr().err


def test_runs_with_the_standard_library_only(tmp_path: Path) -> None:
    """ExecStopPost runs `python -m plend.pwm_off`: it must work when numpy & co. are broken."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("numpy", "mcap", "systemd"):
        (broken / f"{name}.py").write_text("raise ImportError('broken on purpose')\n")
    env = {**os.environ, "PYTHONPATH": str(broken), "PLEND_DEBUG": ""}
    probe = (
        "import sys; before = set(sys.modules); import plend.pwm_off; "
        "new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['plend', 'plend.core', 'plend.core.errors', 'plend.pwm_off']"

    bus = str(tmp_path / "no-such-bus")
    done = subprocess.run(
        [sys.executable, "-m", "plend.pwm_off", "--bus", bus],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"plend safe-off: error: PCA9685 at 0x40 on {bus}: ")
    assert done.stderr.count("\n") == 1
