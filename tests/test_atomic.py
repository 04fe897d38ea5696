"""Files replaced whole (plend.core.atomic): the previous file kept as a backup, what is
not a regular file replaced without being read, nothing changed when the backup cannot be
made, and the temporary files a killed writer leaves found."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plend.core import atomic
from plend.core.files import FileRefusedError


def test_the_new_file_replaces_the_old_which_is_kept_as_the_backup(tmp_path: Path) -> None:
    path, backup = tmp_path / "state" / "cal.json", tmp_path / "state" / "cal.json.bak"
    atomic.replace_keeping_backup(path, b"first", backup, 1024, "test file")
    assert path.read_bytes() == b"first" and not backup.exists()
    atomic.replace_keeping_backup(path, b"second", backup, 1024, "test file")
    assert (path.read_bytes(), backup.read_bytes()) == (b"second", b"first")
    assert stat.S_IMODE(path.stat().st_mode) == atomic.FILE_MODE
    assert atomic.stale_temps(path) == []


def test_a_fifo_in_the_files_place_is_replaced_not_waited_on(tmp_path: Path) -> None:
    path, backup = tmp_path / "cal.json", tmp_path / "cal.json.bak"
    os.mkfifo(path)
    atomic.replace_keeping_backup(path, b"new", backup, 1024, "test file")
    assert path.read_bytes() == b"new" and not backup.exists()


def test_a_previous_file_too_large_to_keep_changes_nothing(tmp_path: Path) -> None:
    path, backup = tmp_path / "cal.json", tmp_path / "cal.json.bak"
    path.write_bytes(b"x" * 2048)
    with pytest.raises(FileRefusedError, match="test file"):
        atomic.replace_keeping_backup(path, b"new", backup, 1024, "test file")
    assert path.read_bytes() == b"x" * 2048 and not backup.exists()
    assert atomic.stale_temps(path) == []


def test_a_killed_writers_temporary_files_are_found_and_only_those(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    left = [tmp_path / ".cal.json.k2j4.tmp", tmp_path / ".cal.json.a9x1.tmp"]
    for temp in [*left, tmp_path / ".other.json.a1.tmp", tmp_path / "cal.json.tmp"]:
        temp.write_bytes(b"part")
    atomic.replace(path, b"whole")
    assert path.read_bytes() == b"whole"
    assert atomic.stale_temps(path) == sorted(left)
