"""Trajectory files a client names: anything that is not a small, well-formed file is refused
quickly, in one line, without repeating what the file holds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from plend.control.trajectory import Trajectory, TrajectoryError, load_trajectory
from plend.core.config import LimitsConfig, SafetyConfig

LOWER, UPPER = SafetyConfig().joint_limits()
SECRET = "hunter2-SECRET"


def load(path: Path, rate: float | None = 50.0, limits: LimitsConfig | None = None) -> Trajectory:
    return load_trajectory(path, rate, LOWER, UPPER, 9.0, limits)


def refused(path: Path, fragment: str, **kwargs: object) -> str:
    with pytest.raises(TrajectoryError) as caught:
        load(path, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert fragment in message, message
    assert str(path) in message and "\n" not in message and SECRET not in message
    return message


def _made(path: Path, make: Callable[[], object]) -> Path:
    """``path`` after ``make()`` put something there."""
    make()
    return path


def _npy(path: Path, dtype: object, shape: tuple[int, ...] = (10,), fill: float = 0.1) -> Path:
    data = np.zeros(shape, dtype=dtype)  # type: ignore[call-overload]
    for name in data.dtype.names or ():
        if data.dtype[name].kind == "f":
            data[name] = fill
    np.save(path, data)
    return path


BAD_HEADER = b"\x93NUMPY\x01\x00\x20\x00{'descr': " + SECRET.encode()
NPY_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    # The field holds 18 values per sample: this one used to kill the control thread.
    "array field": (lambda p: _npy(p, [("r_thigh_r_knee", float, (18,))], fill=0.6), "array of shape (18,)"),
    "integer field": (lambda p: _npy(p, [("r_thigh_r_knee", np.int32)]), "one float per sample"),
    "object field": (lambda p: _npy_object(p), "Python objects"),
    "two dimensions": (lambda p: _npy(p, [("r_thigh_r_knee", float)], (4, 3)), "one-dimensional"),
    "plain array": (lambda p: _made(p, lambda: np.save(p, np.zeros((5, 18)))), "structured array"),
    "secret field name": (lambda p: _npy(p, [(SECRET, float)]), "field 1 of 1 is not a joint"),
    "no samples": (lambda p: _npy(p, [("r_thigh_r_knee", float)], (0,)), "no samples"),
    "cut short": (lambda p: _truncated(p), "cut short or damaged"),
    "damaged header": (lambda p: (p.write_bytes(BAD_HEADER), p)[1], "header is damaged"),
}  # fmt: skip


def _npy_object(path: Path) -> Path:
    data = np.zeros(3, dtype=[("r_thigh_r_knee", object)])
    np.save(path, data, allow_pickle=True)
    return path


def _truncated(path: Path) -> Path:
    _npy(path, [("r_thigh_r_knee", float)], (1000,))
    path.write_bytes(path.read_bytes()[:500])
    return path


@pytest.mark.parametrize("case", NPY_CASES.values(), ids=NPY_CASES.keys())
def test_npy_layouts_other_than_one_float_per_joint_are_refused(
    tmp_path: Path, case: tuple[Callable[[Path], Path], str]
) -> None:
    make, fragment = case
    refused(make(tmp_path / "t.npy"), fragment)


def test_a_structured_npy_of_joint_floats_is_read(tmp_path: Path) -> None:
    path = _npy(tmp_path / "t.npy", [("r_thigh_r_knee", np.float32), ("torso_r_shoulder", float)])
    traj = load(path)
    assert traj.joints == ("r_thigh_r_knee", "torso_r_shoulder") and traj.positions.shape == (10, 2)
    assert traj.positions.dtype == np.float64


NOT_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (lambda p: _made(p, lambda: os.mkfifo(p)), "is a FIFO (named pipe), not a regular file"),
    "directory": (lambda p: _made(p, p.mkdir), "is a directory, not a regular file"),
    "/dev/zero": (lambda p: Path("/dev/zero"), "is a character device, not a regular file"),
    "missing": (lambda p: p, "no such file"),
    "dangling link": (
        lambda p: _made(p, lambda: p.symlink_to(p.parent / "gone")),
        "symbolic link to a missing file",
    ),
}


@pytest.mark.parametrize("case", NOT_FILES.values(), ids=NOT_FILES.keys())
def test_what_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, case: tuple[Callable[[Path], Path], str]
) -> None:
    make, fragment = case
    began = time.monotonic()
    refused(make(tmp_path / "t.csv"), fragment)
    assert time.monotonic() - began < 5.0, "a FIFO must not be waited on"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as f:
        f.truncate(500 * 2**20)  # sparse: 500 MiB that cost nothing to make
    refused(path, "500.0 MiB, over the 16.0 MiB limit (limits.max_trajectory_bytes)")


def test_too_many_samples_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("torso_r_shoulder\n" + "0.0\n" * 101)
    refused(path, "more than the 100 samples allowed", limits=LimitsConfig(max_trajectory_samples=100))


CSV_CASES = {
    "passwd-like": (f"root:x:0:0:{SECRET}:/root:/bin/bash\ndaemon:x:1:1\n", "column 1 of 1 is not a joint"),
    "secret header": (f"torso_r_shoulder,{SECRET}\n0.1,0.1\n", "column 2 of 2 is not a joint"),
    "secret value": (f"torso_r_shoulder\n0.1\n{SECRET}\n", "sample 1 holds a value that is not a number"),
    "secret rate": (f"# rate_hz: {SECRET}\ntorso_r_shoulder\n0.1\n", "the rate on its first line is not"),
    "binary": (b"\xff\xfe" + SECRET.encode(), "not UTF-8 text (byte 0)"),
}


@pytest.mark.parametrize("case", CSV_CASES.values(), ids=CSV_CASES.keys())
def test_csv_errors_never_repeat_the_files_contents(tmp_path: Path, case: tuple[str | bytes, str]) -> None:
    content, fragment = case
    path = tmp_path / "t.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(path, fragment, rate=None if "rate" in fragment else 50.0)


def test_a_trajectory_whose_shape_does_not_fit_its_joints_cannot_be_made() -> None:
    with pytest.raises(TrajectoryError, match="do not fit 1 joint"):
        Trajectory(("r_thigh_r_knee",), np.zeros((10, 18)), 50.0)
    with pytest.raises(TrajectoryError, match="unknown or repeated"):
        Trajectory(("r_thigh_r_knee", "r_thigh_r_knee"), np.zeros((10, 2)), 50.0)
