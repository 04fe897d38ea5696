"""The control socket's file: claimed at start-up, made with its mode and group, and
removed at exit only while it is still the one this daemon made."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import stat
from pathlib import Path

from plend.core.config import SocketConfig
from plend.core.errors import ConfigError
from plend.core.locations import DEFAULT_SOCKET_GROUP, under_systemd

log = logging.getLogger("plend.server")


def bind(path: Path, settings: SocketConfig) -> tuple[socket.socket, tuple[int, int]]:
    """Bind a listening socket at ``path``; returns it and the file's (device, inode)."""
    _claim(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot make the control socket {path}: {exc.strerror or exc}") from None
    info = os.lstat(path)
    identity = (info.st_dev, info.st_ino)
    try:
        os.chmod(path, settings.mode)
        _set_group(path, settings.group)
        listener.listen(min(socket.SOMAXCONN, 4096))
        listener.setblocking(False)
    except BaseException:
        listener.close()
        remove_if_ours(path, identity)
        raise
    return listener, identity


def remove_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Unlink ``path`` only if it is still the socket this daemon made: a newer daemon may
    have claimed the path since."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if (info.st_dev, info.st_ino) == identity:
        with contextlib.suppress(OSError):
            path.unlink()


def _claim(path: Path) -> None:
    """Make ``path`` free for a new socket, refusing if another daemon answers there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent} for the control socket: {exc.strerror}; "
                          "use --socket PATH somewhere writable") from None  # fmt: skip
    if not path.exists() and not path.is_symlink():
        return
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise ConfigError(f"{path} exists and is not a socket; remove it or choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # left behind by a daemon that died
        return
    except OSError:
        pass  # it exists and does not refuse (busy, or a timeout): someone serves there
    finally:
        probe.close()
    raise ConfigError(f"another plend is already running on {path}")


def _set_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        # On a PC there is no plend group, and nothing to warn about; on the robot there is.
        usual = group == DEFAULT_SOCKET_GROUP and not under_systemd()
        log.log(
            logging.DEBUG if usual else logging.WARNING,
            "socket group %r does not exist; %s keeps the daemon's group", group, path,
        )  # fmt: skip
        return
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("cannot give %s to group %r: %s", path, group, exc.strerror)
