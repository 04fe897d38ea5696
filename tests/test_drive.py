"""plenctl drive's pieces without a daemon: keys, steps, the display, the gamepad, config."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from plend.core.config import from_dict
from plend.core.errors import ConfigError
from plend.drive.client import status_line
from plend.drive.gamepad import (
    EV_ABS,
    EV_KEY,
    Gamepad,
    GamepadError,
    GamepadGoneError,
    PadEvent,
    event_bytes,
    find_gamepad,
)
from plend.drive.keys import ESC_WAIT_S, Command, KeyDecoder, apply
from plend.drive.settings import AXES, BUTTONS, DriveConfig, GamepadConfig


def keys(*chunks: bytes) -> list[str]:
    decoder, out = KeyDecoder(), []
    for chunk in chunks:
        out += decoder.feed(chunk, 0.0)
    return out + decoder.flush(ESC_WAIT_S)


def test_arrows_letters_and_the_esc_key_are_told_apart() -> None:
    assert keys(b"\x1b[A\x1b[B\x1b[C\x1b[D") == ["up", "down", "right", "left"]
    assert keys(b"\x1bOA") == ["up"]  # application cursor mode
    assert keys(b"\x1b[1;5A") == ["up"]  # with a modifier (Ctrl-Up)
    assert keys(b"W", b"a", b" ", b"\r") == ["w", "a", " ", "\r"]
    assert keys(b"\x1b") == ["esc"]
    assert keys(b"\x1bx") == ["esc", "x"]


def test_an_arrow_split_across_reads_is_one_key_and_other_sequences_are_ignored() -> None:
    assert keys(b"\x1b", b"[", b"A") == ["up"]
    assert keys(b"\x1b[", b"1;5", b"B") == ["down"]
    assert keys(b"\x1b[H", b"\x1b[15~", b"w") == ["w"]  # Home, F5: no key of ours, no e-stop


def test_a_lone_esc_waits_only_briefly() -> None:
    decoder = KeyDecoder()
    assert decoder.feed(b"\x1b", 10.0) == []
    assert decoder.flush(10.0 + ESC_WAIT_S / 2) == []
    assert decoder.flush(10.0 + ESC_WAIT_S) == ["esc"]
    assert not decoder.waiting


def test_steps_stay_on_the_grid_and_in_range() -> None:
    config = DriveConfig(speed_step=0.1, turn_step=0.3)
    c = Command()
    for _ in range(7):
        c = apply(c, "faster", config)
    assert c.speed == 0.7
    for _ in range(7):
        c = apply(c, "slower", config)
    assert c.speed == 0.0  # exactly: no drift after many presses
    for _ in range(20):
        c = apply(c, "slower", config)
    assert c.speed == -1.0
    for _ in range(5):
        c = apply(c, "turn_left", config)
    assert c.turn == 1.0
    c = apply(apply(c, "side_right", config), "turn_right", config)
    assert (c.side, c.turn) == (-0.5, 0.9)


def test_the_live_line_shows_command_motion_and_faults() -> None:
    heard = {
        "mode": "sine",
        "motion": {"speed_m_s": 0.0412, "yaw_rate_deg_s": -3.25, "tilt_deg": 2.04},
        "faults": ["stale_pose"],
    }
    line = status_line(Command(0.4, 0.2, 0.0), heard, "", True)
    assert "sine" in line and "speed +0.40 turn +0.20 side +0.00" in line
    assert "+0.041 m/s" in line and "yaw -3.2 deg/s" in line and "tilt 2.0 deg" in line
    assert "faults stale_pose" in line
    idle = status_line(Command(), {"mode": "stand", "motion": {"speed_m_s": None}}, "e-stop", False)
    assert "cmd -" in idle and "- m/s" in idle and idle.startswith("stand   e-stop | cmd -")
    policy = status_line(Command(0.5), {"mode": "policy", "walker": "policy", "took": []}, "", True)
    assert "walks as trained" in policy


@pytest.fixture
def fake_pad(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A FIFO standing in for /dev/input/eventN, and the test's end of it."""
    path = tmp_path / "event0"
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR)  # a FIFO opened for reading only would see end of file
    yield path, writer
    with contextlib.suppress(OSError):  # the test closed it itself
        os.close(writer)


def test_the_gamepad_maps_sticks_and_buttons(fake_pad) -> None:  # type: ignore[no-untyped-def]
    path, writer = fake_pad
    pad = Gamepad(path, GamepadConfig(dead_zone=0.1))
    try:
        assert pad.read() == []
        os.write(writer, event_bytes(EV_ABS, AXES["ABS_Y"], -32768))  # left stick fully forward
        os.write(writer, event_bytes(EV_ABS, AXES["ABS_X"], 1000))  # inside the dead zone
        os.write(writer, event_bytes(EV_ABS, AXES["ABS_RX"], -16384))  # right stick half left
        os.write(writer, event_bytes(EV_KEY, BUTTONS["BTN_SOUTH"], 1))
        os.write(writer, event_bytes(EV_KEY, BUTTONS["BTN_SOUTH"], 0))  # release: nothing
        os.write(writer, event_bytes(EV_KEY, BUTTONS["BTN_EAST"], 1))
        unmapped = event_bytes(EV_ABS, AXES["ABS_Z"], 500)
        os.write(writer, unmapped[:10])  # half a record so far
        events = pad.read()
        assert events == [
            PadEvent("speed", 1.0),
            PadEvent("turn", 0.0),
            PadEvent("side", 0.44),
            PadEvent("stop", 1.0),
            PadEvent("estop", 1.0),
        ]
        os.write(writer, unmapped[10:] + event_bytes(EV_ABS, AXES["ABS_Y"], 0))  # the rest, and centred
        assert pad.read() == [PadEvent("speed", 0.0)]
    finally:
        pad.close()


def test_a_gamepad_that_goes_away_says_so(fake_pad) -> None:  # type: ignore[no-untyped-def]
    path, writer = fake_pad
    pad = Gamepad(path, GamepadConfig())
    os.close(writer)
    with pytest.raises(GamepadGoneError, match="went away"):
        pad.read()
    pad.close()
    with pytest.raises(GamepadError, match=r"cannot open the gamepad .*missing"):
        Gamepad(path.parent / "missing", GamepadConfig())


def test_the_first_joystick_is_found_by_its_buttons(tmp_path: Path) -> None:
    with pytest.raises(GamepadError, match=r"no gamepad found.*--gamepad /dev/input/eventN"):
        find_gamepad(tmp_path)
    for name, bits in (
        ("event3", "0"),
        ("event10", "7fff000000000000 0 0 0 0"),
        ("event4", "ffff00000000 0 0 0 0"),
    ):
        caps = tmp_path / "sys/class/input" / name / "device/capabilities"
        caps.mkdir(parents=True)
        (caps / "key").write_text(bits + "\n")
    # event4's bitmap has bits 0x120-0x12f (a joystick's) in its fifth word from the end.
    assert find_gamepad(tmp_path) == tmp_path / "dev/input/event4"
    by_id = tmp_path / "dev/input/by-id"
    by_id.mkdir(parents=True)
    (by_id / "usb-Pad-event-joystick").touch()
    assert find_gamepad(tmp_path) == by_id / "usb-Pad-event-joystick"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"lease_s": 0.05}, r"drive.lease_s = 0.05 is out of range"),
        ({"lease_s": 0.2, "update_hz": 5.0}, r"drive.update_hz = 5.0 sends less than twice"),
        ({"gamepad": {"speed_axis": "ABS_Q"}}, r"drive.gamepad.speed_axis = 'ABS_Q' is not valid"),
        ({"gamepad": {"stop_button": "BTN_EAST"}}, r"need four different buttons"),
        ({"gamepad": {"range_min": 5, "range_max": 5}}, r"range_max must be above"),
        ({"speed_step": 2}, r"drive.speed_step = 2 is out of range"),
    ],
)
def test_drive_config_is_checked(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict({"drive": table})
