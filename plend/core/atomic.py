"""Files replaced whole: a crash at any point leaves the old or the new file, never a part.

The new bytes go to a temporary file beside the target (``.<name>.<random>.tmp``),
fsynced; where a backup is kept, the previous file (only a regular file: a link or a FIFO
there is replaced, not read) is copied to it the same way, not moved, so the target always
holds a complete file; then the temporary file replaces the target and the directory is
fsynced. A killed writer can leave only temporary files, which :func:`stale_temps` finds.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from plend.core.files import read_limited

FILE_MODE = 0o640  # the daemon writes these; group plend (operators) may read them
READ_PREVIOUS_S = 2.0  # the previous file is read for its backup within this long


def replace(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def replace_keeping_backup(path: Path, data: bytes, backup: Path, max_bytes: int, label: str) -> None:
    """Replace ``path`` with ``data`` atomically, the previous file copied to ``backup``
    (read as ``label``, at most ``max_bytes``: a larger one raises
    :class:`~plend.core.files.FileRefusedError` and nothing changes).

    Raises:
        OSError: The directory is not writable or the disk is full; ``path`` is untouched.
    """
    temps = [_write_temp(path, data)]
    try:
        if _is_regular(path):
            temps.append(_write_temp(path, read_limited(path, max_bytes, READ_PREVIOUS_S, label)))
            os.replace(temps[-1], backup)
        os.replace(temps[0], path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def stale_temps(path: Path) -> list[Path]:
    """The temporary files a killed writer of ``path`` left beside it."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _write_temp(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)  # a state directory is made when first needed
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; the README promises group plend can read it
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(name)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
