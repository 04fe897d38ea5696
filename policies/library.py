"""Where policy files are found by name, and what each one is.

``plenctl policy load walk`` (or ``walk.onnx``) looks in the policies shipped with plend
and in the ``policies/`` folder of the state directory, in that order; a path is taken
as it is. ``plenctl policy list`` shows every file found there with its metadata, read
straight from the file (no inference engine needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plend.core.errors import PlendError
from plend.core.locations import under_systemd
from policies.contract import METADATA_KEY

SHIPPED = Path(__file__).resolve().parent
HIDDEN_FROM_THE_SERVICE = (Path("/home"), Path("/root"))


class PolicyNotFoundError(PlendError, FileNotFoundError):
    """No policy file by that name or at that path."""


def search_dirs(state_dir: Path) -> list[Path]:
    """Where bare names are looked up, in order."""
    return [SHIPPED, state_dir / "policies"]


def find(name_or_path: str, state_dir: Path) -> Path:
    """The policy file a user means: a bare name (``walk``, ``walk.onnx``) from the
    search folders, or an absolute path."""
    text = name_or_path.strip()
    if not text:
        raise PolicyNotFoundError("name a policy: a file name from 'plenctl policy list', or a path")
    if "/" in text:
        return _existing(Path(text))
    names = [text] if text.endswith(".onnx") else [text, f"{text}.onnx"]
    dirs = search_dirs(state_dir)
    for folder in dirs:
        for candidate in names:
            if (folder / candidate).is_file():
                return folder / candidate
    searched = ", ".join(str(d) for d in dirs)
    raise PolicyNotFoundError(
        f"no policy {text!r} in {searched}; 'plenctl policy list' shows what there is, or give a path"
    )


def _existing(path: Path) -> Path:
    if not path.is_absolute():
        raise PolicyNotFoundError(f"path {path} must be absolute (plenctl makes it so)")
    if path.exists() or path.is_symlink():
        return path  # the loader's own checks say what is wrong with one that is not a file
    if under_systemd() and any(path.is_relative_to(top) for top in HIDDEN_FROM_THE_SERVICE):
        raise PolicyNotFoundError(
            f"{path}: the plend service cannot see home directories (ProtectHome); copy the file "
            "into the policies/ folder of its state directory (/var/lib/plend/policies) and load it by name"
        )
    raise PolicyNotFoundError(f"{path}: no such file")


def describe(path: Path) -> dict[str, Any]:
    """One policy file's name, place and metadata (or what is wrong with it)."""
    from policies.onnx_file import OnnxFormatError, read_model

    entry: dict[str, Any] = {"name": path.name, "file": str(path)}
    try:
        model = read_model(path.read_bytes())
        meta = json.loads(model.metadata[METADATA_KEY])
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
