"""Where a recording may be written, a file that is a readable MCAP file at all times, and
reading one back within bounds.

Paths: a client names a recording by a file name, or a relative path, inside the
recordings directory (an absolute path is taken only if it lies inside it). ``..``,
symbolic links that lead out, and names that do not end in ``.mcap`` are refused, and an
existing file is never overwritten.

Crash tolerance: :class:`CommittedFile` is what the MCAP writer writes to. It holds what
the writer gives it until :meth:`CommittedFile.commit`, which writes it after the data
already on disk, followed by an end marker (a data-end record, a footer without a
summary, the closing magic), then fsyncs. The file on disk is therefore always a
complete MCAP file holding every committed chunk: a SIGKILL, a power cut or a full disk
loses only what was not committed yet. The standard reader reads such a file linearly;
:meth:`~mcap.writer.Writer.finish` replaces the marker with the summary and its index.

Reading: a file someone else made may state or hold anything. :func:`records` gives its
records as the standard stream reader does, but checks each chunk's stated size against
what is left of a budget before decompressing it, never decompresses past that size,
and decompresses in pieces, so a small file cannot expand to gigabytes or hold the
interpreter for long.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from plend.core.errors import PlendError

FILE_MODE = 0o640  # group plend may read recordings
DIR_MODE = 0o750


PIECE = 2**20  # decompressed at a time: the interpreter is let go between pieces
# Writers make chunks of a few MiB at most (plend's: 256 KiB): one that states more is read
# by no one, and would be decompressed whole into memory.
MAX_CHUNK = 64 * 2**20


class RecordingError(PlendError, OSError):
    """A recording cannot start, is not running, or failed; the message names the file."""


class DataLimitError(PlendError, ValueError):
    """An MCAP file's chunks, decompressed, would hold more than the reader allows: all
    together, or (``chunk`` is its stated size) one alone."""

    def __init__(self, limit: int, chunk: int = 0):
        super().__init__(f"its chunks hold more than {limit} bytes once decompressed")
        self.limit, self.chunk = limit, chunk


@functools.cache
def end_marker() -> bytes:
    """The bytes that close an MCAP file with no summary (made once, when first needed:
    a daemon that never records never imports mcap)."""
    from mcap.data_stream import RecordBuilder
    from mcap.records import DataEnd, Footer
    from mcap.writer import MCAP0_MAGIC

    builder = RecordBuilder()
    DataEnd(0).write(builder)
    Footer(0, 0, 0).write(builder)
    return bytes(builder.end()) + MCAP0_MAGIC


class CommittedFile:
    """The MCAP writer's output stream; see the module docstring.

    Args:
        fd: A file descriptor open for writing, at offset 0 of an empty file.
        sync: fsync after every commit, so a power cut keeps what was committed.
    """

    def __init__(self, fd: int, sync: bool = True):
        self.fd, self.sync = fd, sync
        self.committed = 0  # bytes of data on disk, before the end marker
        self.pending = bytearray()
        self._on_disk = 0  # length of the file

    def write(self, data: bytes) -> int:
        self.pending += data
        return len(data)

    def tell(self) -> int:
        return self.committed + len(self.pending)

    def flush(self) -> None:
        """Nothing: data reaches the disk only through :meth:`commit`."""

    def commit(self, final: bool = False) -> None:
        """Write what is pending and an end marker (none when ``final``: the writer has
        written the real end). Raises OSError when the disk refuses; call :meth:`repair`."""
        if not self.pending and not final:
            return
        data = bytes(self.pending) + (b"" if final else end_marker())
        _pwrite_all(self.fd, data, self.committed)
        end = self.committed + len(data)
        if end < self._on_disk:
            os.ftruncate(self.fd, end)
        self._on_disk = end
        if self.sync:
            os.fsync(self.fd)
        self.committed += len(self.pending)
        self.pending.clear()

    def repair(self) -> None:
        """After a failed commit: drop what was pending and end the file after the last
        committed data again (the marker's blocks were the file's before, so it fits)."""
        self.pending.clear()
        _pwrite_all(self.fd, end_marker(), self.committed)
        os.ftruncate(self.fd, self.committed + len(end_marker()))
        self._on_disk = self.committed + len(end_marker())
        if self.sync:
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[n:], offset + n


# -- paths --------------------------------------------------------------------------------


def recording_path(root: Path, out: str | None, now: float) -> Path:
    """Where a recording named ``out`` goes (a timestamped name when None), checked to lie
    inside ``root`` by name; :func:`create` checks the directories on the way."""
    if out is None:
        return root / time.strftime("plend-%Y%m%d-%H%M%S.mcap", time.localtime(now))
    if not out or not out.isprintable() or len(out) > 1024:
        raise RecordingError(
            f"{out[:100]!r} is not a usable recording name; give printable characters "
            "(no newlines or control characters), at most 1024"
        )
    path = Path(out)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            raise RecordingError(
                f"recordings go in {root}; give a file name or a path inside it, not {out[:100]}"
            ) from None
    if not path.parts or ".." in path.parts:
        raise RecordingError(f"{out[:100]}: '..' and empty names are not allowed; recordings stay in {root}")
    if path.suffix != ".mcap":
        raise RecordingError(f"{out[:100]}: a recording's name ends in .mcap")
    return root / path


def create(root: Path, path: Path) -> int:
    """Make the directories from ``root`` to ``path`` (refusing symbolic links), then
    create ``path`` (never overwriting, never through a link); returns its descriptor."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except OSError as exc:
        reason = "it is not a directory" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        raise RecordingError(f"cannot create {path}: the recordings directory {root}: {reason}") from None
    try:
        here = root
        for part in path.relative_to(root).parts[:-1]:
            here = here / part
            _make_dir(here, root)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, FILE_MODE)
    except RecordingError:
        raise
    except FileExistsError:
        raise RecordingError(f"{path} already exists; choose another file name") from None
    except OSError as exc:
        raise RecordingError(
            f"cannot create {path}: {exc.strerror or exc}; check that the recordings directory is writable"
        ) from None
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    return fd


def _make_dir(path: Path, root: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, DIR_MODE)
        return
    if stat.S_ISLNK(info.st_mode):
        raise RecordingError(f"{path} is a symbolic link; recordings stay inside {root}")
    if not stat.S_ISDIR(info.st_mode):
        raise RecordingError(f"cannot create a recording in {path}: it is not a directory")


# -- reading ------------------------------------------------------------------------------


def records(stream: IO[bytes], max_data: int) -> Iterator[Any]:
    """The records of the MCAP file in ``stream`` (channels, messages, ...), chunks opened.

    Raises:
        DataLimitError: Before decompressing a chunk whose stated size would take what
            the chunks hold past ``max_data`` bytes, or is over :data:`MAX_CHUNK`.
        ValueError: A chunk that holds more than it states, or a damaged chunk (and the
            standard reader's errors for a damaged or cut file).
    """
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    budget = max_data
    for record in StreamReader(stream, emit_chunks=True, record_size_limit=max_data).records:
        if not isinstance(record, Chunk):
            yield record
            continue
        budget -= record.uncompressed_size
        if budget < 0:
            raise DataLimitError(max_data)
        if record.uncompressed_size > MAX_CHUNK:
            raise DataLimitError(MAX_CHUNK, record.uncompressed_size)
        yield from _chunk_records(_decompress(record))


def _decompress(chunk: Any) -> memoryview:
    """What ``chunk`` holds, at most its stated size; ValueError if it holds more."""
    size, data = chunk.uncompressed_size, chunk.data
    if chunk.compression == "":
        if len(data) != size:
            raise ValueError("an uncompressed chunk is not the size it states")
        return memoryview(data)
    read: Callable[[int], bytes]
    if chunk.compression == "zstd":
        import zstandard

        read = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read
    elif chunk.compression == "lz4":
        read = _lz4_reader(data)
    else:
        raise ValueError(f"a chunk is compressed with {chunk.compression[:20]!r}, which plend cannot read")
    out = bytearray(size)  # pages are only made resident as they are written
    got = 0
    while piece := read(min(PIECE, size + 1 - got)):
        if got + len(piece) > size:
            raise ValueError("a chunk holds more than the size it states")
        out[got : got + len(piece)] = piece
        got += len(piece)
    if got != size:
        raise ValueError("a chunk holds less than the size it states")
    return memoryview(out)


def _lz4_reader(data: bytes) -> Callable[[int], bytes]:
    """``read(n)``: the next at most ``n`` bytes that lz4 ``data`` holds; b"" at its end."""
    import lz4.frame

    decompress = lz4.frame.LZ4FrameDecompressor().decompress
    pending = [data]

    def read(n: int) -> bytes:
        return decompress(pending.pop() if pending else b"", max_length=n)  # type: ignore[no-any-return]

    return read


def _chunk_records(data: memoryview) -> Iterator[Any]:
    """The channels and messages in a chunk's decompressed ``data`` (other records skipped),
    read in place: a large chunk is never copied whole."""
    import io

    from mcap.data_stream import ReadDataStream
    from mcap.opcode import Opcode
    from mcap.records import Channel, Message

    offset = 0
    while offset < len(data):
        if len(data) - offset < 9:
            raise ValueError("a chunk ends inside a record")
        opcode, length = struct.unpack_from("<BQ", data, offset)
        start, offset = offset + 9, offset + 9 + length
        if offset > len(data):
            raise ValueError("a record runs past the end of its chunk")
        if opcode == Opcode.MESSAGE:
            if length < 22:
                raise ValueError("a message record is too short")
            channel, sequence, log_time, publish_time = struct.unpack_from("<HIQQ", data, start)
            body = bytes(data[start + 22 : offset])
            yield Message(channel_id=channel, sequence=sequence, log_time=log_time, publish_time=publish_time,
                          data=body)  # fmt: skip
        elif opcode == Opcode.CHANNEL:
            yield Channel.read(ReadDataStream(io.BytesIO(data[start:offset])))
