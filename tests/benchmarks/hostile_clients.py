"""Benchmark: the daemon (simulation) against hostile clients, with the figures the README quotes.

    .venv/bin/python tests/benchmarks/hostile_clients.py [estop|fuzz|files|kill ...]

estop  E-stop round trip and daemon-side time to relaxed servos, 50 times, while 2 000
       clients hold or retry idle connections, 50 slowloris clients dribble half lines,
       20 clients storm ``gait`` and two clients keep naming FIFOs for ``replay``.
fuzz   10 000 fuzzed requests (tests/fuzz.py): internal errors, mode changes, overruns, RSS.
files  Files that are not trajectories (a 500 MB file, /dev/zero, a FIFO) and the largest
       allowed CSV, named while the robot walks: time to the answer, RSS growth, overruns.
kill   SIGKILL during a recording, 10 times: is every file readable, how much was lost.
status 50 clients asking for status as fast as they are answered, for 3 s: requests
       served, the loop's ticks against its configured rate, overruns.
pipeline  E-stop round trip, 20 times, while 200 clients (another process) keep 64 status
       requests each queued ahead of their replies.
replays  Clients naming the largest allowed CSV, then a 15 MiB recording, for ``replay`` back
       to back, for 10 s, while the robot walks (1, 2 and 4 at once): loads answered,
       overruns, the loop's lateness, then an e-stop's round trip while they go on.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import random
import resource
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests import fuzz
from tests.support import Daemon, wait_for_mode

PERIOD_MS = 20.0  # 50 Hz
RETRY_S = 5.0  # a refused idle client tries again after this long


def pct(values: list[float]) -> str:
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:7.2f}  p99 {p99:7.2f}  max {max(values):7.2f}"


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def quiet(d: Daemon, *args: str) -> int:
    """``plenctl ARGS`` without its output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return d.ctl(*args)


def request(path: Path, line: bytes, timeout: float = 10.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(line)
        reply: dict[str, Any] = json.loads(s.makefile("rb").readline())
        return reply


class Crowd:
    """The hostile clients, run in a child process (as they would be: other programs), so
    the e-stop client measured here does not share an interpreter with them.

    One selector thread keeps ``idle`` connections open (reconnecting 5 s after the daemon
    refuses or closes one: a crowd that keeps trying, about 350 connects a second) and
    dribbles ``slowloris`` half lines a byte every 0.2 s; ``storm`` threads send ``gait``
    back to back; two threads keep asking to replay FIFOs. The storm and FIFO clients
    connect first, as clients that were there before the crowd.
    """

    def __init__(self, sock: Path, fifos: list[Path], idle: int = 2000, slowloris: int = 50, storm: int = 20):
        self.sock, self.fifos = sock, fifos
        self.sizes = (idle, slowloris, storm)
        ctx = multiprocessing.get_context("fork")
        self._stop = ctx.Event()
        self._counts: multiprocessing.Queue[dict[str, int]] = ctx.Queue()
        self._ready = ctx.Event()
        self._proc = ctx.Process(target=self._main, daemon=True)

    def __enter__(self) -> Crowd:
        self._proc.start()
        self._ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.counts = self._counts.get(timeout=60)
        self._proc.join(30)

    # -- in the child ------------------------------------------------------------------------

    def _main(self) -> None:
        idle, slowloris, storm = self.sizes
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        counts: dict[str, int] = {}
        lock = threading.Lock()

        def count(what: str) -> None:
            with lock:
                counts[what] = counts.get(what, 0) + 1

        threads = [threading.Thread(target=self._storm, args=(count,)) for _ in range(storm)]
        threads += [threading.Thread(target=self._fifo, args=(f, count)) for f in self.fifos]
        for t in threads:
            t.start()
        time.sleep(0.5)
        crowd = threading.Thread(target=self._idle_and_slow, args=(idle, slowloris, count))
        crowd.start()
        time.sleep(2.0)
        self._ready.set()
        self._stop.wait()
        for t in [*threads, crowd]:
            t.join(30)
        self._counts.put(counts)

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(self.sock))
        return s

    def _storm(self, count: Callable[[str], None]) -> None:
        line = b'{"cmd": "gait", "args": {"name": "sine", "speed": 0.4}}\n'
        with self._connect() as s:
            f = s.makefile("rb")
            while not self._stop.is_set():
                s.sendall(line)
                reply = json.loads(f.readline())
                count("gait " + ("ok" if reply["ok"] else reply["error"]))

    def _fifo(self, fifo: Path, count: Callable[[str], None]) -> None:
        line = json.dumps({"cmd": "replay", "args": {"path": str(fifo), "rate_hz": 50}}).encode() + b"\n"
        with self._connect() as s:
            f = s.makefile("rb")
            while not self._stop.wait(0.01):
                s.sendall(line)
                reply = json.loads(f.readline())
                count("fifo replay " + ("ok" if reply["ok"] else reply["error"]))

    def _idle_and_slow(self, idle: int, slowloris: int, count: Callable[[str], None]) -> None:
        sel = selectors.DefaultSelector()
        due: list[tuple[float, str]] = [(0.0, "idle")] * idle + [(0.0, "slow")] * slowloris
        while not self._stop.is_set():
            now = time.monotonic()
            later = []
            for when, kind in due:
                if when > now:
                    later.append((when, kind))
                    continue
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect(str(self.sock))
                    sel.register(s, selectors.EVENT_READ, [kind, now])
                except OSError:
                    s.close()
                    count("connect refused by the kernel")
                    later.append((now + RETRY_S, kind))
            due = later
            for key, _ in sel.select(0.2):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                kind = key.data[0]
                count(f"{kind} told busy" if b"busy" in data else f"{kind} cut off")
                sel.unregister(s)
                s.close()
                due.append((time.monotonic() + RETRY_S, kind))
            for key in list(sel.get_map().values()):  # slowloris: one more byte
                if key.data[0] == "slow" and time.monotonic() - key.data[1] > 0.2:
                    key.data[1] = time.monotonic()
                    with contextlib.suppress(OSError):
                        key.fileobj.send(b"x")  # type: ignore[union-attr]
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def bench_estop(trials: int = 50) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    d = Daemon(tmp)
    control = fuzz.Session(d.socket)  # connected first: one of the daemon's normal slots
    fifos = [tmp / "f1", tmp / "f2"]
    for fifo in fifos:
        os.mkfifo(fifo)
    try:
        with Crowd(d.socket, fifos) as crowd:
            overruns = d.status()["overruns"]
            connect, answer, not_relaxed = _estop_trials(d, control, trials)
            status = control.send(b'{"cmd": "status"}\n')["result"]
    finally:
        control.close()
        d.stop()
    print(f"estop under siege ({trials} trials; the daemon at 50 Hz; {os.cpu_count()} CPUs shared):")
    total = [c + a for c, a in zip(connect, answer, strict=True)]
    for name, values in (("connect", connect), ("request->answer", answer), ("both", total)):
        ticks = np.percentile(values, 99) / PERIOD_MS
        print(f"  client {name:<15} ms {pct(values)}   (ticks: p99 {ticks:.2f})")
    daemon_ms = status["urgent_ms"]
    print(
        f"  daemon received->relaxed  ms p50 {daemon_ms['p50']:7.2f}  p99 {daemon_ms['p99']:7.2f}  "
        f"max {daemon_ms['max']:7.2f}   (ticks: p99 {daemon_ms['p99'] / PERIOD_MS:.2f})"
    )
    print(f"  servos relaxed after every estop: {not_relaxed == 0} ({trials - not_relaxed}/{trials})")
    print(f"  overruns during the siege: {status['overruns'] - overruns}")
    print(f"  the crowd saw: {dict(sorted(crowd.counts.items()))}")


def _estop_trials(d: Daemon, control: fuzz.Session, trials: int) -> tuple[list[float], list[float], int]:
    """Walk, then e-stop from a new connection (as ``plenctl estop`` does): the time to
    connect, and from sending the request to its answer, in ms."""
    connect, answer, not_relaxed = [], [], 0
    for _ in range(trials):
        control.send(b'{"cmd": "reset"}\n')
        control.send(b'{"cmd": "gait", "args": {"speed": 0.5}}\n')
        time.sleep(random.uniform(0.4, 0.8))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            began = time.perf_counter()
            s.connect(str(d.socket))
            sent = time.perf_counter()
            s.sendall(b'{"cmd": "estop"}\n')
            reply = json.loads(s.makefile("rb").readline())
            answered = time.perf_counter()
        connect.append((sent - began) * 1000)
        answer.append((answered - sent) * 1000)
        assert reply["ok"], reply
        joints = control.send(b'{"cmd": "status"}\n')["result"]["joints"]
        not_relaxed += any(j["powered"] for j in joints)
    return connect, answer, not_relaxed


def bench_fuzz(n: int = 10_000) -> None:
    from tests.test_fuzz import hostile_files

    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    d = Daemon(tmp)
    try:
        files = hostile_files(tmp / "files")
        before, rss = d.status()["overruns"], rss_kib(d.proc.pid)
        began = time.monotonic()
        tally = fuzz.run(d.socket, n, seed=2024, files=files)
        took = time.monotonic() - began
        alive = d.proc.poll() is None
        overruns, growth = d.status()["overruns"] - before, rss_kib(d.proc.pid) - rss
    finally:
        code, err = d.stop()
    errors = dict(sorted(tally.errors.items()))
    print(f"fuzz: {tally.sent} requests in {took:.1f} s: {tally.ok} ok, errors {errors}")
    print(
        f"  internal {len(tally.internal)}, replies not JSON {tally.not_json}, mode changed by a refused "
        f"request {len(tally.mode_changes)}, daemon alive {alive} (exit {code}), overruns {overruns}, "
        f"RSS growth {growth / 1024:.1f} MiB, tracebacks in the log {err.count('Traceback')}"
    )


def bench_files() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="files-"))
    with (tmp / "huge.csv").open("wb") as f:
        f.truncate(500 * 10**6)
    os.mkfifo(tmp / "fifo")
    _largest_csv(tmp / "largest.csv")
    d = Daemon(tmp)
    try:
        quiet(d, "gait", "sine", "--speed", "0.5")
        wait_for_mode(d, "sine")
        print("files named for replay while the robot walks: size, time to the answer, answer, daemon RSS:")
        for name in ("huge.csv", "/dev/zero", "fifo", "largest.csv"):
            path = name if name.startswith("/") else str(tmp / name)
            before, rss = d.status()["overruns"], rss_kib(d.proc.pid)
            line = json.dumps({"cmd": "replay", "args": {"path": path, "rate_hz": 50}}).encode() + b"\n"
            began = time.monotonic()
            reply = request(d.socket, line, timeout=60)
            took = time.monotonic() - began
            time.sleep(0.5)
            after = rss_kib(d.proc.pid)
            if reply["ok"]:
                answer = f"played, {reply['result']['samples']} samples"
            else:
                why = reply["message"].split(path)[-1].strip(" :").split(" (limits")[0]
                answer = "refused: " + why.replace(", not a regular file", "")
            size = os.stat(path).st_size if name != "fifo" else 0
            overruns = d.status()["overruns"] - before
            print(
                f"  {name:<11} {size / 1e6:6.1f} MB  {took * 1000:7.1f} ms  {answer:<48}  "
                f"RSS {rss / 1024:5.1f} -> {after / 1024:5.1f} MiB  overruns {overruns}"
            )
            request(d.socket, b'{"cmd": "gait", "args": {"speed": 0.5}}\n')
    finally:
        d.stop()


def _largest_csv(path: Path) -> None:
    """A CSV of all 18 joints just under the size limit (16 MiB): about 120 000 samples."""
    from gaits.sine import stand_pose
    from plend.model.robot import JOINT_NAMES

    pose = stand_pose()
    with path.open("w") as f:
        f.write("# rate_hz: 50\n" + ",".join(JOINT_NAMES) + "\n")
        i = 0
        while f.tell() < 16 * 2**20 - 200:
            row = pose.copy()
            row[12] = 0.1 * np.sin(i / 50)  # a shoulder waves
            f.write(",".join(f"{v:.5f}" for v in row) + "\n")
            i += 1


def bench_kill(runs: int = 10) -> None:
    from mcap.reader import make_reader

    print(f"SIGKILL during a recording, {runs} times (walking, 50 Hz):")
    lost, readable = [], 0
    for run in range(runs):
        tmp = Path(tempfile.mkdtemp(prefix="kill-"))
        d = Daemon(tmp, "--gait", "sine")
        quiet(d, "record", "start", "--out", "run.mcap")
        recorded = random.uniform(1.5, 4.0)
        time.sleep(recorded)
        killed = time.time()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.communicate(timeout=30)
        try:
            with (tmp / "rec" / "run.mcap").open("rb") as f:
                stamps = [
                    m.log_time / 1e9 for _, c, m in make_reader(f).iter_messages() if c.topic == "/plend/tick"
                ]
        except Exception as exc:
            print(f"  run {run}: not readable: {exc}")
            continue
        readable += 1
        lost.append(killed - stamps[-1])
        print(f"  run {run}: recorded {recorded:.2f} s, {len(stamps)} ticks readable, lost {lost[-1]:.2f} s")
    print(f"  readable {readable}/{runs}; lost s: max {max(lost):.2f}, mean {np.mean(lost):.2f}")


def bench_status(clients: int = 50, seconds: float = 3.0) -> None:
    from plend.plenctl import Client

    d = Daemon(Path(tempfile.mkdtemp(prefix="status-")))
    stop, counts = threading.Event(), []

    def hammer() -> None:
        client, n = Client(d.socket), 0
        while not stop.is_set():
            client.request("status")
            n += 1
        client.close()
        counts.append(n)

    try:
        start, began = d.status(), time.monotonic()
        threads = [threading.Thread(target=hammer) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed, end = time.monotonic() - began, d.status()
    finally:
        d.stop()
    ticks, rate = end["ticks"] - start["ticks"], end["rate_hz"]["configured"]
    print(
        f"status: {clients} clients, {sum(counts)} requests in {elapsed:.1f} s; loop ran {ticks} ticks "
        f"of {elapsed * rate:.0f} due at {rate:g} Hz, overruns {end['overruns'] - start['overruns']}"
    )


def _pipeline_flood(sock: Path, clients: int, stop: Any) -> None:
    """Keep ``clients`` connections with 64 status requests each queued (another process)."""
    sel, batch = selectors.DefaultSelector(), b'{"cmd": "status"}\n' * 64
    for _ in range(clients):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock))
        s.sendall(batch)
        sel.register(s, selectors.EVENT_READ, [0])  # replies read since the last batch
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            key.data[0] += data.count(b"\n")
            if key.data[0] >= 64:
                key.data[0] -= 64
                with contextlib.suppress(OSError):
                    key.fileobj.sendall(batch)  # type: ignore[union-attr]
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]


def bench_pipeline(clients: int = 200, trials: int = 20) -> None:
    d = Daemon(Path(tempfile.mkdtemp(prefix="pipeline-")))
    control = fuzz.Session(d.socket)
    stop = multiprocessing.Event()
    flood = multiprocessing.Process(target=_pipeline_flood, args=(d.socket, clients, stop))
    try:
        flood.start()
        time.sleep(2.0)
        before = control.send(b'{"cmd": "status"}\n')["result"]
        _, answer, not_relaxed = _estop_trials(d, control, trials)
        after = control.send(b'{"cmd": "status"}\n')["result"]
    finally:
        stop.set()
        flood.join(10)
        control.close()
        d.stop()
    print(f"estop while {clients} clients pipeline 64 status requests each ({trials} trials):")
    print(f"  client request->answer ms {pct(answer)}")
    print(f"  servos relaxed after every estop: {not_relaxed == 0} ({trials - not_relaxed}/{trials})")
    ticks = after["ticks"] - before["ticks"]
    print(f"  the loop meanwhile: {ticks} ticks, overruns {after['overruns'] - before['overruns']}")


def bench_replays(seconds: float = 10.0) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="replays-"))
    _largest_csv(tmp / "largest.csv")
    _large_recording(tmp / "large.mcap")
    for name, rate in (("largest.csv", {"rate_hz": 50}), ("large.mcap", {})):
        path = tmp / name
        line = json.dumps({"cmd": "replay", "args": {"path": str(path), **rate}}).encode() + b"\n"
        size = path.stat().st_size / 2**20
        print(
            f"{name} ({size:.1f} MiB) named for replay back to back for {seconds:g} s while the robot walks:"
        )
        for clients in (1, 2, 4):
            _replays(tmp / f"{name}-{clients}", line, clients, seconds)


def _large_recording(path: Path) -> None:
    """A recording just under the replay size limit (16 MiB): 700 s of standing."""
    import subprocess

    plend = Path(sys.executable).with_name("plend")
    subprocess.run(
        [str(plend), "run", "--fast", "--gait", "stand", "--duration", "700", "--record", str(path),
         "--summary", "none"],
        check=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _replays(home: Path, line: bytes, clients: int, seconds: float) -> None:
    home.mkdir()
    d = Daemon(home)
    stop, answers = threading.Event(), []

    def load() -> None:
        while not stop.is_set():
            began = time.monotonic()
            reply = request(d.socket, line, timeout=60)
            answers.append((time.monotonic() - began, reply["ok"] or reply["error"]))

    threads = [threading.Thread(target=load) for _ in range(clients)]
    try:
        quiet(d, "gait", "sine", "--speed", "0.5")
        wait_for_mode(d, "sine")
        before = d.status()
        for t in threads:
            t.start()
        time.sleep(seconds)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            began = time.perf_counter()
            s.connect(str(d.socket))
            s.sendall(b'{"cmd": "estop"}\n')
            estop = json.loads(s.makefile("rb").readline())
            estop_ms = (time.perf_counter() - began) * 1000
        after = d.status()
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        d.stop()
    outcomes: dict[str, int] = {}
    for _, outcome in answers:
        key = "played" if outcome is True else str(outcome)
        outcomes[key] = outcomes.get(key, 0) + 1
    took = [t for t, outcome in answers if outcome is True] or [0.0]
    late, ticks = after["lateness_ms"], after["ticks"] - before["ticks"]
    print(
        f"  {clients} at once: {dict(sorted(outcomes.items()))}, a load {np.median(took) * 1000:.0f} ms "
        f"median; overruns {after['overruns'] - before['overruns']} in {ticks} ticks; "
        f"lateness p99 {late['p99']:.1f} ms, max {late['max']:.1f} ms; e-stop answered "
        f"{'ok' if estop['ok'] else estop['error']} in {estop_ms:.1f} ms"
    )


BENCHES = {"estop": bench_estop, "fuzz": bench_fuzz, "files": bench_files, "kill": bench_kill}
BENCHES["status"] = bench_status
BENCHES["pipeline"] = bench_pipeline
BENCHES["replays"] = bench_replays

if __name__ == "__main__":
    for name in sys.argv[1:] or list(BENCHES):
        BENCHES[name]()
