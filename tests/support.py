"""Test helpers shared by the end-to-end tests: a daemon subprocess driven through plenctl."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plend.plenctl import Client
from plend.plenctl import main as plenctl


class Daemon:
    """``plend run`` as a subprocess on a socket in ``tmp``; ``config`` is added to the TOML
    (top-level keys first, then tables)."""

    def __init__(self, tmp: Path, *extra: str, env: dict[str, str] | None = None, config: str = ""):
        self.tmp = tmp
        self.socket = tmp / "plend.sock"
        path = tmp / "plend.toml"
        head, _, tables = config.partition("[")
        tables = "[" + tables if tables else ""
        path.write_text(f'{head}\n[paths]\nstate_dir = "{tmp}"\nrecordings_dir = "{tmp / "rec"}"\n{tables}')
        config = str(path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plend.main", "--config", config, "run",
             "--socket", str(self.socket), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"plend did not start: {self.proc.communicate()[1]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """True once the daemon answers and its loop has run a tick (status has joints)."""
        try:
            client = Client(self.socket, timeout=1.0)
        except Exception:
            return False
        try:
            return "joints" in client.request("status")
        except Exception:
            return False
        finally:
            client.close()

    def ctl(self, *args: str) -> int:
        return plenctl(["--socket", str(self.socket), *args])

    def status(self) -> dict:
        client = Client(self.socket)
        try:
            return client.request("status")
        finally:
            client.close()

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def status_once(d: Daemon, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
    """The daemon's status once ``check`` holds for it, or the last one read after
    ``timeout``: a command takes effect at the next tick, and status shows the last tick's."""
    deadline = time.monotonic() + timeout
    status = d.status()
    while not check(status) and time.monotonic() < deadline:
        time.sleep(0.02)
        status = d.status()
    return status


def wait_for_mode(d: Daemon, mode: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while d.status()["mode"] != mode:
        assert time.monotonic() < deadline, f"mode stayed {d.status()}, expected {mode}"
        time.sleep(0.05)
