"""Living under systemd: readiness, status and watchdog notifications, journal logging,
and best-effort real-time scheduling of the control thread.

systemd-python is used where it is installed (the Pi install provides it); otherwise the
notify datagram is sent by hand, and logs go to stderr, which the journal also captures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import socket
import sys
import time

log = logging.getLogger("plend")

_MCL_CURRENT, _MCL_FUTURE, _MCL_ONFAULT = 1, 2, 4


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; does nothing without one."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        wanted = usec is not None and (pid is None or pid == str(os.getpid()))
        self.watchdog_period_s = int(usec) / 1e6 if wanted and usec else None
        self._sock: socket.socket | None = None
        self._last_ping = 0.0
        self._sd_notify = _systemd_notify()

    def send(self, message: str) -> None:
        if self.address is None:
            return
        if self._sd_notify is not None:
            self._sd_notify(message)
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(message.encode(), address)
        except OSError as exc:  # the manager went away; never let this stop the robot
            log.debug("notify %r failed: %s", message, exc)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping: bringing the robot to a safe pose")

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog, at most twice per watchdog period."""
        if self.watchdog_period_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_period_s / 2.0:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _systemd_notify():  # type: ignore[no-untyped-def]
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        return None
    return daemon.notify


def setup_logging(level: int = logging.INFO) -> None:
    """Log to the journal under systemd when systemd-python is there, else to stderr."""
    handler: logging.Handler
    if os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER="plend")
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("plend")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def make_realtime(priority: int) -> list[str]:
    """Ask for SCHED_FIFO on the calling thread only and lock memory on fault.

    Returns one phrase per request saying what was granted or refused and why.
    """
    return [fifo_thread(priority, "the control thread"), _lock_memory()]


def fifo_thread(priority: int, who: str) -> str:
    """Ask for SCHED_FIFO ``priority`` on the calling thread; says what happened."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        return f"SCHED_FIFO refused to {who} ({exc}; needs CAP_SYS_NICE or LimitRTPRIO)"
    return f"SCHED_FIFO priority {priority} granted to {who}"


def _lock_memory() -> str:
    # MCL_ONFAULT keeps untouched pages out of RAM: locking all mapped pages of numpy and
    # friends grows a 67 MB process to over 500 MB, too much for a 512 MB Pi.
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return "memory not locked (no C library found)"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE | _MCL_ONFAULT) != 0:
        return f"memory not locked ({os.strerror(ctypes.get_errno())}; needs CAP_IPC_LOCK or LimitMEMLOCK)"
    return "memory locked on fault"


def freeze_gc() -> str:
    """Move every object alive after start-up out of the collector's sight: a full
    collection over them pauses for about 100 ms."""
    gc.collect()
    gc.freeze()
    return f"garbage collector frozen ({gc.get_freeze_count()} objects)"
