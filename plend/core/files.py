"""Reading a file someone else named (a client's trajectory or policy, the config file).

Such a file may be anything: a FIFO that never delivers, ``/dev/zero``, a directory, a
symlink loop, a file of half a gigabyte. :func:`read_limited` opens it without blocking,
refuses anything but a regular file, checks the size before reading a byte, and reads
under a deadline. Its errors name the path and what was wrong, never the file's contents.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

from plend.core.errors import PlendError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefusedError(PlendError, ValueError):
    """A named file cannot be used: missing, not a regular file, too large, unreadable or slow."""


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, in words ("a directory", "a FIFO (named pipe)", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def size_text(n: int) -> str:
    """A byte count for people: 512 bytes, 3.2 MiB."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n_f = n / 1024.0
        if n_f < 1024 or unit == "TiB":
            return f"{n_f:.1f} {unit}"
        n = int(n_f)
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def _open(path: Path, label: str) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileRefusedError(f"{label} {path}: a symbolic link to a missing file") from None
        raise FileRefusedError(f"{label} {path}: no such file") from None
    except PermissionError:
        raise FileRefusedError(f"{label} {path}: permission denied for the daemon's user") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileRefusedError(f"{label} {path}: a symbolic link loop") from None
        raise FileRefusedError(f"{label} {path}: cannot open ({exc.strerror or exc})") from None


def read_limited(
    path: Path, max_bytes: int, timeout_s: float, label: str = "file", limit_key: str = ""
) -> bytes:
    """The bytes of the regular file ``path``, refusing what cannot be read safely.

    Args:
        path: The file (symlinks to regular files are followed).
        max_bytes: Larger files are refused before a byte is read.
        timeout_s: Reading must end within this time.
        label: What the file is, for messages ("trajectory", "config file").
        limit_key: The config key of ``max_bytes``, named when the file is too large.

    Raises:
        FileRefusedError: One line naming the path and the problem; never the contents.
    """
    fd = _open(path, label)
    try:
        info = os.fstat(fd)
        _check_info(path, info, max_bytes, label, limit_key)
        return _read_all(fd, path, info.st_size, time.monotonic() + timeout_s, label)
    finally:
        os.close(fd)


def _check_info(path: Path, info: os.stat_result, max_bytes: int, label: str, limit_key: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise FileRefusedError(f"{label} {path} is {file_kind(info.st_mode)}, not a regular file")
    if info.st_size > max_bytes:
        where = f" ({limit_key})" if limit_key else ""
        raise FileRefusedError(
            f"{label} {path} is {size_text(info.st_size)}, over the {size_text(max_bytes)} limit{where}"
        )


def _read_all(fd: int, path: Path, size: int, deadline: float, label: str) -> bytes:
    # One read of the size fstat gave, plus a byte to notice growth: os.read lets go of the
    # interpreter while the kernel fills the buffer, where building the bytes ourselves
    # (zeroing, joining, copying) would hold it for tens of milliseconds, and the control
    # loop would miss ticks. A disk that hangs inside the read is left to the socket's
    # slow-request timeout.
    chunks: list[bytes] = []
    got = 0
    while got <= size:
        if time.monotonic() > deadline:
            raise FileRefusedError(f"{label} {path}: reading it took too long; is it on a slow or hung disk?")
        try:
            chunk = os.read(fd, size + 1 - got)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        except OSError as exc:
            raise FileRefusedError(f"{label} {path}: read error ({exc.strerror or exc})") from None
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    if got > size:
        raise FileRefusedError(f"{label} {path} changed while it was read; try again once it is written")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_regular(path: Path, max_bytes: int, label: str = "file", limit_key: str = "") -> int:
    """Refuse ``path`` unless it is a readable regular file of at most ``max_bytes``;
    returns its size. For files a library opens itself (an ONNX model)."""
    fd = _open(path, label)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    _check_info(path, info, max_bytes, label, limit_key)
    return info.st_size
