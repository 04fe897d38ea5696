"""Where plend's files and socket are by default.

Kept free of heavy imports: ``plenctl`` reads these at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOCKET_PATH = "/run/plend/plend.sock"
DEFAULT_SOCKET_GROUP = "plend"  # made by install.sh on the robot; a PC usually has none
SYSTEM_STATE_DIR = "/var/lib/plend"


def under_systemd() -> bool:
    """Whether systemd started this process as a service (it sets INVOCATION_ID)."""
    return bool(os.environ.get("INVOCATION_ID"))


def default_state_dir() -> str:
    """Where plend keeps calibration, policies and recordings unless the config says.

    The service's directory when systemd runs plend (``$STATE_DIRECTORY``, from the unit's
    StateDirectory=), /var/lib/plend for root, and otherwise the user's own
    ``$XDG_STATE_HOME/plend`` (``~/.local/state/plend``), made when first written to, so
    that a rehearsal on a PC needs no root and never touches a robot's files.
    """
    from_systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if from_systemd:
        return from_systemd
    if os.geteuid() == 0:
        return SYSTEM_STATE_DIR
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return str(base / "plend")
