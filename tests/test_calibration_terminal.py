"""``plenctl calibrate`` typed at in a real terminal, as a person would.

A daemon runs the emulated hardware of a robot whose calibration file is right for every
joint but the right knee, whose horn offset is a few degrees off. The interactive wizard
runs on the slave end of a pseudo-terminal (its keyboard operator reads single keys in
cbreak mode); the test reads the screen from the master end and types: no to fitting
horns, the jog keys that bring the knee to its true zero, Enter, yes to the direction
check, and yes to the save. The new file must hold the knee's true zero and leave the
other joints alone, the old file must be kept as the backup, and the daemon must be back
in relax mode.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calibration.store import CALIBRATION_VERSION, CalibrationRecord, JointRecord, backup_path, load, save
from plend.hal.emulated.robot import miscalibrated
from plend.model.robot import JOINTS
from plend.plenctl import Client

pytest.importorskip("pybullet")

ROOT = Path(__file__).resolve().parents[1]
SEED = 5
ROBOT_ID = f"emulated robot (seed {SEED})"
JOINT = "r_knee_r_shin"
ERROR_DEG = 6.3  # how far the stored offset is off: a coarse jog and some fine ones, not a whole number
STEP_TIMEOUT_S = 60.0
FINE_DEG, COARSE_DEG = 0.5, 5.0  # what one '+' / '>' jogs, as the wizard's keys help says
WHEN = "2026-01-01T00:00:00+00:00"


def stored_record(wrong_by_deg: float) -> CalibrationRecord:
    """A complete calibration of the emulated robot: its true one, but ``JOINT`` off."""
    truth = miscalibrated(SEED)
    joints = {}
    for j in JOINTS:
        if not j.wired:
            continue
        c = truth.joints[j.name]
        joints[j.name] = JointRecord(
            offset_deg=c.offset_deg + (wrong_by_deg if j.name == JOINT else 0.0), direction=c.direction,
            pulse_min_us=600.0, pulse_max_us=2800.0, code_at_zero=c.code_at_zero,
            codes_per_rad=c.codes_per_rad, fit_error_deg=0.1, hysteresis_deg=0.1, range_rad=(-0.5, 0.5),
            calibrated_at=WHEN,
        )  # fmt: skip
    return CalibrationRecord(CALIBRATION_VERSION, ROBOT_ID, WHEN, joints)


def jog_keys(jog_deg: float) -> str:
    """The keys a person presses to jog ``jog_deg``: 5 deg steps, then 0.5 deg ones."""
    half_steps = round(jog_deg / FINE_DEG)
    coarse, fine = divmod(abs(half_steps), round(COARSE_DEG / FINE_DEG))
    up = half_steps > 0
    return (">" if up else "<") * coarse + ("+" if up else "-") * fine


def jog_of(key: str) -> float:
    return {"+": FINE_DEG, "-": -FINE_DEG, ">": COARSE_DEG, "<": -COARSE_DEG}[key]


CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A program on the slave end of a pseudo-terminal; the test reads its screen and types
    at it from the master end."""

    def __init__(self, argv: list[str]):
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=self.slave, stdout=self.slave, stderr=self.slave, cwd=ROOT, start_new_session=True
        )
        self.text = ""  # everything the program wrote
        self.seen = 0  # where the next expect starts looking
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def screen(self, last: int = 4000) -> str:
        """The output so far as readable lines (in-place updates each on their own line)."""
        text = CSI.sub("", self.text).replace("\r\n", "\n").replace("\r", "\n")
        return text[-last:]

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: nothing holds the slave end any more
                return
            self.text += self._decoder.decode(data)

    def expect(self, pattern: str, what: str, timeout: float = STEP_TIMEOUT_S) -> re.Match[str]:
        """Wait until ``pattern`` (a regular expression) appears after what was seen so far."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.text, self.seen)
            if found:
                self.seen = found.end()
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:.0f} s; the screen so far:\n{self.screen()}")
            if self.proc.poll() is not None:
                self._read(0.2)  # what it wrote last
                if not re.compile(pattern).search(self.text, self.seen):
                    pytest.fail(
                        f"plenctl exited ({self.proc.returncode}) before {what}; the screen:\n{self.screen()}"
                    )
            self._read(0.1)

    def type(self, key: str, what: str, timeout: float = STEP_TIMEOUT_S) -> None:
        """Press ``key`` once the wizard listens for single keys (the terminal in cbreak
        mode, set when the wizard starts): before that the terminal is in line mode and
        would hold the key back until a newline."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.slave)[3] & termios.ICANON:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"the wizard never listened for {what}; the screen so far:\n{self.screen()}")
            self._read(0.02)
        os.write(self.master, key.encode())

    def wait(self, timeout: float = STEP_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"plenctl did not exit within {timeout:.0f} s; the screen:\n{self.screen()}")
            self._read(0.1)
        self._read(0.1)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        os.close(self.master)
        os.close(self.slave)


@contextlib.contextmanager
def daemon(tmp: Path) -> Iterator[Path]:
    """``plend run`` on the emulated robot of ``SEED``, hung on its stand, 8x real time."""
    sock, config, log_path = tmp / "plend.sock", tmp / "plend.toml", tmp / "plend.log"
    config.write_text(
        f'hal = "hardware"\n[paths]\nstate_dir = "{tmp}"\nrecordings_dir = "{tmp / "rec"}"\n'
        "[loop]\ntime_scale = 8.0\nrealtime = false\n"
        f'[hardware]\nbus = "emulated"\nemulated_miscalibration_seed = {SEED}\n[sim]\nfixed_base = true\n'
    )
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plend.main", "--config", str(config), "run", "--socket", str(sock)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    Client(sock, timeout=1.0).close()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"plend did not start:\n{log_path.read_text()}")
                    time.sleep(0.05)
            yield sock
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def status(sock: Path) -> dict:
    client = Client(sock)
    try:
        return client.request("status")
    finally:
        client.close()


def test_a_person_recalibrates_one_joint_at_the_keyboard(tmp_path: Path) -> None:
    truth = miscalibrated(SEED).joints[JOINT]
    old = stored_record(ERROR_DEG)
    path = tmp_path / "calibration.json"
    save(path, old)
    stored = old.joints[JOINT]
    # Jogging starts at the stored zero: servo_deg = 90 + stored.offset + stored.direction * jog,
    # and the link is at its true zero where that is 90 + truth.offset.
    keys = jog_keys(stored.direction * (truth.offset_deg - stored.offset_deg))
    assert set(keys) == {">", "+"} or set(keys) == {"<", "-"}, "both jog sizes are typed"

    with daemon(tmp_path) as sock:
        assert status(sock)["mode"] == "relax", "the daemon starts relaxed: the wizard asks nothing about it"
        term = Terminal(
            [sys.executable, "-m", "plend.plenctl", "--socket", str(sock),
             "calibrate", "--joint", JOINT, "--no-imu"]
        )  # fmt: skip
        try:
            term.expect(r"Are the servo horns off.*\[y/N\] ", "question about fitting horns")
            term.type("n", "the horns answer")
            term.expect(r"\bn", "the horns answer on screen")
            # Enter comes as its own key, as a person types it: it confirms the answer and
            # must not reach the jog below, where it would accept the zero unjogged.
            term.type("\r", "Enter after the horns answer")
            term.expect(r"\r?\n", "the horns answer confirmed")
            term.expect(r"== Joint 1 of 1: .*\(r_knee_r_shin\) ==", "the joint's heading")
            term.expect(r"keys: \+ / -", "the jog keys' help")
            jog = 0.0
            term.expect(r"jog\s+\+0\.0 deg", "the jog display")
            for key in keys:
                term.type(key, f"jog key {key!r}")
                jog += jog_of(key)
                term.expect(rf"jog\s+{re.escape(f'{jog:+.1f}')} deg", f"the jog display at {jog:+.1f} deg")
            term.type("\r", "Enter at the zero")
            zero = term.expect(r"horn offset ([+-]\d+\.\d) deg", "the zero found")
            term.expect(r"Did it move like that \(.*\)\? \[Y/n/q\] ", "the direction question")
            term.type("y", "the direction answer")
            term.type("\r", "Enter after the direction answer")
            term.expect(rf"Direction {stored.direction:+d}\.", "the direction kept")
            fit = term.expect(r"Fit: [+-]\d+ codes/rad, error (\d+\.\d+) deg", "the feedback fit")
            term.expect(r"== Review ==", "the review")
            # The question names the file; a long path wraps onto the next line.
            term.expect(rf"Save to\s+{re.escape(str(path))}\?\s+\[Y/n\] ", "the save question")
            term.type("y", "the save answer")
            term.type("\r", "Enter after the save answer")
            term.expect(r"Saved\s[\s\S]*?previous\s+one\s+kept\s+as", "the save")  # wrapped lines
            assert term.wait() == 0, term.screen()
        finally:
            term.close()
        after = status(sock)

    assert after["mode"] == "relax", "the daemon left calibration mode when the wizard ended"
    new = load(path)
    knee = new.joints[JOINT]
    assert abs(knee.offset_deg - truth.offset_deg) < 1.0, (knee.offset_deg, truth.offset_deg)
    assert abs(float(zero.group(1)) - knee.offset_deg) <= 0.05, "what the screen said was saved"
    assert knee.direction == truth.direction
    assert knee.fit_error_deg == pytest.approx(float(fit.group(1)), abs=0.01) and knee.fit_error_deg < 1.0
    assert knee.calibrated_at != WHEN
    assert {n: r for n, r in new.joints.items() if n != JOINT} == {
        n: r for n, r in old.joints.items() if n != JOINT
    }, "the other joints are kept as they were"
    assert new.robot_id == ROBOT_ID
    backup = load(backup_path(path))
    assert backup == old, "the previous file is the backup"
    assert backup.joints[JOINT].offset_deg == pytest.approx(truth.offset_deg + ERROR_DEG)


@pytest.mark.parametrize(
    ("keys", "answer"),
    [
        (["n", "\r"], "n"),  # the Enter confirms and goes with the answer
        (["\r"], "y"),  # Enter alone: the default
        (["y", "\x7f", "n", "\r"], "n"),  # rubbed out and changed
        (["x", "\x7f", "n", "\r\n"], "n"),  # a CR LF pair does not leave its LF
        (["y", "e", "s", "\r"], "y"),
        # Anything but a choice is asked again: "no way" holds a y, and must not be a yes.
        (["n", "o", " ", "w", "a", "y", "\r", "n", "\r"], "n"),
        (["m", "a", "y", "b", "e", "\r", "\r"], "y"),
    ],
)
def test_a_yes_no_answer_consumes_its_whole_line(keys: list[str], answer: str) -> None:
    import io
    import threading

    from calibration.operators import KeyboardOperator

    master, slave = pty.openpty()
    out = io.StringIO()
    try:
        with os.fdopen(os.dup(slave), "r") as stdin, KeyboardOperator(stdin, out) as operator:

            def press() -> None:
                while "[Y/n]" not in out.getvalue():  # the question is up: typed-ahead keys were flushed
                    time.sleep(0.01)
                for key in keys:
                    time.sleep(0.05)  # one key at a time, as a person types
                    os.write(master, key.encode())

            typist = threading.Thread(target=press)
            typist.start()
            assert operator.ask("horns", "Horns?", "yn", "y") == answer
            typist.join()
            time.sleep(0.1)
            assert operator._key(0.2) is None, "a key of the answer's line reached the next step"
    finally:
        os.close(master)
        os.close(slave)
