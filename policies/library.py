"""Where policy files are found by name, and what each one is.

``plenctl policy load walk`` (or ``walk.onnx``) looks in the policies shipped with plend
and in the ``policies/`` folder of the state directory, in that order; a path is taken
as it is. ``plenctl policy list`` shows every file found there with its metadata, read
straight from the file (no inference engine needed).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from plend.core.checks import shown
from plend.core.errors import PlendError
from plend.core.files import parse_json
from plend.core.locations import under_systemd
from policies.contract import METADATA_KEY

SHIPPED = Path(__file__).resolve().parent
HIDDEN_FROM_THE_SERVICE = (Path("/home"), Path("/root"))
NAME_MAX, PATH_MAX = 255, 4095  # bytes: Linux's limits on a file name and a path
SHOWN_CHARS = 60


class PolicyNotFoundError(PlendError, FileNotFoundError):
    """No policy file by that name or at that path."""


def search_dirs(state_dir: Path) -> list[Path]:
    """Where bare names are looked up, in order."""
    return [SHIPPED, state_dir / "policies"]


def find(name_or_path: str, state_dir: Path) -> Path:
    """The policy file a user means: a bare name (``walk``, ``walk.onnx``) from the
    search folders, or an absolute path.

    Raises:
        PolicyNotFoundError: nothing there, or a name or path no file can have (too
            long, a NUL character, a symbolic link loop), in one line.
    """
    text = name_or_path.strip()
    if not text:
        raise PolicyNotFoundError("name a policy: a file name from 'plenctl policy list', or a path")
    _check_usable(text)
    if "/" in text:
        return _existing(Path(text))
    names = [text] if text.endswith(".onnx") else [text, f"{text}.onnx"]
    dirs = search_dirs(state_dir)
    for folder in dirs:
        for candidate in names:
            if _is_file(folder / candidate, text):
                return folder / candidate
    searched = ", ".join(str(d) for d in dirs)
    raise PolicyNotFoundError(
        f"no policy {_shown(text)} in {searched}; 'plenctl policy list' shows what there is, or give a path"
    )


def _shown(text: str) -> str:
    return shown(text, SHOWN_CHARS)


def _check_usable(text: str) -> None:
    """Refuse a name or path that no file can have, before asking the filesystem."""
    if "\0" in text:
        raise PolicyNotFoundError(
            f"policy {_shown(text)} contains a NUL character; give a file name or a path"
        )
    longest = max(len(part.encode("utf-8", "surrogateescape")) for part in text.split("/"))
    if "/" not in text and longest > NAME_MAX:
        raise PolicyNotFoundError(
            f"policy name {_shown(text)} is too long ({longest} bytes, a file name has at most {NAME_MAX}); "
            "'plenctl policy list' shows the names there are"
        )
    if len(text.encode("utf-8", "surrogateescape")) > PATH_MAX or longest > NAME_MAX:
        raise PolicyNotFoundError(
            f"policy path {_shown(text)} is too long (a path has at most {PATH_MAX} bytes, each name in it "
            f"{NAME_MAX}); give the path of an existing policy file"
        )


def _stat_error(path: Path, text: str, exc: OSError) -> PolicyNotFoundError:
    """The one-line error for a lookup the filesystem refused."""
    if exc.errno == errno.ENAMETOOLONG:
        return PolicyNotFoundError(f"policy {_shown(text)}: the name or path is too long for the filesystem")
    if exc.errno == errno.ELOOP:
        return PolicyNotFoundError(
            f"policy {_shown(str(path))}: a symbolic link loop; point the link at a policy file"
        )
    return PolicyNotFoundError(f"policy {_shown(str(path))}: cannot look there ({exc.strerror or exc})")


def _is_file(path: Path, text: str) -> bool:
    """Whether ``path`` is a file (following links); a missing one is not, any other
    failure to look is a :class:`PolicyNotFoundError`."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _stat_error(path, text, exc) from None


def _lexists(path: Path) -> bool:
    """Whether anything (a file, a folder, a link, even a dangling one) is at ``path``."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _stat_error(path, str(path), exc) from None
    return True


def _existing(path: Path) -> Path:
    if not path.is_absolute():
        raise PolicyNotFoundError(f"path {_shown(str(path))} must be absolute (plenctl makes it so)")
    if _lexists(path):
        _is_file(path, str(path))  # refuses a link that loops; a dangling one is the loader's to say
        return path  # the loader's own checks say what is wrong with one that is not a file
    if under_systemd() and any(path.is_relative_to(top) for top in HIDDEN_FROM_THE_SERVICE):
        raise PolicyNotFoundError(
            f"{path}: the plend service cannot see home directories (ProtectHome); copy the file "
            "into the policies/ folder of its state directory (/var/lib/plend/policies) and load it by name"
        )
    raise PolicyNotFoundError(f"{path}: no such file")


_DESCRIBED_BYTES = 64 << 20  # a policy file larger than this is named, not read, by the list


def describe(path: Path) -> dict[str, Any]:
    """One policy file's name, place and metadata (or what is wrong with it)."""
    from policies.onnx_file import OnnxFormatError, read_model

    entry: dict[str, Any] = {"name": path.name, "file": str(path)}
    try:
        if path.stat().st_size > _DESCRIBED_BYTES:
            raise ValueError(f"it is over {_DESCRIBED_BYTES >> 20} MiB")
        model = read_model(path.read_bytes())
        meta = parse_json(model.metadata[METADATA_KEY], f"its '{METADATA_KEY}' metadata")
        observation = meta["observation"]
        entry.update(
            observations=sum(int(o["size"]) for o in observation),
            sources=[o["name"] for o in observation],
            actions=len(meta["action"]["joints"]),
            mode=meta["action"]["mode"],
            rate_hz=meta["rate_hz"],
            gait_speed=meta.get("gait_speed"),
        )
    except (OSError, OnnxFormatError, KeyError, TypeError, ValueError) as exc:
        entry["problem"] = _problem(exc)
    return entry


def _problem(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args == (METADATA_KEY,):
        return f"no '{METADATA_KEY}' metadata"
    if isinstance(exc, OSError):
        return f"unreadable ({exc.strerror or exc})"
    return f"not a plend policy ({type(exc).__name__}: {exc})"


def available(state_dir: Path) -> list[dict[str, Any]]:
    """Every policy file in the search folders, each with :func:`describe`'s fields."""
    found = []
    for folder in search_dirs(state_dir):
        if folder.is_dir():
            found += [describe(path) for path in sorted(folder.glob("*.onnx")) if path.is_file()]
    return found
