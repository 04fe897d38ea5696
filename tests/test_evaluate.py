"""plend evaluate: a small version of the robustness evaluation, its totals, its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plend.cli.evaluate import ProgressBar, parse_settings, totals, world_seeds
from plend.core.errors import ConfigError
from plend.main import main

pytest.importorskip("pybullet")


def row(world: str, distance: float, lateral: float, yaw: float, fell: bool = False) -> dict:
    return {"world": world, "distance_m": distance, "lateral_m": lateral, "yaw_deg": yaw,
            "yaw_rate_deg_s": yaw / 20, "fell": fell, "time_to_fall_s": 3.0 if fell else None}  # fmt: skip


def test_totals_are_falls_medians_worsts_and_mean() -> None:
    rows = [row("0", 0.6, 0.01, -2.0), row("1", 0.5, -0.05, 8.0, fell=True), row("2", 0.4, 0.02, 1.0)]
    t = totals(rows)
    assert t["worlds"] == 3 and t["falls"] == 1
    assert t["median_abs_lateral_m"] == 0.02 and t["worst_abs_lateral_m"] == 0.05
    assert t["median_abs_yaw_deg"] == 2.0 and t["worst_abs_yaw_deg"] == 8.0
    assert t["mean_distance_m"] == pytest.approx(0.5)


def test_a_small_evaluation_in_parallel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What CI runs: three worlds of the full suite, 3 s each, on two processes."""
    out = tmp_path / "report.json"
    args = ["evaluate", "--worlds", "3", "--first", "5", "--seconds", "3", "--jobs", "2", "--json", str(out)]
    assert main([*args, "--speed", "0.5"]) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert [r["world"] for r in report["worlds"]] == ["5", "6", "7"]
    assert report["totals"]["worlds"] == 3 and report["walker"]["speed"] == 0.5
    assert report["versions"]["numpy"] == np.__version__, "what the figures were measured with"
    assert report["versions"]["numpy_simd"], "and the vector instructions numpy used"
    for r in report["worlds"]:
        assert r["parameters"]["seed"] == int(r["world"])
        assert r["fell"] == (r["time_to_fall_s"] is not None)
        assert r["duration_s"] <= 3.0 + 3.5  # the walk and the stop
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("sine gait, speed 0.5: 3 world(s) x 3 s")
    assert len(lines) == 1 + 1 + 3 + 1 and lines[-1].startswith(f"falls {report['totals']['falls']}/3")
    assert "3/3 worlds" in captured.err, "the progress bar"


def test_the_same_worlds_give_the_same_report_serial_or_parallel(tmp_path: Path) -> None:
    reports = []
    for jobs in ("1", "2"):
        out = tmp_path / f"r{jobs}.json"
        args = [
            "evaluate",
            "--worlds",
            "2",
            "--seconds",
            "2",
            "--jobs",
            jobs,
            "--no-progress",
            "--json",
            str(out),
        ]
        assert main([*args, "--factors", "sole_height,servo_delay"]) == 0
        reports.append(json.loads(out.read_text()))
    strip = [[{k: v for k, v in r.items() if k != "wall_s"} for r in rep["worlds"]] for rep in reports]
    assert strip[0] == strip[1]
    assert reports[0]["factors"] == ["sole_height", "servo_delay"]


def test_the_configured_world_and_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", "--as-configured", "--seconds", "2", "--no-progress", "--json", str(out)]
    assert main([*args, "--set", "sim.sole_height_left_mm=-2.5", "--friction", "0.6"]) == 0
    report = json.loads(out.read_text())
    assert [r["world"] for r in report["worlds"]] == ["configured"]
    parameters = report["worlds"][0]["parameters"]
    assert parameters["sole_height_left_mm"] == -2.5 and parameters["friction"] == 0.6


BAD = [
    (["--worlds", "0"], "--worlds 0 is out of range; use 1 to 10000"),
    (["--jobs", "0"], "--jobs 0 is out of range"),
    (["--factors", "soles"], "unknown robustness factor 'soles'"),
    (["--speed", "3"], "speed 3.0 is out of range"),
    (["--world-seed", "3"], "use --first/--worlds and --seconds"),
    (["--set", "sim.friction"], "--set 'sim.friction': use KEY=VALUE"),
    (["--set", "sim.friction=9"], "sim.friction = 9 is out of range"),
    (["--set", "sim.urdf=robot.urdf"], "is not a TOML value (strings need quotes)"),
    (["--urdf", "/nonexistent/robot.urdf"], "cannot read the robot model /nonexistent/robot.urdf"),
    (["--policy", "/nonexistent/walk.onnx"], "/nonexistent/walk.onnx"),
    (["--summary", "json"], "leave out --summary, --socket and --no-socket"),
    (["--socket", "/tmp/x.sock"], "leave out --summary, --socket and --no-socket"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_options_are_refused_before_any_world_runs(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--worlds", "2", "--seconds", "1", "--no-progress", *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.out == ""


def test_helpers_check_their_input() -> None:
    assert world_seeds(3, 2) == (3, 4)
    assert parse_settings(["sim.servo.delay_ms=20", 'sim.urdf="x"']) == {
        "sim": {"servo": {"delay_ms": 20}, "urdf": "x"}
    }
    with pytest.raises(ConfigError):
        world_seeds(-1, 2)


def test_progress_bar_without_a_terminal_prints_every_tenth() -> None:
    import io

    stream = io.StringIO()
    bar = ProgressBar(stream)
    for done in range(1, 51):
        bar(done, 50, 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("[" + "#" * 30 + "] 50/50 worlds")


def test_a_policy_is_evaluated_through_the_daemons_policy_path(tmp_path: Path) -> None:
    policy = Path(__file__).resolve().parents[1] / "policies" / "walk.onnx"
    out = tmp_path / "r.json"
    args = [
        "evaluate",
        "--worlds",
        "1",
        "--first",
        "2",
        "--seconds",
        "2",
        "--no-progress",
        "--json",
        str(out),
    ]
    assert main([*args, "--factors", "friction", "--policy", str(policy)]) == 0
    report = json.loads(out.read_text())
    assert report["walker"]["policy"] == str(policy)
    assert report["worlds"][0]["distance_m"] > 0.02 and not report["worlds"][0]["fell"]


def test_the_json_report_is_refused_before_the_run_where_it_would_overwrite_or_follow_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kept.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "elsewhere.json")
    cases = (
        ("kept.json", "already exists"),
        ("link.json", "is a symbolic link"),
        ("no/r.json", "does not exist"),
    )
    for name, words in cases:
        args = [
            "evaluate",
            "--worlds",
            "1",
            "--seconds",
            "1",
            "--no-progress",
            "--json",
            str(tmp_path / name),
        ]
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert words in err and err.count("\n") == 1 and out == "", "refused before any world ran"
    assert (tmp_path / "kept.json").read_text() == "{}" and not (tmp_path / "elsewhere.json").exists()


def test_json_to_stdout_is_the_only_thing_there(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--worlds", "1", "--seconds", "1", "--no-progress", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["worlds"] and "falls" in err  # the table went to stderr


def test_a_world_option_holds_over_what_the_suite_draws(tmp_path: Path) -> None:
    """As with plend run --world-seed N --friction F: the option wins over the drawn factor."""
    out = tmp_path / "r.json"
    args = ["evaluate", "--worlds", "2", "--seconds", "1", "--no-progress", "--friction", "0.3"]
    assert main([*args, "--set", "sim.mass_scale=1.1", "--json", str(out)]) == 0
    worlds = json.loads(out.read_text())["worlds"]
    assert [w["parameters"]["friction"] for w in worlds] == [0.3, 0.3]
    assert [w["parameters"]["mass_scale"] for w in worlds] == [1.1, 1.1]
    assert worlds[0]["parameters"]["rolling_friction"] != worlds[1]["parameters"]["rolling_friction"]
