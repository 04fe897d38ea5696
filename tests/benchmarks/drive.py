"""Benchmark: plenctl drive's latencies against a real-time daemon on the simulation.

Run with ``.venv/bin/python tests/benchmarks/drive.py``. Starts ``plend run`` (50 Hz) on
a socket in a temporary directory and prints:

- key to gait: from a key's command handed to the drive link (what a key press does) to
  the daemon's reply, which comes once the loop has applied the command (so the gait has
  it); beside it one tick and the socket's round trip alone (``version``, which the loop
  does not see). The target: at most one tick plus the round trip.
- the dead-man stop: a client that stops sending (its updates cease without a word), from
  its last update to the moment the walk is told to stop (the ``drive`` fault appears),
  and to standing; target: the stop begins within drive.lease_s (0.5 s) plus one step.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gaits.sine import SpeedMap
from plend.drive.keys import Command
from plend.drive.link import Link
from plend.plenctl import Client
from tests.support import Daemon

PRESSES = 200
STALLS = 5


def figures(name: str, values: list[float]) -> str:
    ms = np.asarray(values) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return f"{name:<28} p50 {p50:7.2f}  p99 {p99:7.2f}  max {ms.max():7.2f} ms  (n={len(ms)})"


def key_to_gait(socket: Path) -> tuple[list[float], list[float]]:
    client = Client(socket)
    link = Link(client, 0.1, "sine")
    thread = threading.Thread(target=link.run, daemon=True)
    thread.start()
    applied, rng = [], np.random.default_rng(0)
    try:
        for n in range(PRESSES):
            time.sleep(float(rng.uniform(0.05, 0.15)))  # keys come at any phase of the tick
            before = link.sent_at.get("answered")
            pressed = time.monotonic()
            link.set(Command(speed=0.1 + 0.1 * (n % 5)))
            link.wake()
            while link.sent_at.get("answered") == before or link.sent_at["sent"] < pressed:
                time.sleep(0.0002)
            applied.append(link.sent_at["answered"] - pressed)
    finally:
        link.act("stop")
        time.sleep(0.3)
        link.close()
        thread.join()
        client.close()
    probe = Client(socket)
    try:
        trips = []
        for _ in range(PRESSES):
            began = time.monotonic()
            probe.request("version")
            trips.append(time.monotonic() - began)
    finally:
        probe.close()
    return applied, trips


def dead_man(socket: Path) -> tuple[list[float], list[float]]:
    began, standing = [], []
    for n in range(STALLS):
        driver, watcher = Client(socket), Client(socket)
        try:
            for _ in range(15):  # 1.5 s of walking
                driver.request("drive", session=f"bench{n}", speed=0.5)
                time.sleep(0.1)
            driver.request("drive", session=f"bench{n}", speed=0.5)
            last = time.monotonic()  # and then nothing more
            while not any(f["code"] == "drive" for f in watcher.request("status")["faults"]):
                time.sleep(0.005)
            began.append(time.monotonic() - last)
            while watcher.request("status")["mode"] != "stand":
                time.sleep(0.005)
            standing.append(time.monotonic() - last)
        finally:
            driver.close()
            watcher.close()
        time.sleep(0.5)
    return began, standing


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp))
        try:
            applied, trips = key_to_gait(daemon.socket)
            began, standing = dead_man(daemon.socket)
        finally:
            daemon.stop()
    tick = 20.0
    print("drive latency: daemon on the simulation at 50 Hz (one tick 20 ms), real time")
    print(figures("key to gait (link, reply)", applied))
    print(figures("socket round trip alone", trips))
    bound = tick + float(np.percentile(np.asarray(trips) * 1000, 99))
    within = float(np.mean(np.asarray(applied) * 1000 <= bound)) * 100
    print(f"within one tick + round trip p99 ({bound:.2f} ms): {within:.1f} % of presses")
    print(figures("dead-man: stop begins", began))
    print(figures("dead-man: standing", standing))
    step = SpeedMap().params(0.5, 0.0, 0.0).period_s / 2
    print(f"walk at 0.5: one step is {step:.2f} s; target: the stop begins within 0.5 s + one step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
