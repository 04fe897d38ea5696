"""End to end: ``plend run`` (simulation) as a subprocess, driven with ``plenctl``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plend.plenctl import Client
from plend.plenctl import main as plenctl
from tests.support import Daemon, status_once, wait_for_mode

pytest.importorskip("pybullet")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("plend"))
    yield d
    d.stop()


def raw(d: Daemon, *lines: bytes) -> list[dict]:
    """Send raw lines on one connection; return the replies."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(d.socket))
        f = s.makefile("rwb")
        replies = []
        for line in lines:
            f.write(line)
            f.flush()
            replies.append(json.loads(f.readline()))
        return replies


def test_starts_standing_and_reports_status(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    wait_for_mode(daemon, "stand")
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o660
    assert daemon.ctl("status") == 0
    table = capsys.readouterr().out
    assert "mode      stand" in table and "r_knee_r_shin" in table
    assert daemon.ctl("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rate_hz"]["configured"] == 50.0
    assert len(status["joints"]) == 18 and status["faults"] == []


def test_behaviours_change_as_asked(daemon: Daemon) -> None:
    assert daemon.ctl("gait", "sine", "--speed", "0.5") == 0
    wait_for_mode(daemon, "sine")
    assert daemon.ctl("gait", "sine", "--speed", "0.8") == 0  # speed change while walking
    assert daemon.status()["mode"] == "sine"
    assert daemon.ctl("gait", "sine", "--speed", "0.3", "--turn", "0.5", "--side", "-0.2") == 0
    deadline = time.monotonic() + 10
    while daemon.status()["gait"]["turn"] != 0.5:  # taken at the next step boundary
        assert time.monotonic() < deadline
        time.sleep(0.05)
    gait = daemon.status()["gait"]
    assert (gait["speed"], gait["side"]) == (0.3, -0.2)
    assert gait["balance"]["ready"] is True and "level_mm" in gait["balance"]
    assert daemon.ctl("stop") == 0
    wait_for_mode(daemon, "stand")
    assert daemon.ctl("estop") == 0
    assert daemon.status()["mode"] == "estop"
    assert daemon.ctl("gait", "sine") == 1, "moving is refused while the e-stop is latched"
    time.sleep(1.0)  # the relaxed robot settles; in simulation it may fall over
    assert daemon.ctl("reset") == 0
    assert daemon.status()["mode"] in ("relax", "stand")  # a fallen simulated robot is stood up
    assert daemon.ctl("stand") == 0
    wait_for_mode(daemon, "stand")


BAD_LINES = {
    "malformed": (b"{not json\n", "bad_request"),
    "oversized": (b'{"cmd": "status", "pad": "' + b"x" * 70000 + b'"}\n', "bad_request"),
    "unknown command": (b'{"cmd": "dance"}\n', "unknown_command"),
    "bad argument": (b'{"cmd": "gait", "args": {"speed": 3}}\n', "bad_argument"),
    "wrong type": (b'{"cmd": "gait", "args": {"speed": "fast"}}\n', "bad_argument"),
    "turn out of range": (b'{"cmd": "gait", "args": {"speed": 0.5, "turn": 1.2}}\n', "bad_argument"),
    "side not finite": (b'{"cmd": "gait", "args": {"speed": 0.5, "side": NaN}}\n', "bad_request"),  # not JSON
    "unknown gait argument": (b'{"cmd": "gait", "args": {"speed": 0.5, "trun": 0.2}}\n', "bad_argument"),
    "wrong protocol": (b'{"v": 9, "cmd": "status"}\n', "bad_request"),
}


@pytest.mark.parametrize("case", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_requests_get_an_error_and_change_nothing(daemon: Daemon, case: tuple[bytes, str]) -> None:
    line, code = case
    wait_for_mode(daemon, "stand")
    error, after = raw(daemon, line, b'{"cmd": "status"}\n')
    assert error["ok"] is False and error["error"] == code and error["message"]
    assert after["ok"] is True, "the connection stays usable"
    assert after["result"]["mode"] == "stand"


def test_status_shows_the_walk_and_its_balance(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.ctl("gait", "sine", "--speed", "0.5", "--turn", "-0.4") == 0
    wait_for_mode(daemon, "sine")
    deadline = time.monotonic() + 10
    while daemon.status()["gait"]["turn"] != -0.4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    capsys.readouterr()
    assert daemon.ctl("status") == 0
    table = capsys.readouterr().out
    assert "gait      speed +0.50  turn -0.40  side +0.00" in table
    assert "balance   ankle roll " in table and " mm  lean " in table
    assert daemon.ctl("stop") == 0
    wait_for_mode(daemon, "stand")
    assert "gait" not in daemon.status(), "standing: no walk to report"


def test_status_watch_refreshes(daemon: Daemon) -> None:
    env = {**os.environ, "PLEND_SOCKET": str(daemon.socket)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plend.plenctl", "status", "--watch", "0.2"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    time.sleep(1.5)
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert out.count("mode      ") >= 3, out


def test_bad_command_from_plenctl_is_one_line(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.ctl("gait", "sine", "--speed", "2") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("plenctl: error: speed 2.0 is out of range") and "\n" not in err
    assert daemon.ctl("gait", "sine", "--turn", "-1.5") == 1
    err = capsys.readouterr().err.strip()
    expected = "turn -1.5 is out of range; use a value in [-1, 1] (positive turns left) [bad_argument]"
    assert err == f"plenctl: error: {expected}"


def test_replay_validated_before_it_starts(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wait_for_mode(daemon, "stand")
    bad = tmp_path / "bad.csv"
    bad.write_text("# rate_hz: 50\ntorso_r_shoulder,r_knee_r_shin\n0.0,-1.0\n0.1,-2.5\n")
    assert daemon.ctl("replay", str(bad)) == 1
    assert "r_knee_r_shin at -2.500 rad, outside its limits" in capsys.readouterr().err
    assert daemon.status()["mode"] == "stand"
    good = tmp_path / "wave.csv"
    rows = "\n".join(f"{0.02 * i:.3f}" for i in range(40))
    good.write_text(f"# rate_hz: 50\ntorso_r_shoulder\n{rows}\n")
    assert daemon.ctl("replay", str(good)) == 0
    assert daemon.status()["mode"] == "replay"
    wait_for_mode(daemon, "stand")


def test_policy_load_failure_keeps_the_behaviour(daemon: Daemon, tmp_path: Path) -> None:
    wait_for_mode(daemon, "stand")
    assert daemon.ctl("policy", "load", str(tmp_path / "walk.onnx")) == 1
    assert daemon.status()["mode"] == "stand"


def test_policy_load_and_start(daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    from tests.test_policy import SPEC, save_model

    wait_for_mode(daemon, "stand")
    bad = save_model(tmp_path / "wrong.onnx", SPEC, SPEC.observation_size + 1, 12)
    assert daemon.ctl("policy", "load", str(bad)) == 1
    assert "input has size" in capsys.readouterr().err
    good = save_model(tmp_path / "zero.onnx", SPEC, SPEC.observation_size, 12)
    assert daemon.ctl("policy", "load", str(good)) == 0
    assert "12 actions (residual) at 50 Hz, inference median" in capsys.readouterr().out
    assert daemon.status()["mode"] == "stand", "loading does not start it"
    assert daemon.ctl("policy", "start") == 0
    wait_for_mode(daemon, "policy")
    assert daemon.ctl("stop") == 0
    wait_for_mode(daemon, "stand")


def test_a_policy_walks_on_the_command_it_is_given_and_refuses_others(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    from tests.test_policy import COMMAND_SPEC, save_model

    wait_for_mode(daemon, "stand")
    path = save_model(tmp_path / "steer.onnx", COMMAND_SPEC, COMMAND_SPEC.observation_size, 12)
    assert daemon.ctl("policy", "load", str(path)) == 0
    assert "it takes speed 0..1, turn -0.5..0.5" in capsys.readouterr().out
    assert daemon.ctl("policy", "start", "--speed", "0.8", "--turn", "0.2") == 0
    wait_for_mode(daemon, "policy")
    assert daemon.status()["gait"]["command"] == {"speed": 0.8, "turn": 0.2, "side": 0.0}
    capsys.readouterr()
    assert daemon.ctl("policy", "command", "--speed", "1.5") == 1
    assert "speed 1.5 is outside what this policy was trained for: [0, 1]" in capsys.readouterr().err
    assert daemon.ctl("policy", "command", "--side", "0.1") == 1
    assert "side 0.1 is outside what this policy was trained for: only 0" in capsys.readouterr().err
    assert daemon.status()["mode"] == "policy", "a refused command changes nothing"
    assert daemon.ctl("policy", "command", "--turn", "-0.3") == 0
    assert (
        capsys.readouterr().out.strip() == "policy command speed 0.8, turn -0.3, side +0 from the next step"
    )
    steered = {"speed": 0.8, "turn": -0.3, "side": 0.0}
    assert status_once(daemon, lambda s: s["gait"]["command"] == steered)["gait"]["command"] == steered
    assert daemon.ctl("stop") == 0
    wait_for_mode(daemon, "stand")


def test_telemetry_recording(daemon: Daemon, tmp_path: Path) -> None:
    from mcap.reader import make_reader

    out = daemon.tmp / "rec" / "run.mcap"
    assert daemon.ctl("record", "start", "--out", "run.mcap") == 0
    time.sleep(0.5)
    assert daemon.status()["recording"]["recording"] is True
    assert daemon.ctl("record", "stop") == 0
    with out.open("rb") as f:
        ticks = [m for _, ch, m in make_reader(f).iter_messages() if ch.topic == "/plend/tick"]
    assert len(ticks) >= 15
    assert json.loads(ticks[-1].data)["mode"] == "stand"


def test_many_status_clients_are_all_answered_while_the_loop_runs(daemon: Daemon) -> None:
    # How much fifty clients cost the loop (its rate, its overruns) depends on the
    # machine; tests/benchmarks/hostile_clients.py status prints those figures. Here:
    # every client is answered, and the loop keeps running and keeps its mode.
    start = daemon.status()
    stop = threading.Event()
    counts: list[int] = []

    def hammer() -> None:
        client = Client(daemon.socket)
        n = 0
        while not stop.is_set():
            assert "mode" in client.request("status")
            n += 1
        client.close()
        counts.append(n)

    threads = [threading.Thread(target=hammer) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join()
    end = daemon.status()
    assert len(counts) == 50 and min(counts) > 0, "every client was answered"
    assert end["ticks"] > start["ticks"] and end["mode"] == start["mode"]


def test_not_running_is_reported_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.sock"
    assert plenctl(["--socket", str(path), "status"]) == 1
    assert capsys.readouterr().err.strip() == f"plenctl: error: plend is not running (no socket at {path})"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGUSR1"])
def test_a_stop_signal_stands_relaxes_and_exits_zero(tmp_path: Path, sig: str) -> None:
    """SIGHUP is a closed terminal; no signal whose default kills may leave a stride held."""
    d = Daemon(tmp_path, "--gait", "sine")
    wait_for_mode(d, "sine")
    d.proc.send_signal(getattr(signal, sig))
    code, err = d.stop()
    assert code == 0, err
    assert f"stopping ({sig})" in err and "stopped: servos relaxed" in err
    assert not d.socket.exists()


def test_systemd_notifications(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = tmp_path / "notify.sock"
    listener.bind(str(address))
    listener.settimeout(10)
    d = Daemon(tmp_path, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "200000"})
    messages: list[str] = []
    try:
        while sum("WATCHDOG=1" in m for m in messages) < 5:
            messages.append(listener.recv(4096).decode())
    finally:
        d.stop()
        listener.close()
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert all("WATCHDOG=1" not in m for m in messages[:ready]), "no ping before READY"
    assert any(m.startswith("STATUS=running") for m in messages)


class StallingSim:
    """The simulation, with a read that can be made to hang like a stuck bus."""

    def __init__(self) -> None:
        from gaits.sine import stand_pose
        from plend.hal.sim import SimHal

        self.sim = SimHal(initial_pose=stand_pose())
        self.name = "sim"
        self.stalled = threading.Event()
        self.release = threading.Event()

    def read(self):  # type: ignore[no-untyped-def]
        if self.stalled.is_set():
            self.release.wait()
        return self.sim.read()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.sim, name)


def test_watchdog_pings_stop_when_the_loop_stalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plend.core.config import Config, LoopConfig, PathsConfig
    from plend.daemon.daemon import Daemon as InProcess
    from plend.daemon.daemon import DaemonOptions

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    config = Config(loop=LoopConfig(realtime=False), paths=PathsConfig(str(tmp_path), str(tmp_path)))
    hal = StallingSim()
    daemon = InProcess(config, DaemonOptions(socket=None, start="stand"), hal=hal)  # type: ignore[arg-type]
    runner = threading.Thread(target=daemon.run)
    runner.start()

    def collect(seconds: float) -> list[str]:
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                got.append(listener.recv(4096).decode())
        return got

    try:
        started = time.monotonic()
        while not any("READY=1" in m for m in collect(0.1)):  # start-up may take a while on a busy machine
            assert time.monotonic() - started < 20, "no READY=1"
        before = collect(1.0)
        assert sum("WATCHDOG=1" in m for m in before) >= 5
        hal.stalled.set()
        collect(0.2)  # a ping may already be on its way
        during = collect(1.0)
        assert not any("WATCHDOG=1" in m for m in during), "a stalled loop must not ping"
        hal.stalled.clear()
        hal.release.set()
        after = collect(0.5)
        assert any("WATCHDOG=1" in m for m in after), "pings resume with the loop"
    finally:
        hal.stalled.clear()
        hal.release.set()
        daemon.request_stop("test over")
        runner.join(30)
        listener.close()
    assert daemon.exit_code == 0
