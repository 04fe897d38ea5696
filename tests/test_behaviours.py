"""Trajectory files: what is accepted, and the clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaits.sine import stand_pose
from plend.control.behaviours import Stand, TrajectoryError, load_trajectory, min_jerk
from plend.core.config import SafetyConfig

LOWER, UPPER = SafetyConfig().joint_limits()


def load(path: Path, rate: float | None = None):  # type: ignore[no-untyped-def]
    return load_trajectory(path, rate, LOWER, UPPER, 9.0)


def test_csv_with_rate_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("# rate_hz: 25\ntorso_r_shoulder, torso_l_shoulder\n0.0,0.0\n0.1,-0.1\n")
    traj = load(path)
    assert traj.rate_hz == 25.0 and traj.joints == ("torso_r_shoulder", "torso_l_shoulder")
    assert traj.positions.shape == (2, 2) and traj.duration_s == pytest.approx(0.04)
    assert load(path, rate=10.0).rate_hz == 10.0


def test_npy_structured_array(tmp_path: Path) -> None:
    data = np.zeros(5, dtype=[("torso_r_shoulder", float), ("r_knee_r_shin", float)])
    data["r_knee_r_shin"] = np.linspace(-0.5, -0.6, 5)
    path = tmp_path / "t.npy"
    np.save(path, data)
    traj = load(path, rate=50.0)
    assert traj.joints == ("torso_r_shoulder", "r_knee_r_shin")
    assert traj.full_pose(4)[3] == pytest.approx(-0.6)
    assert traj.full_pose(4)[0] == pytest.approx(stand_pose()[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("torso_r_shoulder\n0.1\n", "no rate given"),
        ("# rate_hz: 50\nelbow\n0.1\n", "unknown or repeated joints"),
        ("# rate_hz: 50\ntorso_r_shoulder,torso_r_shoulder\n0.1,0.1\n", "unknown or repeated joints"),
        ("# rate_hz: 50\ntorso_r_shoulder\nnan\n", "sample 0 is not a finite number"),
        ("# rate_hz: 50\nr_knee_r_shin\n-1.0\n0.5\n", "sample 1 puts r_knee_r_shin at +0.500 rad"),
        ("# rate_hz: 50\ntorso_r_shoulder\n0.0\n1.0\n", "moves at 50.0 rad/s between samples 0 and 1"),
        ("# rate_hz: 50\ntorso_r_shoulder,torso_l_shoulder\n0.1\n", "every row needs 2 values"),
        ("# speed: 3\ntorso_r_shoulder\n0.1\n", "first line must be '# rate_hz: <Hz>'"),
        ("# rate_hz: 5000\ntorso_r_shoulder\n0.1\n", "out of range"),
        ("# rate_hz: 50\ntorso_r_shoulder\nabc\n", "cannot read trajectory"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TrajectoryError, match=message.replace("(", r"\(").replace("+", r"\+")) as info:
        load(path)
    assert str(path) in str(info.value)


def test_narrowed_limits_apply(tmp_path: Path) -> None:
    lower, upper = SafetyConfig(limits={"torso_r_shoulder": [-0.2, 0.2]}).joint_limits()
    path = tmp_path / "t.csv"
    path.write_text("# rate_hz: 10\ntorso_r_shoulder\n0.0\n0.3\n")
    with pytest.raises(TrajectoryError, match="outside its limits"):
        load_trajectory(path, None, lower, upper, 9.0)


def test_stand_moves_smoothly_from_where_it_is() -> None:
    start = np.zeros(18)
    stand = Stand(duration_s=1.0)
    stand.start(start)
    poses = [stand.update(None, 0.02) for _ in range(60)]  # type: ignore[arg-type]
    assert np.allclose(poses[-1], stand_pose())
    steps = np.abs(np.diff(np.array([start, *poses]), axis=0)).max(axis=1)
    assert steps[0] < 0.01 and steps.max() < 9.0 * 0.02
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and min_jerk(0.5) == pytest.approx(0.5)
