"""``plend live``: the running daemon, live in Foxglove, through its WebSocket protocol.

A separate process, started by hand when wanted: a control-socket client like plenctl,
it asks the daemon for its status several times a second and serves what it hears with
foxglove-sdk's WebSocket server (``ws://HOST:PORT``; in Foxglove: *Open connection*,
*Foxglove WebSocket*). The daemon itself never opens a network port, and a bridge that
dies or is slow costs it nothing but a status request now and then.

Topics: ``/plend/tick``, messages of the recordings' format (plend.core.recording_format)
built from each status, so the recording layout (docs/foxglove-layout.json) works live;
``/plend/status``, the status as the daemon gave it. The time base is this process's
wall clock at each answer; ``t`` is the daemon's tick count over its rate.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from pathlib import Path
from typing import Any

from plend.core.errors import ConfigError, require_package
from plend.core.files import path_argument
from plend.core.recording_format import EULER, TICK_SCHEMA, WXYZ, XYZ

STATUS_SCHEMA: dict[str, Any] = {
    "title": "plend.Status",
    "type": "object",
    "description": "the daemon's status reply, as plenctl status --json prints it",
}


def add_parser(sub: Any) -> None:
    """``plend live`` on the command line."""
    live = sub.add_parser(
        "live", help="serve the running daemon's status to Foxglove over WebSocket (a separate process)",
        description="Serve a running plend's status live to Foxglove through its WebSocket protocol: this "
        "process asks the daemon for its status (as plenctl does) and publishes it; the daemon opens "
        "no port.",
    )  # fmt: skip
    live.add_argument(
        "--socket", type=path_argument, help="the daemon's control socket (default as for plenctl)"
    )
    live.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    live.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    live.add_argument("--rate", type=float, default=20.0, help="status requests per second (default 20)")
    live.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")


def tick_message(status: dict[str, Any]) -> dict[str, Any]:
    """A /plend/tick message (recording format 2) from a status reply."""
    rows = status.get("joints") or []
    imu = status.get("imu") or {}
    euler = [math.radians(v) for v in imu.get("euler_deg", [math.nan] * 3)]
    contacts = status.get("contacts") or {}
    rate = (status.get("rate_hz") or {}).get("configured") or 50.0
    powered = any(r.get("target") is not None for r in rows)
    return {
        "t": status.get("ticks", 0) / rate,
        "mode": status.get("mode", "?"),
        "targets": {r["name"]: r.get("target") for r in rows} if powered else None,
        "measured": {r["name"]: r.get("measured") for r in rows},
        "imu": {
            "quat": dict.fromkeys(WXYZ),
            "euler": _named(EULER, euler),
            "gyro": _named(XYZ, imu.get("gyro_rad_s", [math.nan] * 3)),
            "accel": _named(XYZ, imu.get("accel_m_s2", [math.nan] * 3)),
        },
        "contacts": {"right": bool(contacts.get("right", False)), "left": bool(contacts.get("left", False))},
        "compute_ms": (status.get("compute_ms") or {}).get("p50"),
        "lateness_ms": (status.get("lateness_ms") or {}).get("p50"),
        "overruns": status.get("overruns", 0),
        "faults": [f.get("code", "?") for f in status.get("faults", [])],
    }  # fmt: skip


def _named(keys: tuple[str, ...], values: Any) -> dict[str, float | None]:
    return {
        k: (float(v) if v is not None and math.isfinite(v) else None)
        for k, v in zip(keys, values, strict=False)
    }


class Bridge:
    """Asks ``client`` for the status and logs it on the Foxglove channels of ``context``."""

    def __init__(self, client: Any, context: Any = None):
        import foxglove

        self.client = client
        extra = {} if context is None else {"context": context}
        self.tick = foxglove.Channel("/plend/tick", schema=TICK_SCHEMA, **extra)
        self.status = foxglove.Channel("/plend/status", schema=STATUS_SCHEMA, **extra)
        self.sent = 0

    def poll(self) -> None:
        """One status request, published on both topics."""
        status = self.client.request("status")
        now = time.time_ns()
        self.tick.log(tick_message(status), log_time=now)
        self.status.log(status, log_time=now)
        self.sent += 1

    def run(self, rate_hz: float, stop: threading.Event, duration_s: float | None = None) -> None:
        """Poll at ``rate_hz`` on absolute deadlines until ``stop`` or the duration."""
        period, began = 1.0 / rate_hz, time.monotonic()
        deadline = began
        while not stop.is_set() and (duration_s is None or time.monotonic() - began < duration_s):
            self.poll()
            deadline = max(deadline + period, time.monotonic())
            stop.wait(max(0.0, deadline - time.monotonic()))


def run(args: argparse.Namespace) -> int:
    """``plend live``: serve until Ctrl-C (or ``--duration``)."""
    if not (math.isfinite(args.rate) and 1.0 <= args.rate <= 100.0):
        raise ConfigError(f"--rate {args.rate} is out of range; use 1 to 100 requests per second")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise ConfigError(f"--duration {args.duration} is out of range; give a number of seconds above 0")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number; use 0 to 65535")
    require_package("foxglove", "live")
    import os

    import foxglove

    from plend.core.locations import DEFAULT_SOCKET_PATH
    from plend.plenctl import Client

    client = Client(args.socket or Path(os.environ.get("PLEND_SOCKET") or DEFAULT_SOCKET_PATH))
    try:
        bridge = Bridge(client)
        try:
            server = foxglove.start_server(name="plend", host=args.host, port=args.port)
        except Exception as exc:  # the port is taken, the address is not this machine's
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        print(f"plend live: serving ws://{args.host}:{server.port} (Ctrl-C ends)", flush=True)
        try:
            bridge.run(args.rate, threading.Event(), args.duration)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        print(f"plend live: {bridge.sent} status messages served", flush=True)
    finally:
        client.close()
    return 0
