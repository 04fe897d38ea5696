"""Keys to drive commands: decoding a terminal's bytes, and what each key does.

Pure functions and a small decoder, so the key map is tested without a terminal.

| keys | does |
|---|---|
| Up / w, Down / s | speed up, slow down (back past 0) by ``drive.speed_step`` |
| Left / a, Right / d | turn more to the left, right by ``drive.turn_step`` |
| q, e | step sideways to the left, right by ``drive.side_step`` |
| space | stop walking (at the next step) and stand |
| Enter | stand now |
| x, Esc | e-stop |
| Ctrl-C | stop walking and quit |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

ESC_WAIT_S = 0.05  # an Esc with nothing after it for this long is the Esc key, not an arrow

# Arrows come as ESC [ X, or ESC O X in the terminal's application mode.
_ARROWS = {b"A": "up", b"B": "down", b"C": "right", b"D": "left"}
KEY_ACTIONS = {
    "up": "faster", "w": "faster", "down": "slower", "s": "slower",
    "left": "turn_left", "a": "turn_left", "right": "turn_right", "d": "turn_right",
    "q": "side_left", "e": "side_right",
    " ": "stop", "\r": "stand", "\n": "stand", "x": "estop", "esc": "estop",
}  # fmt: skip
# (command field, direction, step field) of each key that changes the command.
_CHANGES = {
    "faster": ("speed", 1, "speed_step"), "slower": ("speed", -1, "speed_step"),
    "turn_left": ("turn", 1, "turn_step"), "turn_right": ("turn", -1, "turn_step"),
    "side_left": ("side", 1, "side_step"), "side_right": ("side", -1, "side_step"),
}  # fmt: skip


@dataclass(frozen=True)
class Command:
    """What the driver asks for: each in [-1, 1]; positive turn and side to the left."""

    speed: float = 0.0
    turn: float = 0.0
    side: float = 0.0

    def moving(self) -> bool:
        return any((self.speed, self.turn, self.side))

    def as_dict(self) -> dict[str, float]:
        return {"speed": self.speed, "turn": self.turn, "side": self.side}


def changes_command(action: str) -> bool:
    return action in _CHANGES


def apply(command: Command, action: str, steps: object) -> Command:
    """``command`` after one key of ``action``; ``steps`` has speed_step, turn_step and
    side_step (a plend.drive.settings.DriveConfig). Values stay in [-1, 1] and on the
    step grid, so ten presses up and ten down come back to exactly 0."""
    field, sign, step_name = _CHANGES[action]
    step = float(getattr(steps, step_name))
    k = getattr(command, field) / step  # to the next point of the grid that way
    grid = math.floor(k + 1e-6) + 1 if sign > 0 else math.ceil(k - 1e-6) - 1
    return replace(command, **{field: max(-1.0, min(1.0, round(grid * step, 6)))})


class KeyDecoder:
    """Turns a terminal's bytes into key names ("up", "esc", "w", " ", ...).

    An Esc byte may start an arrow's sequence or be the Esc key; it is held until the
    next byte or until :meth:`flush` is called ``ESC_WAIT_S`` after it came.
    """

    def __init__(self) -> None:
        self._held = b""
        self._since = 0.0

    def feed(self, data: bytes, now: float) -> list[str]:
        keys: list[str] = []
        buffer = self._held + data
        self._held = b""
        i = 0
        while i < len(buffer):
            if buffer[i : i + 1] != b"\x1b":
                keys.append(buffer[i : i + 1].decode("latin-1").lower())
                i += 1
                continue
            end, key = _escape(buffer, i)
            if end is None:  # incomplete: an arrow may still be arriving
                self._held, self._since = buffer[i:], now
                break
            if key:
                keys.append(key)
            i = end
        return keys

    def flush(self, now: float) -> list[str]:
        """The Esc key, once it has waited long enough alone."""
        if not self._held or now - self._since < ESC_WAIT_S:
            return []
        held, self._held = self._held, b""
        return ["esc"] if held == b"\x1b" else []  # an unfinished sequence is dropped

    @property
    def waiting(self) -> bool:
        return bool(self._held)


def _escape(buffer: bytes, i: int) -> tuple[int | None, str]:
    """The sequence starting with the Esc at ``i``: where it ends (None: incomplete) and
    its key ("" for a sequence that is no key of ours, e.g. Home or F5)."""
    kind = buffer[i + 1 : i + 2]
    if kind == b"":
        return None, ""
    if kind == b"O":  # SS3: ESC O A..D
        final = buffer[i + 2 : i + 3]
        return (None, "") if final == b"" else (i + 3, _ARROWS.get(final, ""))
    if kind != b"[":
        return i + 1, "esc"  # Esc, then another key
    j = i + 2  # CSI: parameter and intermediate bytes, then one final byte
    while j < len(buffer) and 0x20 <= buffer[j] <= 0x3F:
        j += 1
    if j >= len(buffer):
        return None, ""
    final = buffer[j : j + 1]
    return j + 1, _ARROWS.get(final, "") if 0x40 <= buffer[j] <= 0x7E else ""
