"""plenctl's words: each reply of the daemon as a sentence or a table for people.

``--json`` prints the daemon's reply as it came instead, for programs.
"""

from __future__ import annotations

import math
from typing import Any

MOVING = ("sine", "replay", "policy")


def sentence(command: str, result: dict[str, Any]) -> str:
    """What a command did, in one line (or a table for ``policy list``)."""
    mode = result.get("mode", "?")
    if command == "reset" and result.get("respawned"):
        return "e-stop and faults cleared; the simulated robot was stood up again (mode stand)"
    if result.get("respawned"):
        return "the simulated robot was stood up again (mode stand)"
    words = {
        "stand": "standing up (mode stand)",
        "relax": "servos relaxed (mode relax)",
        "estop": "e-stop: servos relaxed; every move is refused until 'plenctl reset'",
        "reset": "e-stop and faults cleared; the robot stays relaxed (mode relax)",
        "policy_start": "walking on the loaded policy (mode policy)",
    }
    if command in words:
        return words[command]
    handler = _DESCRIBE.get(command)
    return handler(result) if handler else f"done (mode {mode})"


def _stop(result: dict[str, Any]) -> str:
    mode = result.get("mode")
    if mode in MOVING:
        return f"stopping: {mode} ends at its next safe point, then the robot stands"
    if mode == "stand":
        return "already standing; nothing to stop"
    return f"nothing to stop (mode {mode})"


def _gait(result: dict[str, Any]) -> str:
    speed = result.get("speed")
    steer = "".join(f", {k} {result[k]:+g}" for k in ("turn", "side") if result.get(k))
    if result.get("was_walking"):
        return f"speed {speed:g}{steer} from the next step"
    return f"walking on the sine gait at speed {speed:g}{steer} (mode sine)"


def _policy_command(result: dict[str, Any]) -> str:
    speed, turn, side = result.get("command", (math.nan,) * 3)
    return f"policy command speed {speed:g}, turn {turn:+g}, side {side:+g} from the next step"


def _replay(result: dict[str, Any]) -> str:
    return (
        f"replaying {result.get('samples')} samples over {result.get('duration_s', 0.0):.2f} s (mode replay)"
    )


def _policy_load(result: dict[str, Any]) -> str:
    if "loaded" not in result:
        return f"policy loaded (mode {result.get('mode')})"
    timing = result.get("inference_ms", {})
    p50, p99 = timing.get("p50", math.nan), timing.get("p99", math.nan)
    budget, cpu = timing.get("budget", math.inf), timing.get("cpu_p50", math.nan)
    busy = (
        f" (over the {budget:g} ms budget: a busy machine; its CPU median {cpu:.3f} ms fits)"
        if p99 > budget
        else ""
    )
    return (
        f"loaded {result['loaded']}: {result.get('observations')} observations -> {result.get('actions')} "
        f"actions ({result.get('action_mode')}) at {result.get('rate_hz'):g} Hz, inference median "
        f"{p50:.3f} ms, p99 {p99:.3f} ms{busy} on {result.get('engine')}; the robot carries on as it was "
        f"until 'plenctl policy start'{_commands(result.get('commands'))}"
    )


def _commands(ranges: dict[str, list[float]] | None) -> str:
    """The commands a policy takes, for the load reply ("" for a policy without any)."""
    taken = {k: r for k, r in (ranges or {}).items() if r[0] != r[1]}
    if not taken:
        return ""
    return "; it takes " + ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in taken.items())


def _record_start(result: dict[str, Any]) -> str:
    return f"recording to {result.get('path')}"


def _record_stop(result: dict[str, Any]) -> str:
    size = result.get("bytes", 0) / 2**20
    dropped = result.get("dropped", 0)
    capped = "; stopped at the size cap" if result.get("capped") else ""
    return (
        f"recording stopped: {result.get('path')}, {result.get('written')} ticks, {size:.1f} MiB, "
        f"{dropped} dropped{capped}"
    )


def policy_table(result: dict[str, Any]) -> str:
    """``plenctl policy list``: one row per file, and where it looked."""
    rows = result.get("policies", [])
    lines = [f"{'policy':<24}{'obs':>5}{'act':>5}  {'mode':<9}{'Hz':>5}  file"]
    for p in rows:
        if "problem" in p:
            lines.append(f"{p['name']:<24}{'-':>5}{'-':>5}  {'-':<9}{'-':>5}  {p['file']}  ({p['problem']})")
        else:
            lines.append(
                f"{p['name']:<24}{p['observations']:>5}{p['actions']:>5}  {p['mode']:<9}"
                f"{p['rate_hz']:>5g}  {p['file']}"
            )
    if not rows:
        lines = ["no policy files"]
    lines.append("looked in: " + ", ".join(result.get("searched", [])))
    return "\n".join(lines)


_DESCRIBE = {
    "stop": _stop,
    "gait": _gait,
    "replay": _replay,
    "policy_load": _policy_load,
    "policy_command": _policy_command,
    "policy_list": policy_table,
    "record_start": _record_start,
    "record_stop": _record_stop,
}
