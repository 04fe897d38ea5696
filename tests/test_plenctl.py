"""plenctl as a person uses it: sentences, --json, options anywhere, policies by name,
helpful errors, a quiet broken pipe, and a quick start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plend.plenctl import main as plenctl
from tests.support import Daemon, wait_for_mode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    pytest.importorskip("pybullet")
    d = Daemon(tmp_path_factory.mktemp("plenctl"))
    yield d
    d.stop()


def said(d: Daemon, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert d.ctl(*args) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip()


def test_every_reply_is_a_sentence(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    wait_for_mode(daemon, "stand")
    assert (
        said(daemon, capsys, "gait", "sine", "--speed", "0.5")
        == "walking on the sine gait at speed 0.5 (mode sine)"
    )
    assert said(daemon, capsys, "gait", "sine", "--speed", "0.3") == "speed 0.3 from the next step"
    status = said(daemon, capsys, "status")
    assert "mode      sine" in status and "speed 0." in status.splitlines()[0]
    assert said(daemon, capsys, "stop") == "stopping: sine ends at its next safe point, then the robot stands"
    wait_for_mode(daemon, "stand")
    assert said(daemon, capsys, "stop") == "already standing; nothing to stop"
    assert (
        said(daemon, capsys, "estop") == "e-stop: servos relaxed; every move is refused until 'plenctl reset'"
    )
    assert said(daemon, capsys, "reset").startswith("e-stop and faults cleared")
    assert said(daemon, capsys, "stand").endswith("(mode stand)")
    wait_for_mode(daemon, "stand")


def test_json_and_socket_are_taken_before_or_after_the_command(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(daemon.socket)
    assert plenctl(["status", "--socket", sock, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] in ("stand", "relax")
    assert plenctl(["--json", "--socket", sock, "stand"]) == 0
    assert json.loads(capsys.readouterr().out) == {"mode": "stand"}
    assert plenctl(["--socket", sock, "policy", "list", "--json"]) == 0
    assert "policies" in json.loads(capsys.readouterr().out)


def test_a_command_without_its_action_names_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    assert plenctl(["--socket", "/nonexistent/plend.sock", "policy"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "plenctl: error: say what to do: plenctl policy load NAME|FILE "
        "(a name from 'plenctl policy list', or a path), start, command, list"
    )


def test_policies_load_by_name_and_are_listed(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    mine = daemon.tmp / "policies"
    mine.mkdir(exist_ok=True)
    shutil.copy(ROOT / "policies" / "walk.onnx", mine / "my-walk.onnx")
    (mine / "broken.onnx").write_bytes(b"not a model")
    table = said(daemon, capsys, "policy", "list")
    assert "walk.onnx" in table and "my-walk.onnx" in table
    assert "broken.onnx" in table and "not a plend policy" in table
    assert f"looked in: {ROOT / 'policies'}, {mine}" in table
    loaded = said(daemon, capsys, "policy", "load", "walk")  # the bare name people type
    assert loaded.startswith(f"loaded {ROOT / 'policies' / 'walk.onnx'}: 41 observations -> 12 actions")
    assert "my-walk.onnx" in said(daemon, capsys, "policy", "load", "my-walk.onnx")
    status = said(daemon, capsys, "status")
    assert f"policy    my-walk.onnx ({mine / 'my-walk.onnx'}) on " in status and ", loaded" in status


def test_an_unknown_policy_says_where_it_looked(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.ctl("policy", "load", "sprint") == 1
    err = capsys.readouterr().err
    assert f"no policy 'sprint' in {ROOT / 'policies'}, {daemon.tmp / 'policies'}" in err
    assert "'plenctl policy list' shows what there is" in err


def test_the_service_explains_a_policy_in_a_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from policies.library import PolicyNotFoundError, find

    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")  # as systemd sets for a service
    with pytest.raises(
        PolicyNotFoundError, match=r"cannot see home directories \(ProtectHome\); copy the file"
    ):
        find("/home/pi/walk2.onnx", Path("/var/lib/plend"))
    monkeypatch.delenv("INVOCATION_ID")
    with pytest.raises(PolicyNotFoundError, match=r"^/home/pi/walk2.onnx: no such file$"):
        find("/home/pi/walk2.onnx", Path("/var/lib/plend"))


def test_calibration_show_reads_the_running_daemons_file(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daemon.ctl("calibration", "show") == 1
    assert f"no calibration at {daemon.tmp / 'calibration.json'}" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_plenctl_quietly(daemon: Daemon) -> None:
    # As `plenctl status --json | head -1` does: the pipe is closed before plenctl writes.
    for command in (
        [sys.executable, "-m", "plend.plenctl", "--socket", str(daemon.socket), "status", "--json"],
        [sys.executable, "-m", "plend.main", "--dump-config"],
    ):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, err
        assert "Traceback" not in err and "BrokenPipe" not in err


def test_plenctl_starts_without_numpy_and_the_daemon_without_mcap() -> None:
    code = (
        "import sys, plend.plenctl; a = 'numpy' in sys.modules; import plend.daemon.daemon; "
        "print(a, 'mcap' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.split() == ["False", "False", "False"], done.stderr


def test_the_simulated_robot_is_stood_up_by_hand(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    # From no latched fault: on a loaded machine the robot an earlier test e-stopped was
    # seen here with a fall latched, which respawn refuses by design.
    said(daemon, capsys, "reset")
    assert said(daemon, capsys, "sim", "respawn") == "the simulated robot was stood up again (mode stand)"
    wait_for_mode(daemon, "stand")


def test_respawn_is_refused_on_the_robot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pybullet")
    d = Daemon(tmp_path, config='hal = "hardware"\n[hardware]\nbus = "emulated"\n')
    try:
        assert d.ctl("sim", "respawn") == 1
        assert (
            "only a simulated robot can be respawned; stand a real one up by hand" in capsys.readouterr().err
        )
    finally:
        d.stop()


def test_plenctl_help_is_quick_enough_to_benchmark() -> None:
    # The figure itself comes from tests/benchmarks/plenctl_startup.py; here, that it runs.
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "benchmarks" / "plenctl_startup.py"), "--runs", "3"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "plenctl --help" in done.stdout and "python -c pass" in done.stdout


def test_a_pc_without_the_plend_group_gets_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grp
    import logging

    from plend.daemon.socketfile import _set_group

    try:
        grp.getgrnam("plend")
        pytest.skip("this machine has a plend group")
    except KeyError:
        pass
    path = tmp_path / "plend.sock"
    path.touch()
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    with caplog.at_level(logging.DEBUG, logger="plend.server"):
        _set_group(path, "plend")
        assert [r.levelno for r in caplog.records] == [logging.DEBUG]
        caplog.clear()
        _set_group(path, "robots-of-the-lab")  # asked for by name: worth a warning
        monkeypatch.setenv("INVOCATION_ID", "0123")
        _set_group(path, "plend")  # the service expects the group install.sh makes
        assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
