"""End to end, as an outside tester would: a live daemon (simulation) and clients that name
the wrong files, crowd the socket, storm it, leave early, or kill the daemon mid-recording."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plend.plenctl import main as plenctl
from tests.support import Daemon, wait_for_mode

pytest.importorskip("pybullet")

CAP = 12
CONFIG = f"[socket]\nmax_connections = {CAP}\nrequest_timeout_s = 2.0\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("hostile"), config=CONFIG)
    yield d
    d.stop()


def ask(d: Daemon, request: dict[str, Any] | bytes, timeout: float = 10.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(d.socket))
        s.sendall(request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n")
        reply: dict[str, Any] = json.loads(s.makefile("rb").readline())
        return reply


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def one_line_error(capsys: pytest.CaptureFixture[str], fragment: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("plenctl: error: ") and "\n" not in err and "Traceback" not in err, err
    assert fragment in err, err
    return err


ABUSE = {
    "JSON nested 1000 deep": (b"[" * 1000 + b"]" * 1000, "bad_request"),
    "a 400-digit integer": (b'{"cmd": "gait", "args": {"speed": ' + b"9" * 400 + b"}}", "bad_request"),
    "an empty gait name": (b'{"cmd": "gait", "args": {"name": "", "speed": 0.5}}', "bad_argument"),
    "an unknown argument": (b'{"cmd": "gait", "args": {"speed": 0.5, "sped": 0.9}}', "bad_argument"),
    "v true": (b'{"v": true, "cmd": "stand"}', "bad_request"),
    "a lone surrogate": (b'{"cmd": "gait", "args": {"name": "\\udc80", "speed": 0.5}}', "bad_request"),
    "an empty drive walker": (
        b'{"cmd": "drive", "args": {"session": "s", "speed": 0.5, "walker": ""}}',
        "bad_argument",
    ),
    "a pose's stray key": (b'{"cmd": "pose", "args": {"lost": "glare", "seq": 1}}', "bad_argument"),
    "20 KB to echo": (
        b'{"cmd": "gait", "args": {"name": "' + b"A" * 20_000 + b'", "speed": 0.5}}',
        "bad_argument",
    ),
}


@pytest.mark.parametrize("case", ABUSE.values(), ids=ABUSE.keys())
def test_malformed_and_lax_requests_are_refused_and_change_nothing(
    daemon: Daemon, case: tuple[bytes, str]
) -> None:
    line, code = case
    wait_for_mode(daemon, "stand")
    reply = ask(daemon, line + b"\n")
    assert reply["ok"] is False and reply["error"] == code, reply
    assert "A" * 101 not in reply["message"] and len(reply["message"]) < 700
    assert daemon.status()["mode"] == "stand"


def test_an_npy_with_array_fields_is_refused_while_the_robot_walks_on(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.zeros(10, [("r_thigh_r_knee", float, (18,))])
    data[:] = 0.6
    np.save(tmp_path / "s.npy", data)
    assert daemon.ctl("gait", "sine") == 0
    wait_for_mode(daemon, "sine")
    assert daemon.ctl("replay", str(tmp_path / "s.npy"), "--rate", "50") == 1
    one_line_error(capsys, "array of shape (18,)")
    assert daemon.proc.poll() is None and daemon.status()["mode"] == "sine"
    assert daemon.ctl("stop") == 0
    wait_for_mode(daemon, "stand")


def test_files_that_are_not_trajectories_are_refused_at_once_without_growing_the_daemon(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    with (tmp_path / "big.csv").open("wb") as f:
        f.truncate(500 * 2**20)
    before = rss_kib(daemon.proc.pid)
    for name, fragment in [
        ("/dev/zero", "is a character device"),
        (str(tmp_path / "fifo"), "is a FIFO (named pipe)"),
        (str(tmp_path / "dir"), "is a directory"),
        (str(tmp_path / "big.csv"), "over the 16.0 MiB limit"),
    ]:
        began = time.monotonic()
        assert daemon.ctl("replay", name, "--rate", "50") == 1
        assert time.monotonic() - began < 5.0
        one_line_error(capsys, fragment)
    for name, fragment in [("/dev/zero", "is a character device"), (str(tmp_path / "dir"), "is a directory")]:
        assert daemon.ctl("policy", "load", name) == 1
        one_line_error(capsys, fragment)
    assert rss_kib(daemon.proc.pid) - before < 20 * 1024
    assert daemon.status()["mode"] == "stand"


def test_replay_errors_do_not_show_what_the_file_holds(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:TOP-SECRET:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n")
    assert daemon.ctl("replay", str(secret), "--rate", "50") == 1
    err = one_line_error(capsys, "is not a joint")
    assert "TOP-SECRET" not in err and "root:" not in err


def test_recordings_cannot_be_written_outside_the_recordings_directory(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out, fragment in [
        ("../escape.mcap", "'..'"),
        (str(daemon.tmp / "calibration.json"), "recordings go in"),
        (str(tmp_path / "escape.mcap"), "recordings go in"),
    ]:
        assert daemon.ctl("record", "start", "--out", out) == 1
        one_line_error(capsys, fragment)
    assert not (daemon.tmp / "escape.mcap").exists() and not (daemon.tmp / "calibration.json").exists()
    assert not (tmp_path / "escape.mcap").exists()
    status = daemon.status()
    assert status["faults"] == [] and status["recording"]["recording"] is False


def test_estop_is_answered_at_once_while_fifos_are_named_and_clients_storm(
    daemon: Daemon, tmp_path: Path
) -> None:
    for name in ("f1", "f2"):
        os.mkfifo(tmp_path / name)
    assert daemon.ctl("reset") == 0 and daemon.ctl("gait", "sine") == 0
    wait_for_mode(daemon, "sine")
    stop = threading.Event()
    answers: list[dict[str, Any]] = []

    def storm() -> None:
        while not stop.is_set():
            answers.append(ask(daemon, {"cmd": "gait", "args": {"speed": 0.3}}))

    def fifo(name: str) -> None:
        answers.append(ask(daemon, {"cmd": "replay", "args": {"path": str(tmp_path / name), "rate_hz": 50}}))

    threads = [threading.Thread(target=storm) for _ in range(8)]
    threads += [threading.Thread(target=fifo, args=(n,)) for n in ("f1", "f2")]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        began = time.monotonic()
        assert ask(daemon, {"cmd": "estop"})["result"] == {"mode": "estop"}
        waited = time.monotonic() - began
        time.sleep(0.5)
        assert daemon.status()["mode"] == "estop", "a storm of gait requests cannot undo the e-stop"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert waited < 2.0, f"the e-stop waited {waited:.2f} s"
    assert all(a["ok"] or a["error"] in ("refused", "bad_argument", "busy") for a in answers), answers[:5]
    assert daemon.ctl("reset") == 0 and daemon.ctl("stand") == 0


def test_past_the_connection_cap_plenctl_says_busy_and_estop_still_works(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    crowd = []
    try:
        for _ in range(3 * CAP):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.socket))
            crowd.append(s)
        time.sleep(0.3)
        assert daemon.ctl("gait", "sine") == 1
        one_line_error(capsys, "plend is busy")
        assert daemon.ctl("estop") == 0
        assert daemon.status()["mode"] == "estop"
    finally:
        for s in crowd:
            s.close()
    assert daemon.ctl("reset") == 0 and daemon.ctl("stand") == 0


def test_plenctl_says_busy_when_the_daemon_cannot_take_more_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "full.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)  # never accepts: the queue fills
    queued = []
    try:
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        assert plenctl(["--socket", str(path), "status"]) == 1
        one_line_error(capsys, "busy")
    finally:
        for s in queued:
            s.close()
        listener.close()


def test_clients_that_leave_early_leave_no_traceback_and_the_socket_is_only_removed_if_ours(
    tmp_path: Path,
) -> None:
    d = Daemon(tmp_path, config=CONFIG)
    for _ in range(40):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(d.socket))
        s.sendall(b'{"cmd": "status"}\n')
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    assert d.status()["mode"] == "stand"
    d.socket.unlink()  # a newer daemon took the path over
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(str(d.socket))
    code, err = d.stop()
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert d.socket.exists(), "the exiting daemon removed the newer one's socket"
    newer.close()


def test_a_killed_daemon_leaves_a_readable_recording(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    d = Daemon(tmp_path)
    try:
        assert d.ctl("record", "start", "--out", "killed.mcap") == 0
        time.sleep(2.0)
    finally:
        killed = time.time()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.communicate(timeout=30)
    with (tmp_path / "rec" / "killed.mcap").open("rb") as f:
        stamps = [m.log_time / 1e9 for _, c, m in make_reader(f).iter_messages() if c.topic == "/plend/tick"]
    assert len(stamps) >= 25
    assert killed - stamps[-1] <= 1.0, f"lost the last {killed - stamps[-1]:.2f} s"


def test_onnxruntime_is_imported_before_the_loop_runs(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from plend.core.config import Config, PathsConfig\n"
        "from plend.daemon.daemon import Daemon, DaemonOptions\n"
        f"d = Daemon(Config(paths=PathsConfig({str(tmp_path)!r}, {str(tmp_path)!r})), "
        f"DaemonOptions(socket=Path({str(tmp_path / 's.sock')!r})))\n"
        "assert 'onnxruntime' not in sys.modules\n"
        "d._serve()\n"
        "print('onnxruntime' in sys.modules)\n"
        "d.server.close()\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
