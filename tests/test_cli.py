"""``plend`` on the command line: summaries, config and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plend.main import main


def plend(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plend.main", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_run_prints_one_json_summary_on_stdout(tmp_path: Path) -> None:
    pytest.importorskip("pybullet")
    done = plend("run", "--hal", "sim", "--fast", "--gait", "sine", "--speed", "0.5",
                 "--duration", "3", "--summary", "json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    for key in ("distance_m", "lateral_m", "yaw_deg", "fell", "ticks", "rate_hz", "sim_realtime_factor"):
        assert key in summary
    assert summary["ticks"] >= 150 and summary["fell"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--friction", "9"], "sim.friction = 9.0 is out of range"),
        (["run", "--duration", "-1"], "duration"),
        (["run", "--rate", "1000"], "loop.rate_hz"),
        (["run", "--mass-jitter", "0.9"], "sim.mass_jitter"),
        (["run", "--fast", "--turn", "1.5"], "--turn: turn 1.5 is out of range; use a value in [-1, 1]"),
        (["run", "--fast", "--side", "nan"], "--side: side must be a number in [-1, 1]"),
        (["run", "--turn", "-2"], "--turn: turn -2.0 is out of range"),
    ],
)
def test_bad_options_give_one_clear_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plend: error: ") and message in err
    assert len(err.splitlines()) == 1


def test_speed_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pybullet")
    assert main(["run", "--speed", "3", "--fast", "--duration", "1", "--summary", "none"]) == 2
    assert "speed 3.0 is out of range" in capsys.readouterr().err


def test_config_file_layers_and_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plend.toml"
    path.write_text("[sim]\nfriction = 0.6\n[loop]\nrate_hz = 100\n")
    assert main(["--config", str(path), "--dump-config", "run", "--seed", "4"]) == 0
    dumped = json.loads(capsys.readouterr().out)
    assert dumped["sim"]["friction"] == 0.6 and dumped["sim"]["seed"] == 4
    assert dumped["loop"]["rate_hz"] == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sim]\nfrictoin = 0.6\n", "unknown config key 'sim.frictoin'"),
        ("[sim]\nfriction = 'x'\n", "sim.friction must be a number"),
        ("[sim\n", "not valid TOML"),
    ],
)
def test_bad_config_file_names_the_key(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plend.toml"
    path.write_text(text)
    assert main(["--config", str(path), "--dump-config"]) == 2
    assert message in capsys.readouterr().err


BROKEN_CONFIGS = {
    "binary": (bytes(range(256)), "is not UTF-8 text"),
    "UTF-16": ("[sim]\nfriction = 0.6\n".encode("utf-16"), "is not UTF-8 text"),
    "state_dir a number": (b"[paths]\nstate_dir = 5\n", "paths.state_dir must be a file system path"),
    "recordings_dir blank": (
        b'[paths]\nrecordings_dir = "  "\n',
        "paths.recordings_dir must be a file system path",
    ),
    "socket group a number": (b"[socket]\ngroup = 5\n", "socket.group must be a group name"),
    "socket path a list": (b"[socket]\npath = [1]\n", "socket.path must be a file system path"),
    "a directory": (None, "is a directory, not a regular file"),
}


@pytest.mark.parametrize("case", BROKEN_CONFIGS.values(), ids=BROKEN_CONFIGS.keys())
def test_a_broken_config_file_is_one_line_and_leaves_no_socket(
    tmp_path: Path, case: tuple[bytes | None, str], capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = case
    path = tmp_path / "plend.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    sock = tmp_path / "plend.sock"
    assert main(["--config", str(path), "run", "--socket", str(sock), "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plend: error: ") and message in err and "\n" not in err, err
    assert not sock.exists()


def test_missing_config_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "--dump-config"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_fall_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pybullet")
    path = tmp_path / "weak.toml"
    path.write_text("[sim]\nservo_torque_nm = 0.02\n")
    assert main(["--config", str(path), "run", "--fast", "--duration", "5", "--summary", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["fell"] is True


def test_a_robot_that_a_fault_relaxed_and_that_then_toppled_counts_as_fallen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weak servos sag: the tracking fault relaxes the robot before the fall monitor's
    2 s of tilt are up, and the relaxed robot then lies on the floor, which is a fall."""
    pytest.importorskip("pybullet")
    path = tmp_path / "weak.toml"
    path.write_text("[sim]\nservo_torque_nm = 0.02\n[safety]\nfall_ticks = 100\n")
    assert main(["--config", str(path), "run", "--fast", "--duration", "5", "--summary", "json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["fell"] is True and summary["time_to_fall_s"] < 5.0


def test_config_is_taken_after_the_subcommand_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plend.toml"
    path.write_text("[sim]\nfriction = 0.6\n")
    assert main(["--dump-config", "run", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["sim"]["friction"] == 0.6
    assert main(["--config", str(path), "--dump-config", "run"]) == 0  # and before it, as before
    assert json.loads(capsys.readouterr().out)["sim"]["friction"] == 0.6


def test_zero_on_the_command_line_overrides_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plend.toml"
    path.write_text("[sim]\nseed = 5\nactuation_delay_ticks = 2\nmass_jitter = 0.1\n")
    args = ["--seed", "0", "--actuation-delay", "0", "--mass-jitter", "0"]
    assert main(["--config", str(path), "--dump-config", "run", *args]) == 0
    sim = json.loads(capsys.readouterr().out)["sim"]
    assert (sim["seed"], sim["actuation_delay_ticks"], sim["mass_jitter"]) == (0, 0, 0)


def test_ctrl_c_of_a_fast_run_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    pytest.importorskip("pybullet")
    proc = subprocess.Popen(
        [sys.executable, "-m", "plend.main", "run", "--fast", "--duration", "3000", "--summary", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    time.sleep(4)  # well into the walk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "plend: interrupted; the simulated robot was relaxed" in err and "Traceback" not in err, err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run", "--fast", "--record", ""], "argument --record: needs a file name; it was given ''"),
        (["run", "--fast", "--video", " "], "argument --video: needs a file name; it was given ' '"),
        (["run", "--urdf", ""], "argument --urdf: needs a file name; it was given ''"),
        (["--config", "", "run"], "argument --config: needs a file name; it was given ''"),
        (["plot", ""], "argument REC.mcap: needs a file name; it was given ''"),
    ],
)
def test_an_empty_path_is_refused_not_taken_for_the_current_directory(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unset shell variable (`--record "$OUT"`) used to stand for '.' or the folder."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {named}")
