"""Benchmark: turning, side-stepping, and what the balance layer costs on the nominal world.

Run with ``.venv/bin/python tests/benchmarks/balance.py``. Prints:

1. turning (``--turn 1`` and ``-1`` at speed 0.5: yaw rate, no fall, mirrored within 20 %)
   and side-stepping (``--side 1`` and ``-1`` at speed 0.5, and marching in place, for
   reference: sideways distance);
2. the nominal world with the balance layer on and off: the walking distance.

The robustness suite and the model with uneven rounded soles, with the balance layer on
and off, are ``tests/benchmarks/robustness.py``.

Every run is ``plend.daemon.headless.run``, the same path as ``plend run --fast``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from plend.core.config import Config, GaitConfig
from plend.daemon.headless import RunOptions, run

SECONDS = 20.0
OPEN_LOOP = GaitConfig(balance=False)


def walk(config: Config, speed: float, turn: float = 0.0, side: float = 0.0) -> dict[str, Any]:
    return run(config, RunOptions(speed=speed, turn=turn, side=side, duration_s=SECONDS, fast=True))


def _open_loop(config: Config) -> Config:
    return dataclasses.replace(config, gait=OPEN_LOOP)


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def turning() -> None:
    print("\nturning and side-stepping (nominal world, 20 s, balance on)")
    print(f"{'command':<22}{'fell':>6}{'yaw rate deg/s':>16}{'distance m':>12}{'lateral m':>11}")
    rates = {}
    for turn in (1.0, -1.0):
        s = walk(Config(), 0.5, turn=turn)
        rates[turn] = s["yaw_rate_deg_s"]
        print(f"{f'speed 0.5 turn {turn:+.0f}':<22}{s['fell']!s:>6}{s['yaw_rate_deg_s']:>16.2f}"
              f"{s['distance_m']:>12.3f}{s['lateral_m']:>11.3f}")  # fmt: skip
    mirror = abs(abs(rates[-1.0]) / rates[1.0] - 1.0)
    ok = rates[1.0] >= 10.0 and mirror <= 0.2
    print(f"target: >= 10 deg/s, mirrored within 20 %: {rates[1.0]:.1f} deg/s, {100 * mirror:.0f} % apart"
          f" -> {_mark(ok)}")  # fmt: skip
    sideways = []
    for speed in (0.5, 0.0):
        for side in (1.0, -1.0):
            s = walk(Config(), speed, side=side)
            if speed == 0.5:  # plend run's default speed: the target's walk
                sideways.append(not s["fell"] and s["lateral_m"] * side >= 0.1)
            print(f"{f'speed {speed} side {side:+.0f}':<22}{s['fell']!s:>6}{s['yaw_rate_deg_s']:>16.2f}"
                  f"{s['distance_m']:>12.3f}{s['lateral_m']:>11.3f}")  # fmt: skip
    print(f"target (speed 0.5): >= 0.1 m sideways in 20 s without falling -> {_mark(all(sideways))}")


def nominal() -> None:
    print("\nnominal world, 20 s: distance with the balance layer on and off")
    for speed in (0.5, 1.0):
        on, off = walk(Config(), speed), walk(_open_loop(Config()), speed)
        change = on["distance_m"] / off["distance_m"] - 1.0
        print(f"speed {speed}: on {on['distance_m']:.3f} m, off {off['distance_m']:.3f} m, "
              f"{100 * change:+.1f} % (target within 10 %) -> {_mark(abs(change) <= 0.1)}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    began = time.perf_counter()
    turning()
    nominal()
    print(f"\n({time.perf_counter() - began:.0f} s; timings vary with the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
