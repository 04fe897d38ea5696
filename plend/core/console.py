"""Small helpers shared by the ``plend`` and ``plenctl`` command lines."""

from __future__ import annotations

import os
import sys

BROKEN_PIPE_EXIT = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def reader_went_away() -> int:
    """Handle stdout closed by its reader (``plenctl status --json | head``).

    Points stdout at /dev/null so that Python's final flush does not fail again with a
    traceback, and returns the exit code a shell expects after a broken pipe.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to do
        pass
    finally:
        os.close(devnull)
    return BROKEN_PIPE_EXIT
