"""Reading a file someone else named (a client's trajectory or policy, the config file).

Such a file may be anything: a FIFO that never delivers, ``/dev/zero``, a directory, a
symlink loop, a file of half a gigabyte. :func:`read_limited` opens it without blocking,
refuses anything but a regular file, checks the size before reading a byte, and reads
under a deadline. Its errors name the path and what was wrong, never the file's contents.

Its text may be built to break a parser: :func:`parse_toml` and :func:`parse_json` refuse
nesting a thousand deep, a dotted key of thousands of parts and a number of thousands of
digits. A client names such a file to the daemon by :func:`absolute`, which refuses a
symbolic link loop or a path too long in one line.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import stat
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plend.core.errors import ConfigError, PlendError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefusedError(PlendError, ValueError):
    """A named file cannot be used: missing, not a regular file, too large, unreadable or slow.

    Attributes:
        advice: what to do, where the path itself is at fault (too long, say) and the
            caller's usual advice about the file would mislead; empty otherwise.
    """

    def __init__(self, message: str, advice: str = ""):
        super().__init__(message)
        self.advice = advice


def path_argument(text: str) -> Path:
    """A command line's path: an empty one (an unset shell variable) is refused by argparse
    with this message instead of standing for the current directory."""
    if not text.strip():
        import argparse

        raise argparse.ArgumentTypeError(f"needs a file name; it was given {text!r}")
    return Path(text)


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
        code = exc.errno or 0
        problem = _PATH_PROBLEMS.get(code, f"cannot open ({exc.strerror or exc})")
        raise FileRefusedError(f"{label} {path}: {problem}", _PATH_ADVICE.get(code, "")) from None
    except ValueError:  # os.open refuses a NUL byte
        raise FileRefusedError(f"{label} {path!r}: {_NUL}", "check the path") from None


_NUL = "the path holds a NUL byte"
_PATH_PROBLEMS = {
    errno.ELOOP: "a symbolic link loop",
    errno.ENAMETOOLONG: "the path is too long (a name over 255 bytes, or over 4096 in all)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}
# What to do when the path is at fault rather than the file (a symbolic link loop is the
# file's own fault where plend made the link: its callers' advice stands).
_PATH_ADVICE = {errno.ENAMETOOLONG: "give a shorter path", errno.ENOTDIR: "check the path"}


def nothing_at(path: Path) -> bool:
    """True when nothing at all, not even a dangling link, is at ``path``; False when
    something is, or when the path cannot be looked up (too long, no permission), which
    opening it then explains. (``os.path.lexists`` answers False to a path too long.)"""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return False


def absolute(path: Path, label: str = "file") -> Path:
    """``path`` with ``~`` expanded, made absolute and its symbolic links resolved: how a
    client names a file to the daemon, whose working directory is another. A file that is
    missing or unreadable is left to the daemon to report.

    Raises:
        FileRefusedError: a symbolic link loop, or a path too long or holding a NUL byte.
    """
    code, problem = 0, ""
    try:
        resolved = path.expanduser().resolve()
        os.stat(resolved)
    except RuntimeError as exc:  # Python before 3.13: a symbolic link loop, or no such ~user
        code, problem = (errno.ELOOP, "") if "loop" in str(exc) else (0, "~ names no known user")
    except OSError as exc:
        code = exc.errno or 0
    except ValueError:
        problem = _NUL
    problem = problem or _PATH_PROBLEMS.get(code, "")
    if not problem:
        return resolved
    advice = {**_PATH_ADVICE, errno.ELOOP: "point the link at a real file"}.get(code, "check the path")
    raise FileRefusedError(f"{label} {path}: {problem}; {advice}", advice)


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


# Bounds on the text of a TOML or JSON file, checked by a cheap scan before parsing: the
# parsers recurse once per level of nesting (a RecursionError past about a thousand),
# tomllib takes time and memory growing with the square of a dotted key's length (50,000
# parts: half a minute and gigabytes), and Python refuses to read an integer of more than
# 4300 digits. No file plend reads comes near these.
MAX_NESTING = 32  # brackets and braces open at once
MAX_KEY_PARTS = 32
MAX_DEPTH = 2 * MAX_NESTING  # tables and arrays in the parsed data: dotted keys and brackets together
MAX_NUMBER_CHARS = 100

# Strings and comments, each replaced by "s" before the scan: brackets, dots and digits in
# them count for nothing, and a quoted part of a dotted key is still a part. An unclosed
# string runs to the end of its line (or of the text), so the scan stays linear.
_QUOTED = re.compile(
    r'''"""(?:[^"\\]|\\[\s\S]|"(?!""))*+(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'''
    r"""|"(?:[^"\\\n]|\\.)*+"?|'[^'\n]*+'?|\#[^\n]*+"""
)
_DOTTED_KEY = re.compile(
    rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]++(?:[ \t]*+\.[ \t]*+[A-Za-z0-9_-]++){{{MAX_KEY_PARTS},}}"
)
_LONG_NUMBER = re.compile(rf"(?<![A-Za-z0-9_.])[0-9][0-9A-Za-z_]{{{MAX_NUMBER_CHARS},}}")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def text_problem(text: str) -> str | None:
    """What makes a TOML or JSON ``text`` unreasonable to parse, in words, or None.

    A cheap scan, strings and comments left out: brackets and braces open at once, the
    parts of one dotted key, the length of a number.
    """
    bare = _QUOTED.sub("s", text)
    steps = map(_DEPTH_STEP.__getitem__, re.findall(r"[\[\]{}]", bare))
    if max(itertools.accumulate(steps, initial=0)) > MAX_NESTING:
        return f"is nested deeper than {MAX_NESTING} levels"
    key = _DOTTED_KEY.search(bare)
    if key is not None:
        return f"has a dotted key of {key.group().count('.') + 1} parts (at most {MAX_KEY_PARTS})"
    number = _LONG_NUMBER.search(bare)
    if number is not None:
        return f"holds a number of {len(number.group())} characters (at most {MAX_NUMBER_CHARS})"
    return None


def nesting(value: object) -> int:
    """How deep tables and arrays nest in parsed ``value`` (a scalar: 0), found without
    recursion, stopping past :data:`MAX_DEPTH`."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_toml(text: str, what: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, refused first if :func:`text_problem` finds a problem.

    Args:
        text: The file's text.
        what: The file, for messages ("config file /etc/plend/plend.toml").

    Raises:
        FileRefusedError: ``"{what}: <the problem>"`` in one line, never the contents.
    """
    problem = text_problem(text)
    if problem is not None:
        raise FileRefusedError(f"{what}: {problem}")
    return _parsed(what, "is not valid TOML", lambda: tomllib.loads(text))


def parse_json(text: str | bytes, what: str) -> Any:
    """``json.loads(text)``, refused past :data:`MAX_DEPTH` levels or with a number over
    :data:`MAX_NUMBER_CHARS` characters. The parser finds these itself (it is written in C,
    and fast); raises FileRefusedError as :func:`parse_toml` does."""
    return _parsed(what, "is not JSON", lambda: json.loads(text, parse_int=_json_int))


class _LongNumberError(ValueError):
    pass


def _json_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise _LongNumberError(f"holds a number of {len(digits)} characters (at most {MAX_NUMBER_CHARS})")
    return int(digits)


def _parsed(what: str, invalid: str, parse: Callable[[], Any]) -> Any:
    try:
        data = parse()
    except RecursionError:
        problem = f"is nested deeper than {MAX_DEPTH} levels"
    except _LongNumberError as exc:
        problem = str(exc)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        problem = f"{invalid} ({exc})"
    except UnicodeDecodeError as exc:
        problem = f"is not UTF-8 text (byte {exc.start})"
    except ValueError:  # a number Python will not read, should one pass the scan
        problem = "holds a number too long to read"
    else:
        if nesting(data) <= MAX_DEPTH:
            return data
        problem = f"is nested deeper than {MAX_DEPTH} levels"
    raise FileRefusedError(f"{what}: {problem}")


# -- files a command writes ------------------------------------------------------------

OUT_MODE = 0o666  # less the umask, as for any file a command writes


def refuse_existing(option: str, out: Path) -> None:
    """Before the work: an output file is never overwritten, nor written through a
    symbolic link, and its folder must exist."""
    if not str(out) or str(out) == ".":
        raise ConfigError(f"{option} needs a file name")
    if os.path.lexists(out):
        what = "is a symbolic link" if out.is_symlink() else "already exists"
        raise ConfigError(f"{option} {out} {what}; choose another file name")
    if not out.absolute().parent.is_dir():
        raise ConfigError(f"{option} {out}: the folder {out.absolute().parent} does not exist")


def create_new(option: str, out: Path) -> int:
    """A new file at ``out`` (never through a link), open for writing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(out, flags, OUT_MODE)
    except FileExistsError:
        raise ConfigError(f"{option} {out} already exists; choose another file name") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None


def write_new(option: str, out: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``out``; a failure leaves no file behind."""
    fd = create_new(option, out)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        out.unlink(missing_ok=True)  # ours: made above, never through a link
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
