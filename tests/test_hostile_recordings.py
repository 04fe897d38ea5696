"""Recordings and replay files made to hurt: what expands to gigabytes, takes long to parse,
nests deeper than the interpreter goes, holds numbers no float holds, or is no file at all.
Each is refused (or its bad parts left out) in one line, within bounded memory, and plot
and export never write through a link or over a file."""

from __future__ import annotations

import json
import os
import struct
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plend.cli.recording import ReadLimits, RecordingReadError, read
from plend.control.trajectory import TrajectoryError, load_trajectory
from plend.core.config import LimitsConfig, SafetyConfig
from plend.main import main as plend
from plend.model.robot import JOINT_NAMES

LOWER, UPPER = SafetyConfig().joint_limits()
MIB = 2**20


# -- crafting -----------------------------------------------------------------------------


def tick(t: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A format-2 tick with every joint at 0.1 rad; ``fields`` replace its own."""
    joints = dict.fromkeys(JOINT_NAMES, 0.1)
    xyz = {"x": 0.0, "y": 0.0, "z": 0.0}
    return {
        "t": t, "mode": "stand", "targets": joints, "measured": joints,
        "imu": {"euler": {"roll": 0.0, "pitch": 0.0, "yaw": 0.0}, "gyro": xyz, "accel": xyz},
        "contacts": {"right": True, "left": True}, "compute_ms": 1.0, "lateness_ms": 0.1, "overruns": 0,
        "faults": [], **fields,
    }  # fmt: skip


def info(**fields: Any) -> bytes:
    return json.dumps({"format": 2, "joint_names": list(JOINT_NAMES), "rate_hz": 50.0, **fields}).encode()


def recording(
    path: Path, ticks: list[bytes | dict[str, Any]], head: bytes | None = None, **writer: Any
) -> Path:
    """A recording as plend's writer makes it (zstd chunks unless ``writer`` says else)."""
    from mcap.writer import Writer

    with path.open("wb") as f:
        out = Writer(f, **writer)
        out.start()
        schema = out.register_schema("x", "jsonschema", b"{}")
        channels = {
            topic: out.register_channel(topic, "json", schema) for topic in ("/plend/info", "/plend/tick")
        }
        out.add_message(channels["/plend/info"], 0, head if head is not None else info(), 0)
        for k, message in enumerate(ticks):
            data = message if isinstance(message, bytes) else json.dumps(message).encode()
            out.add_message(channels["/plend/tick"], k + 1, data, k + 1)
        out.finish()
    return path


def message_record(channel: int, body_size: int) -> bytes:
    """The head of a message record whose body is ``body_size`` bytes."""
    return struct.pack("<BQHIQQ", 0x05, 22 + body_size, channel, 0, 0, 0)


def zstd_chunk(parts: list[bytes | int], stated: int | None = None) -> Any:
    """A zstd chunk of ``parts`` (an int: that many spaces, compressed as they are made, so
    gigabytes cost nothing), stating ``stated`` bytes (by default, what it holds)."""
    import zstandard
    from mcap.records import Chunk

    compressor = zstandard.ZstdCompressor().compressobj()
    out, size = [], 0
    for part in parts:
        pieces = [part] if isinstance(part, bytes) else [b" " * MIB] * (part // MIB) + [b" " * (part % MIB)]
        for piece in pieces:
            out.append(compressor.compress(piece))
            size += len(piece)
    out.append(compressor.flush())
    return Chunk(compression="zstd", data=b"".join(out), message_start_time=0, message_end_time=0,
                 uncompressed_crc=0, uncompressed_size=size if stated is None else stated)  # fmt: skip


def mcap_file(path: Path, *chunks: Any) -> Path:
    """An MCAP file: info and tick channels (ids 1, 2), an info message, then ``chunks``."""
    from mcap.data_stream import RecordBuilder
    from mcap.records import Channel, DataEnd, Footer, Header, Message
    from mcap.writer import MCAP0_MAGIC

    builder = RecordBuilder()
    Header(profile="", library="hostile").write(builder)
    Channel(id=1, topic="/plend/info", message_encoding="json", metadata={}, schema_id=0).write(builder)
    Channel(id=2, topic="/plend/tick", message_encoding="json", metadata={}, schema_id=0).write(builder)
    Message(channel_id=1, sequence=0, log_time=0, publish_time=0, data=info()).write(builder)
    for chunk in chunks:
        chunk.write(builder)
    DataEnd(0).write(builder)
    Footer(0, 0, 0).write(builder)
    path.write_bytes(MCAP0_MAGIC + bytes(builder.end()) + MCAP0_MAGIC)
    return path


def tick_chunk(*ticks: dict[str, Any]) -> Any:
    parts: list[bytes | int] = []
    for t in ticks:
        body = json.dumps(t).encode()
        parts += [message_record(2, len(body)), body]
    return zstd_chunk(parts)


def bomb(size: int, stated: int | None = None, channel: int = 2) -> Any:
    """A chunk holding one message of ``size`` bytes, mostly spaces (by default a tick)."""
    head, tail = b'{"t": 0, "mode": "', b'"}'
    return zstd_chunk([message_record(channel, len(head) + size + len(tail)), head, size, tail], stated)


def replay(path: Path, limits: LimitsConfig | None = None, source: str = "targets") -> Any:
    return load_trajectory(path, None, LOWER, UPPER, 9.0, limits, source=source)


def refused_replay(path: Path, fragment: str, limits: LimitsConfig | None = None) -> str:
    with pytest.raises(TrajectoryError) as caught:
        replay(path, limits)
    message = str(caught.value)
    assert fragment in message and str(path) in message and "\n" not in message, message
    return message


def one_line(capsys: pytest.CaptureFixture[str], fragment: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("plend: error: ") and "\n" not in err and "Traceback" not in err, err
    assert fragment in err, err
    return err


def peak_bytes(call: Callable[[], object]) -> int:
    """The most memory Python held while ``call()`` ran (it may raise)."""
    tracemalloc.start()
    try:
        call()
    except Exception:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- 1. what a file expands to ---------------------------------------------------------------


def test_a_chunk_that_would_expand_past_the_limit_is_refused_before_it_is_decompressed(
    tmp_path: Path,
) -> None:
    small = LimitsConfig(max_trajectory_bytes=MIB)  # its chunks may hold 8 MiB
    path = mcap_file(tmp_path / "bomb.mcap", tick_chunk(tick(0.0)), bomb(64 * MIB))
    assert path.stat().st_size < 64 * 1024
    assert peak_bytes(lambda: replay(path, small)) < 8 * MIB
    message = refused_replay(path, "holds more than 8.0 MiB once decompressed", small)
    assert "(8 x limits.max_trajectory_bytes); raise limits.max_trajectory_bytes if you trust it" in message


def test_what_a_chunk_states_is_checked_before_a_byte_is_decompressed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = mcap_file(tmp_path / "big.mcap", bomb(1000, stated=2**30))  # states 1 GiB, holds 1 KB
    refused_replay(path, "(8 x limits.max_trajectory_bytes)")
    assert plend(["export", str(path)]) == 2
    one_line(capsys, "a chunk of it states 1.0 GiB once decompressed, over the 64.0 MiB a chunk may hold")
    assert not path.with_suffix(".csv").exists()


def test_plot_and_export_bound_what_the_chunks_hold_by_the_recording_size_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "small.toml"
    config.write_text("[telemetry]\nmax_bytes = 65536\n")  # chunks may hold 512 KiB
    other = (bomb(200_000, channel=9) for _ in range(3))  # on a channel plend does not read
    path = mcap_file(tmp_path / "many.mcap", tick_chunk(tick(0.0), tick(0.02)), *other)
    for command in ("export", "plot"):
        assert plend(["--config", str(config), command, str(path)]) == 2
        one_line(capsys, "holds more than 512.0 KiB once decompressed (8 x telemetry.max_bytes)")
    assert plend(["export", str(path)]) == 0  # within the default limit


def test_a_chunk_that_holds_more_than_it_states_is_damage_and_stops_there(tmp_path: Path) -> None:
    path = mcap_file(tmp_path / "liar.mcap", tick_chunk(tick(0.0), tick(0.02)), bomb(64 * MIB, stated=1000))
    assert peak_bytes(lambda: read(path)) < 4 * MIB
    rec = read(path)
    assert len(rec.t) == 2 and "holds more than the size it states" in rec.problems[0]


def test_lz4_and_uncompressed_recordings_read_like_zstd_ones(tmp_path: Path) -> None:
    from mcap.writer import CompressionType

    ticks: list[bytes | dict[str, Any]] = [tick(k * 0.02) for k in range(300)]
    zstd = read(recording(tmp_path / "zstd.mcap", ticks, chunk_size=4096))
    for compression in (CompressionType.LZ4, CompressionType.NONE):
        other = read(recording(tmp_path / f"{compression.name}.mcap", ticks, compression=compression,
                               chunk_size=4096))  # fmt: skip
        assert other.problems == [] and np.array_equal(other.t, zstd.t)
        assert np.array_equal(other.targets, zstd.targets)


# -- 2. what takes long to parse --------------------------------------------------------------


def test_a_tick_larger_than_any_plend_writes_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    huge = b'{"t": 0, "targets": [' + b"0.1," * 1_000_000 + b"0.1]}"  # 4 MB: 860 ms of json.loads
    path = recording(tmp_path / "huge.mcap", [tick(0.0), huge])
    refused_replay(path, "/plend/tick message 1 is 3.8 MiB, over the 64.0 KiB a plend message may take")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        (
            "targets",
            [0.1] * (len(JOINT_NAMES) + 1),
            "its targets holds 19 values where a plend recording has 18",
        ),
        ("measured", [0.1] * 3, "its measured holds 3 values where"),
        ("targets", {f"j{k}": 0.1 for k in range(100)}, "its targets holds 100 values"),
        ("imu", {"gyro": [0.0] * 4}, "its imu.gyro holds 4 values where a plend recording has 3"),
    ],
)
def test_a_joint_array_of_the_wrong_length_refuses_the_file_naming_the_message(
    tmp_path: Path, field: str, value: Any, fragment: str
) -> None:
    path = recording(tmp_path / "wrong.mcap", [tick(0.0), tick(0.02), tick(0.04, **{field: value})])
    message = refused_replay(path, f"/plend/tick message 2: {fragment}")
    assert message.endswith("it is damaged or no plend recording")


def test_joint_names_past_any_robot_refuse_the_file(tmp_path: Path) -> None:
    names = [f"j{k}" for k in range(5000)]
    path = recording(tmp_path / "names.mcap", [tick(0.0)], head=info(joint_names=names))
    refused_replay(path, "its info names 5000 joints")


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("1" * 15_000_000, "line 3 is longer than 4096 bytes; a row holds one number per joint"),
        ("0." + "1" * 60, "sample 0 (line 3) holds a value of more than 40 characters"),
        ("-1_0", "sample 0 (line 3) holds a '_'; write numbers without digit separators"),
    ],
    ids=["15 million digits", "60 digits", "underscore"],
)
def test_csv_numbers_no_one_writes_are_refused_by_line(tmp_path: Path, row: str, fragment: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"# rate_hz: 50\ntorso_r_shoulder\n{row}\n")
    refused_replay(path, fragment)


def test_an_underscore_in_the_rate_is_no_number(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("# rate_hz: 5_0\ntorso_r_shoulder\n0.1\n")
    refused_replay(path, "the rate on its first line is not a number")


def test_a_csv_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf# rate_hz: 50\r\ntorso_r_shoulder\r\n0.1\r\n0.2\r\n")
    traj = replay(path)
    assert traj.rate_hz == 50.0 and traj.joints == ("torso_r_shoulder",)
    assert traj.positions[:, 0].tolist() == [0.1, 0.2]
    header_first = tmp_path / "h.csv"
    header_first.write_bytes(b"\xef\xbb\xbftorso_r_shoulder\n0.1\n")
    assert load_trajectory(header_first, 50.0, LOWER, UPPER, 9.0).joints == ("torso_r_shoulder",)


@pytest.mark.filterwarnings("ignore:Stored array in format 2.0")
def test_an_npy_with_thousands_of_fields_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.zeros(3, dtype=[(f"f{k}", float) for k in range(5000)]))
    message = refused_replay(path, "its NPY header is")
    assert "more than the 10000 a trajectory's needs" in message and "one float each" in message


# -- 3. what the interpreter cannot hold --------------------------------------------------------

DEEP = b"[" * 30_000 + b"]" * 30_000  # within the 64 KiB a message may take
NASTY: dict[str, bytes] = {
    "nested deeper than the interpreter goes": DEEP,
    "1e999 overruns": json.dumps(tick(0.0, overruns=1e999)).encode(),
    "4000-digit overruns": json.dumps(tick(0.0, overruns=10**3999)).encode(),
    "5000-digit time": json.dumps(tick(0.0))[:-1].encode() + b', "t": ' + b"9" * 5000 + b"}",
    "NaN time": json.dumps(tick(float("nan"))).encode(),
    "infinite angle": json.dumps(tick(0.0, measured={"r_knee_r_shin": float("inf")})).encode(),
    "a 4000-digit angle": json.dumps(tick(0.0))[:-1].encode() + b', "compute_ms": ' + b"7" * 4000 + b"}",
    "a compute time past any clock": json.dumps(tick(0.0, compute_ms=1e308)).encode(),
    "string angle": json.dumps(tick(0.0, targets={"r_knee_r_shin": "0.1"})).encode(),
    "fault list of a dict": json.dumps(tick(0.0, faults={"a": 1})).encode(),
    "mode with a newline": json.dumps(tick(0.0, mode="stand\nTraceback")).encode(),
}


@pytest.mark.parametrize("command", ["export", "plot"])
@pytest.mark.parametrize("body", NASTY.values(), ids=NASTY.keys())
def test_ticks_no_plend_wrote_are_left_out_and_a_file_of_only_those_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, body: bytes
) -> None:
    path = recording(tmp_path / "nasty.mcap", [body, body])
    assert plend([command, str(path)]) == 2
    one_line(capsys, f"{path}: no readable tick in it (2 tick messages could not be read and were left out)")
    assert not path.with_suffix(".csv").exists() and not path.with_suffix(".png").exists()
    rec = read(recording(tmp_path / "mixed.mcap", [tick(0.0), body, tick(0.02)]))
    assert len(rec.t) == 2 and rec.problems == ["1 tick messages could not be read and were left out"]


def test_ticks_out_of_time_order_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ticks: list[bytes | dict[str, Any]] = [
        tick(k * 1e-6, mode="stand" if k % 2 else "sine") for k in range(50)
    ]
    path = recording(tmp_path / "order.mcap", [*ticks, tick(-9e11, faults=["a"]), tick(9e11, faults=["b"])])
    assert plend(["plot", str(path)]) == 0 and path.with_suffix(".png").stat().st_size > 10_000


def test_an_info_message_no_plend_wrote_is_a_note(tmp_path: Path) -> None:
    for head in (DEEP, b'{"format": ' + b"9" * 5000 + b"}"):
        rec = read(recording(tmp_path / "info.mcap", [tick(0.0), tick(0.02)], head=head))
        assert "its info message is not JSON" in rec.problems and rec.rate_hz() == pytest.approx(50.0)
        (tmp_path / "info.mcap").unlink()
    odd = info(format=10**300, plend="9\n" * 100, hal=["sim"], rate_hz=1e999)
    rec = read(
        recording(tmp_path / "odd.mcap", [tick(0.0), tick(0.02)], head=odd.replace(b"Infinity", b"1e999"))
    )
    assert rec.format == 1 and rec.rate_hz() == pytest.approx(50.0)  # not infinity: from the ticks' spacing


def test_export_refuses_a_rate_no_one_can_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = info(rate_hz=0).replace(b'"rate_hz": 0', b'"rate_hz": 1e999')
    path = recording(tmp_path / "rate.mcap", [tick(1.0), tick(1.0)], head=head)  # no spacing either
    assert plend(["export", str(path)]) == 2
    one_line(capsys, "its control rate is not known")
    assert not path.with_suffix(".csv").exists()


def test_the_daemon_refuses_a_rate_it_cannot_play(tmp_path: Path) -> None:
    path = recording(tmp_path / "rate.mcap", [tick(1.0), tick(1.0)], head=info(rate_hz=-1))
    refused_replay(path, "rate nan Hz is out of range")


# -- 4. what is no file -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["export", "plot"])
def test_a_fifo_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    fifo = tmp_path / "fifo.mcap"
    os.mkfifo(fifo)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(plend([command, str(fifo)])), daemon=True)
    runner.start()
    runner.join(timeout=20)
    assert not runner.is_alive(), f"plend {command} waits on a FIFO"
    assert codes == [2]
    one_line(capsys, "is a FIFO (named pipe), not a regular file")


def test_a_recording_larger_than_a_recording_may_be_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sparse.mcap"
    with path.open("wb") as f:
        f.truncate(300 * MIB)
    assert plend(["export", str(path)]) == 2
    one_line(capsys, "300.0 MiB, over the 200.0 MiB limit (telemetry.max_bytes)")
    with pytest.raises(RecordingReadError, match=r"over the 1\.0 MiB limit"):
        read(path, limits=ReadLimits(MIB))


# -- 5. where plot and export write ---------------------------------------------------------------


@pytest.fixture
def rec_path(tmp_path: Path) -> Path:
    return recording(tmp_path / "walk.mcap", [tick(k * 0.02) for k in range(10)])


@pytest.mark.parametrize("command", ["plot", "export"])
def test_an_existing_output_or_a_link_is_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rec_path: Path, command: str
) -> None:
    suffix = ".png" if command == "plot" else ".csv"
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    taken, link, dangling = (tmp_path / f"{name}{suffix}" for name in ("taken", "link", "dangling"))
    taken.write_text("mine")
    link.symlink_to(mine)
    dangling.symlink_to(tmp_path / f"made{suffix}")
    for out, fragment in (
        (taken, "already exists"),
        (link, "is a symbolic link"),
        (dangling, "is a symbolic link"),
    ):
        assert plend([command, str(rec_path), "-o", str(out)]) == 2
        one_line(capsys, f"-o {out} {fragment}; choose another file name")
    assert mine.read_text() == "mine" and taken.read_text() == "mine"
    assert not (tmp_path / f"made{suffix}").exists()


def test_plot_writes_a_new_file_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rec_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "walk.svg"
    assert plend(["plot", str(rec_path), "-o", str(out)]) == 0
    assert out.read_bytes().lstrip().startswith(b"<?xml")
    assert plend(["plot", str(rec_path), "-o", str(out)]) == 2
    one_line(capsys, "already exists")


def test_a_video_is_never_written_through_a_link(tmp_path: Path) -> None:
    import argparse

    from plend.cli.recording_cli import video_options
    from plend.core.errors import ConfigError

    (tmp_path / "link.gif").symlink_to(tmp_path / "elsewhere.gif")
    (tmp_path / "folder.gif").mkdir()
    (tmp_path / "again.gif").write_text("an older film")
    for name in ("link.gif", "folder.gif", "again.gif"):
        args = argparse.Namespace(video=tmp_path / name, video_size="64x64", video_view="0,0,1",
                                  video_fps=5.0, video_renderer="boxes")  # fmt: skip
        if name == "again.gif":  # filmed over, as the README remakes docs/walk.gif
            assert video_options(args).path == tmp_path / name
            continue
        with pytest.raises(ConfigError, match="is a symbolic link or not a regular file"):
            video_options(args)
    assert not (tmp_path / "elsewhere.gif").exists()


def test_more_ticks_than_a_replay_may_have_are_refused_as_they_are_read(tmp_path: Path) -> None:
    path = recording(tmp_path / "long.mcap", [tick(k * 0.02) for k in range(101)])
    refused_replay(path, "more than the 100 ticks allowed (limits.max_trajectory_samples)",
                   LimitsConfig(max_trajectory_samples=100))  # fmt: skip
    assert len(replay(path, LimitsConfig(max_trajectory_samples=101)).positions) == 101
