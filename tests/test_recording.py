"""Recordings that tools understand: plend run --record, the format, reading back what is
readable of any file, and plend plot."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plend.cli.recording import RecordingReadError, read, trajectory
from plend.main import main as plend
from plend.model.robot import JOINT_NAMES


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 3 s walk recorded by plend run --fast --record, and its summary."""
    folder = tmp_path_factory.mktemp("rec")
    path = folder / "walk.mcap"
    config = folder / "small-chunks.toml"  # 64 KiB chunks: a cut file keeps the chunks before the cut
    config.write_text("[telemetry]\nmax_bytes = 1048576\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        argv = ["--config", str(config), "run", "--fast", "--duration", "3", "--turn", "0.5"]
        code = plend([*argv, "--record", str(path), "--summary", "json"])
    assert code == 0
    return path, json.loads(out.getvalue())


def test_a_batch_run_records_every_tick_with_names_units_and_the_truth(
    walk: tuple[Path, dict[str, Any]],
) -> None:
    path, summary = walk
    assert summary["recording"]["path"] == str(path) and summary["recording"]["dropped"] == 0
    rec = read(path)
    assert rec.problems == [] and rec.format == 2
    assert len(rec.t) == summary["ticks"] == summary["recording"]["written"]
    assert rec.joint_names == JOINT_NAMES and rec.info["hal"] == "sim" and rec.rate_hz() == 50.0
    assert set(rec.mode) == {"sine", "stand"}
    walking = np.array([m == "sine" for m in rec.mode])
    knee = JOINT_NAMES.index("r_knee_r_shin")
    assert np.nanmax(np.abs(rec.targets[walking, knee] - rec.measured[walking, knee])) < 0.3
    assert rec.truth is not None and len(rec.truth.t) == len(rec.t)
    turned = np.degrees(rec.truth.euler[-1, 2] - rec.truth.euler[0, 2])
    assert turned == pytest.approx(summary["yaw_deg"], abs=0.5)  # the same truth the summary used


def test_the_messages_name_every_field_and_the_schemas_give_units(walk: tuple[Path, dict[str, Any]]) -> None:
    from mcap.reader import make_reader

    path, _ = walk
    with path.open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        schemas = {c.topic: json.loads(summary.schemas[c.schema_id].data) for c in summary.channels.values()}
        tick = next(json.loads(m.data) for _, c, m in reader.iter_messages(topics=["/plend/tick"]))
    assert set(schemas) == {"/plend/info", "/plend/tick", "/plend/truth"}
    assert set(tick["measured"]) == set(JOINT_NAMES) and set(tick["imu"]["gyro"]) == {"x", "y", "z"}
    measured = schemas["/plend/tick"]["properties"]["measured"]
    assert measured["properties"]["l_knee_l_shin"]["description"] == "rad"
    assert (
        schemas["/plend/tick"]["properties"]["imu"]["properties"]["gyro"]["properties"]["z"]["description"]
        == "rad/s"
    )
    assert schemas["/plend/truth"]["properties"]["velocity"]["properties"]["x"]["description"] == "m/s"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--record", "{tmp}/walk.csv"], "a recording's name ends in .mcap"),
        (["--record", "{tmp}/no/walk.mcap"], "does not exist"),
        (["--record", "{tmp}/taken.mcap"], "already exists; choose another file name"),
    ],
)
def test_bad_record_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "taken.mcap").write_bytes(b"mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert plend(["run", "--fast", "--duration", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (tmp_path / "taken.mcap").read_bytes() == b"mine"
    assert plend(["run", "--no-socket", "--record", str(tmp_path / "d.mcap")]) == 2
    assert "plenctl record start" in capsys.readouterr().err


def test_a_cut_recording_gives_what_it_holds(walk: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = walk
    whole = read(path)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    rec = read(cut)
    assert 0 < len(rec.t) < len(whole.t)
    assert np.array_equal(rec.t, whole.t[: len(rec.t)])
    assert len(rec.problems) == 1 and "ends early or is damaged" in rec.problems[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not an MCAP recording (it is empty)"),
        (b"t,r_knee_r_shin\n0,0.1\n", "is not an MCAP recording (it starts with b't,r_knee')"),
        (b"\x89MCAP0\r\n" + b"\x00" * 40, "no readable tick in it"),
    ],
)
def test_files_that_are_no_recording_are_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.mcap"
    path.write_bytes(content)
    with pytest.raises(RecordingReadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(path)


def _write(path: Path, info: dict[str, Any], ticks: list[dict[str, Any]]) -> None:
    from mcap.writer import Writer

    with path.open("wb") as f:
        writer = Writer(f)
        writer.start()
        schema = writer.register_schema("x", "jsonschema", b"{}")
        channels = {
            topic: writer.register_channel(topic, "json", schema) for topic in ("/plend/info", "/plend/tick")
        }
        writer.add_message(channels["/plend/info"], 0, json.dumps(info).encode(), 0)
        for k, tick in enumerate(ticks):
            writer.add_message(channels["/plend/tick"], k + 1, json.dumps(tick).encode(), k + 1)
        writer.finish()


def test_an_older_recording_with_arrays_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.mcap"
    tick = {
        "t": 1.0, "mode": "stand", "targets": None, "measured": [0.1] * 17 + [None],
        "imu": {"quat": [1, 0, 0, 0], "euler": [0.01, 0.02, 0.03], "gyro": [0, 0, 1], "accel": [0, 0, 9.8]},
        "contacts": {"right": True, "left": False}, "compute_ms": 1.0, "lateness_ms": 0.1, "overruns": 0,
        "faults": ["stale_sensors"],
    }  # fmt: skip
    _write(path, {"joint_names": list(JOINT_NAMES)}, [tick, {**tick, "t": 1.02}])
    rec = read(path)
    assert rec.format == 1 and rec.problems == [] and len(rec.t) == 2
    assert rec.measured[0, 0] == 0.1 and np.isnan(rec.measured[0, 17]) and np.isnan(rec.targets).all()
    assert list(rec.euler[1]) == [0.01, 0.02, 0.03] and rec.faults[0] == ("stale_sensors",)
    joints, positions, rate, note = trajectory(rec, "measured")  # the elbow never read: left out
    assert joints == JOINT_NAMES[:17] and positions.shape == (2, 17) and rate == pytest.approx(50.0)
    assert note == ""
    with pytest.raises(RecordingReadError, match="no targets in it"):
        trajectory(rec, "targets")


def test_a_newer_recording_reads_what_it_knows_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "new.mcap"
    tick = {"t": 0.5, "mode": "sine", "measured": {"r_knee_r_shin": -0.4}, "extra": {"what": 1}}
    _write(path, {"format": 9, "plend": "9.0", "joint_names": ["r_knee_r_shin"]}, [tick, {"no": "t"}])
    rec = read(path)
    assert rec.joint_names == ("r_knee_r_shin",) and rec.measured[0, 0] == -0.4
    assert any("format 9 by plend 9.0, newer than this plend's (2)" in p for p in rec.problems)
    assert any("1 tick messages could not be read" in p for p in rec.problems)


def test_plot_draws_a_recording(
    walk: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path, summary = walk
    out = tmp_path / "walk.png"
    assert plend(["plot", str(path), "-o", str(out), "--joints", "all"]) == 0
    assert f"plotted {summary['ticks']} ticks" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert plend(["plot", str(cut), "--joints", "r_knee_r_shin,l_knee_l_shin"]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "cut.png").exists() and "ends early or is damaged" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/text.mcap"], "is not an MCAP recording"),
        (["{tmp}/missing.mcap"], "cannot read"),
        (["{rec}", "--joints", "r_knee"], "no joint r_knee in the recording"),
        (["{rec}", "-o", "{tmp}/x.jpg"], "give a .png, .svg or .pdf file"),
    ],
)
def test_plot_refuses_in_one_line(
    walk: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "text.mcap").write_text("hello\n")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{rec}", str(walk[0])) for a in argv]
    assert plend(["plot", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("plend: error: ")


def test_export_writes_the_replay_format_the_daemon_reads(
    walk: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from plend.control.trajectory import load_trajectory
    from plend.core.config import SafetyConfig

    path, summary = walk
    lower, upper = SafetyConfig().joint_limits()
    for flag, joints in (([], 18), (["--measured"], 18)):  # the simulation measures the elbows too
        out = tmp_path / f"walk{len(flag)}.csv"
        assert plend(["export", str(path), "-o", str(out), *flag]) == 0
        assert out.read_text().startswith("# rate_hz: 50\n")
        traj = load_trajectory(out, None, lower, upper, 9.0)
        assert len(traj.joints) == joints and len(traj.positions) == summary["ticks"]
        from_recording = load_trajectory(
            path, None, lower, upper, 9.0, source="measured" if flag else "targets"
        )
        assert from_recording.joints == traj.joints
        assert np.allclose(from_recording.positions, traj.positions, atol=1e-6)
    assert plend(["export", str(path), "-o", str(tmp_path / "walk0.csv")]) == 2  # never overwritten


def test_replay_files_are_told_apart(tmp_path: Path) -> None:
    from plend.control.trajectory import TrajectoryError, load_trajectory
    from plend.core.config import SafetyConfig

    lower, upper = SafetyConfig().joint_limits()
    fake = tmp_path / "walk.mcap"
    fake.write_bytes(bytes(range(256)) * 4)  # once a UTF-8 decoding error
    with pytest.raises(TrajectoryError, match="not an MCAP recording"):
        load_trajectory(fake, None, lower, upper, 9.0)
    csv = tmp_path / "t.csv"
    csv.write_text("# rate_hz: 50\nr_knee_r_shin\n-0.5\n")
    with pytest.raises(TrajectoryError, match=r"only a recording \(.mcap\) has measured angles"):
        load_trajectory(csv, None, lower, upper, 9.0, source="measured")
