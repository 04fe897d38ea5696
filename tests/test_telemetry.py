"""Tick recordings: what a reader of the MCAP file gets back, and how the recorder refuses."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcap.reader import make_reader

from plend.control import telemetry
from plend.control.telemetry import Recorder, RecordingError, TickRecord
from plend.core.errors import PlendError
from plend.hal.base import ImuReading
from plend.model.robot import JOINT_NAMES, NUM_JOINTS

WALL = 1_700_000_000.25  # a fixed wall clock, seconds since the epoch


def tick(i: int, rng: np.random.Generator | None = None) -> TickRecord:
    """A tick whose every field differs from the next one's; odd ticks are relaxed."""
    rng = rng or np.random.default_rng(i)
    measured = rng.uniform(-1.5, 1.5, NUM_JOINTS)
    measured[i % NUM_JOINTS] = math.nan  # a servo that did not answer
    imu = ImuReading((1.0, 0.0, 0.0, 0.0), (0.01 * i, -0.02, 0.5), (0.1, 0.2, -0.3), (0.0, 0.1, 9.81))
    return TickRecord(
        t=100.0 + 0.01 * i,
        mode="sine" if i % 2 == 0 else "relax",
        targets=rng.uniform(-1.0, 1.0, NUM_JOINTS) if i % 2 == 0 else None,
        measured=measured,
        imu=imu,
        contacts=(i % 3 == 0, i % 5 == 0),
        compute_ms=0.5 + i,
        lateness_ms=0.01 * i,
        overruns=i // 10,
        faults=("servo 3 timeout",) if i % 4 == 0 else (),
    )


def expected_json(r: TickRecord) -> dict[str, Any]:
    def nums(names: Any, values: Any) -> dict[str, float | None]:
        return {n: None if math.isnan(v) else float(v) for n, v in zip(names, values, strict=True)}

    return {
        "t": r.t,
        "mode": r.mode,
        "targets": None if r.targets is None else nums(JOINT_NAMES, r.targets),
        "measured": nums(JOINT_NAMES, r.measured),
        "imu": {
            "quat": nums("wxyz", r.imu.quat),
            "euler": nums(("roll", "pitch", "yaw"), r.imu.euler),
            "gyro": nums("xyz", r.imu.gyro),
            "accel": nums("xyz", r.imu.accel),
        },
        "contacts": {"right": r.contacts[0], "left": r.contacts[1]},
        "compute_ms": r.compute_ms,
        "lateness_ms": r.lateness_ms,
        "overruns": r.overruns,
        "faults": list(r.faults),
    }


def read(path: Path) -> list[tuple[Any, Any, Any]]:
    """Every (schema, channel, message) in the file, read the way Foxglove's loaders do."""
    with path.open("rb") as f:
        reader = make_reader(f)
        assert reader.get_summary() is not None  # finished: the footer points at a summary
        return list(reader.iter_messages())


def ticks_in(path: Path) -> list[Any]:
    return [m for _, c, m in read(path) if c.topic == "/plend/tick"]


def recorder(tmp_path: Path, **kwargs: Any) -> Recorder:
    return Recorder(tmp_path / "rec", wall_clock=lambda: WALL, **kwargs)


def test_a_recording_reads_back_every_tick_as_submitted(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    path = rec.start("run.mcap")
    writers = [t for t in threading.enumerate() if t.name == "plend-telemetry"]
    assert len(writers) == 1 and writers[0].daemon
    assert rec.status()["recording"] and rec.status()["path"] == str(path)
    records = [tick(i) for i in range(50)]
    for r in records:
        rec.submit(r)
    result = rec.stop()

    assert result == {
        "path": str(path),
        "written": 50,
        "dropped": 0,
        "bytes": path.stat().st_size,
        "capped": False,
        "error": None,
    }
    assert rec.status() == {"recording": False, **result}
    assert not any(t.name == "plend-telemetry" for t in threading.enumerate())
    messages = read(path)
    assert [c.topic for _, c, _ in messages] == ["/plend/info"] + ["/plend/tick"] * 50
    info_schema, info_channel, info = messages[0]
    assert (info_schema.name, info_schema.encoding, info_channel.message_encoding) == (
        "plend.Info",
        "jsonschema",
        "json",
    )
    info_data = json.loads(info.data)
    assert info_data["format"] == 2 and info_data["joint_names"] == list(JOINT_NAMES)
    assert info_data["hal"] == "sim" and info_data["units"]["imu.gyro"] == "rad/s"
    for (schema, channel, message), r in zip(messages[1:], records, strict=True):
        assert (schema.name, schema.encoding, channel.message_encoding) == (
            "plend.Tick",
            "jsonschema",
            "json",
        )
        assert json.loads(message.data) == expected_json(r)
        # Stamps follow the loop clock from the first tick, anchored at the wall clock of start().
        assert message.log_time == message.publish_time == round(WALL * 1e9) + round((r.t - 100.0) * 1e9)
    declared = json.loads(messages[1][0].data)
    assert set(declared["properties"]) == set(expected_json(records[0]))


def test_default_file_name_is_timestamped_in_the_directory(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    assert not (tmp_path / "rec").exists()  # the constructor does no I/O
    path = rec.start()
    rec.stop()
    assert path == tmp_path / "rec" / time.strftime("plend-%Y%m%d-%H%M%S.mcap", time.localtime(WALL))
    assert [c.topic for _, c, _ in read(path)] == ["/plend/info"]


def test_starting_twice_refuses_and_keeps_the_first_recording(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    first = rec.start("a.mcap")
    with pytest.raises(RecordingError, match="already running") as err:
        rec.start("b.mcap")
    assert str(first) in str(err.value)
    assert not (tmp_path / "rec" / "b.mcap").exists()
    rec.submit(tick(0))
    assert rec.stop()["written"] == 1


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "rec" / "keep.mcap"
    out.parent.mkdir()
    out.write_bytes(b"an earlier recording")
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match="already exists") as err:
        rec.start(out)
    assert str(out) in str(err.value)
    assert out.read_bytes() == b"an earlier recording"
    assert rec.status()["recording"] is False


def test_an_unwritable_place_refuses_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "file").write_text("not a directory")
    out = tmp_path / "rec" / "file"
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match="cannot create") as err:
        rec.start("file/x.mcap")
    assert isinstance(err.value, PlendError) and isinstance(err.value, OSError)
    assert str(out) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RecordingError, match="cannot create"):
        Recorder(out).start()  # the default directory is a regular file
    assert rec.start("ok.mcap") == tmp_path / "rec" / "ok.mcap"  # a refusal leaves it usable
    rec.close()


def test_stop_without_a_recording_refuses_and_close_is_idempotent(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match="no recording is running"):
        rec.stop()
    rec.close()
    path = rec.start("c.mcap")
    rec.close()
    rec.close()
    assert rec.status()["recording"] is False
    assert [c.topic for _, c, _ in read(path)] == ["/plend/info"]


def test_the_size_cap_keeps_the_file_readable(tmp_path: Path) -> None:
    max_bytes, submitted = 64 * 1024, 3000
    rec = recorder(tmp_path, max_bytes=max_bytes, queue_size=submitted)  # drops come from the cap only
    path = rec.start("capped.mcap")
    rng = np.random.default_rng(0)
    for i in range(submitted):
        rec.submit(tick(i, rng))
    result = rec.stop()

    assert result["capped"] and result["dropped"] > 0
    assert result["written"] + result["dropped"] == submitted
    one_message = len(json.dumps(expected_json(tick(0))))
    assert path.stat().st_size == result["bytes"] <= max_bytes + one_message
    assert len(ticks_in(path)) == result["written"] > 0


def test_submit_never_blocks_while_the_writer_is_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    encode = telemetry._encode_tick

    def stuck(record: TickRecord) -> bytes:
        entered.set()
        release.wait(30.0)  # a bound, so a blocking submit fails the counts below instead of hanging
        return encode(record)

    monkeypatch.setattr(telemetry, "_encode_tick", stuck)
    queue_size = 16
    rec = recorder(tmp_path, queue_size=queue_size)
    path = rec.start("stuck.mcap")
    rec.submit(tick(0))
    assert entered.wait(30.0)  # the writer holds tick 0 and takes no more
    for i in range(1, queue_size + 101):
        rec.submit(tick(i))
    assert rec.status()["dropped"] == 100
    release.set()
    result = rec.stop()
    assert (result["written"], result["dropped"]) == (queue_size + 1, 100)
    assert len(ticks_in(path)) == queue_size + 1


def test_a_failing_writer_still_leaves_a_readable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(record: TickRecord) -> bytes:
        raise ValueError("cannot encode")

    monkeypatch.setattr(telemetry, "_encode_tick", broken)
    rec = recorder(tmp_path)
    path = rec.start("broken.mcap")
    rec.submit(tick(0))
    with pytest.raises(RecordingError, match="failed") as err:
        rec.stop()
    assert str(path) in str(err.value)
    assert [c.topic for _, c, _ in read(path)] == ["/plend/info"]
    assert rec.status()["dropped"] == 1 and rec.status()["recording"] is False


def test_submit_when_not_recording_does_nothing(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.submit(tick(0))
    assert rec.status() == {
        "recording": False,
        "path": None,
        "written": 0,
        "dropped": 0,
        "bytes": 0,
        "capped": False,
        "error": None,
    }
    assert not (tmp_path / "rec").exists()
    path = rec.start()
    rec.submit(tick(1))
    done = rec.stop()
    rec.submit(tick(2))
    assert rec.status() == {"recording": False, **done} and done["written"] == 1
    assert len(ticks_in(path)) == 1


# -- where recordings may go ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../escape.mcap", "'..'"),
        ("sub/../../escape.mcap", "'..'"),
        ("{tmp}/escape.mcap", "recordings go in"),  # absolute, outside the recordings
        ("calibration.json", "ends in .mcap"),
        ("", "not a usable recording name"),
        ("a\nfaults    none.mcap", "no newlines or control characters"),
        ("bell\x07.mcap", "no newlines or control characters"),
    ],
)
def test_recordings_stay_in_their_directory(tmp_path: Path, name: str, fragment: str) -> None:
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match=fragment.replace(".", r"\.")):
        rec.start(name.format(tmp=tmp_path))
    assert rec.status()["recording"] is False and rec.faults() == []
    assert not (tmp_path / "escape.mcap").exists()


def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "out").symlink_to(outside)
    (tmp_path / "rec" / "link.mcap").symlink_to(outside / "target.mcap")
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match="symbolic link"):
        rec.start("out/x.mcap")
    with pytest.raises(RecordingError, match="already exists"):
        rec.start("link.mcap")  # never written through a link
    assert list(outside.iterdir()) == []


def test_a_path_inside_the_directory_is_made_and_group_readable(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    path = rec.start(str(tmp_path / "rec" / "day1" / "walk.mcap"))
    rec.stop()
    assert path == tmp_path / "rec" / "day1" / "walk.mcap"
    assert path.stat().st_mode & 0o777 == 0o640
    assert rec.start("day1/run.mcap") == tmp_path / "rec" / "day1" / "run.mcap"
    rec.close()


# -- crashes and full disks ------------------------------------------------------------------


def read_unfinished(path: Path) -> list[Any]:
    """Tick messages of a file that may lack its summary, read by the standard reader."""
    with path.open("rb") as f:
        return [m for _, c, m in make_reader(f).iter_messages() if c.topic == "/plend/tick"]


def test_the_file_is_readable_while_recording_and_commits_every_half_second(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    path = rec.start("live.mcap")
    for i in range(40):
        rec.submit(tick(i))
    time.sleep(telemetry.COMMIT_PERIOD_S * 3)
    assert len(read_unfinished(path)) == 40, "committed without waiting for a full chunk or the stop"
    rec.stop()
    assert len(ticks_in(path)) == 40


_KILLED_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from plend.control.telemetry import Recorder
from tests.test_telemetry import tick
rec = Recorder(Path(sys.argv[1]))
rec.start("killed.mcap")
i = 0
while True:
    rec.submit(tick(i))
    i += 1
    if i == 100:
        print("100", flush=True)
    time.sleep(0.005)
"""


def test_a_killed_recorder_leaves_a_readable_file(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), str(root)], stdout=subprocess.PIPE, cwd=root
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"100\n"
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    ticks = read_unfinished(tmp_path / "killed.mcap")
    assert len(ticks) >= 100, "at most the last commit period is lost"
    assert [json.loads(m.data)["t"] for m in ticks] == [tick(i).t for i in range(len(ticks))]


def _full_disk(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> None:
    """Make the recordings' disk full once ``after_bytes`` have been written."""
    import errno
    import os

    from plend.core import mcapfile

    real = os.pwrite

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if offset + len(data) > after_bytes:
            room = max(0, after_bytes - offset)
            if room == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, bytes(data)[:room], offset)
        return real(fd, data, offset)

    monkeypatch.setattr(mcapfile.os, "pwrite", pwrite)


def test_a_full_disk_ends_the_recording_with_a_fault_and_a_readable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recorder(tmp_path)
    path = rec.start("full.mcap")
    for i in range(20):
        rec.submit(tick(i))
    time.sleep(telemetry.COMMIT_PERIOD_S * 3)
    _full_disk(monkeypatch, path.stat().st_size + 100)
    for i in range(20, 40):
        rec.submit(tick(i))
    deadline = time.monotonic() + 10
    while rec.recording and time.monotonic() < deadline:
        time.sleep(0.05)
    status = rec.status()
    assert status["recording"] is False and status["error"] == "No space left on device"
    assert status["bytes"] == path.stat().st_size, "the size said is what the file holds"
    assert [f["code"] for f in rec.faults()] == ["recording"]
    assert "No space left on device" in rec.faults()[0]["message"]
    rec.submit(tick(99))  # the loop may still offer ticks: nothing happens
    assert [json.loads(m.data)["t"] for m in read_unfinished(path)] == [tick(i).t for i in range(20)]
    with pytest.raises(RecordingError, match="No space left on device"):
        rec.stop()
    assert rec.faults() == []
    monkeypatch.undo()
    assert rec.start("after.mcap").exists(), "a failed recording does not block the next one"
    rec.close()


def test_starting_on_a_full_disk_is_refused_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _full_disk(monkeypatch, 0)
    rec = recorder(tmp_path)
    with pytest.raises(RecordingError, match="No space left on device") as caught:
        rec.start("none.mcap")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "rec" / "none.mcap").exists()
    assert rec.status()["recording"] is False


def test_starting_with_almost_no_space_left_is_refused_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recorder(tmp_path)
    (tmp_path / "rec").mkdir(exist_ok=True)
    real = os.statvfs(tmp_path)
    almost_full = os.statvfs_result((*real[:4], 3, *real[5:]))  # three blocks free
    monkeypatch.setattr(os, "statvfs", lambda path: almost_full)
    with pytest.raises(RecordingError, match=r"KiB free in .* free some space") as caught:
        rec.start("none.mcap")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "rec" / "none.mcap").exists()


def test_a_real_full_disk(tmp_path: Path) -> None:
    """On a 2 MiB tmpfs (needs root; skipped elsewhere)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    rec = Recorder(disk, queue_size=100_000)
    try:
        path = rec.start("fill.mcap")
        rng = np.random.default_rng(0)
        for i in range(10_000):  # 3.7 MB of random, incompressible ticks: more than 2 MiB
            rec.submit(tick(i, rng))
        deadline = time.monotonic() + 30
        while rec.recording and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rec.status()["error"] == "No space left on device"
        written = len(read_unfinished(path))
        assert 0 < written < 10_000
        with pytest.raises(RecordingError, match="No space left on device"):
            rec.stop()
        assert sorted(p.name for p in disk.iterdir()) == ["fill.mcap"]
    finally:
        rec.close()
        subprocess.run(["umount", str(disk)], check=False)
