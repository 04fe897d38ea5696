"""Videos of simulated runs: the files, the picture, the run unchanged, bad options."""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from gaits.sine import stand_pose
from plend.core.config import Config
from plend.daemon.headless import RunOptions, run
from plend.daemon.render import SKY, Camera, render
from plend.daemon.video import VideoOptions, VideoRecorder
from plend.hal.sim import SimHal
from plend.hal.sim_scene import CameraView
from plend.main import main as plend

cv2 = pytest.importorskip("cv2")
TIMING = {"wall_s", "sim_realtime_factor", "tick_compute_ms", "rate_hz", "video"}


def figures(summary: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in summary.items() if k not in TIMING}


def frames_of(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_filming_a_run_changes_none_of_its_figures(tmp_path: Path) -> None:
    options = RunOptions(speed=0.8, turn=0.3, duration_s=3.0, fast=True)
    plain = run(Config(), options)
    mp4 = run(Config(), RunOptions(**{**vars(options), "video": VideoOptions(tmp_path / "w.mp4")}))
    pictures = VideoOptions(tmp_path / "w.gif", renderer="pybullet", width=160, height=120, fps=10)
    gif = run(Config(), RunOptions(**{**vars(options), "video": pictures}))
    assert figures(mp4) == figures(plain) and figures(gif) == figures(plain)
    assert plain["distance_m"] > 0.05  # it walked: there was something to change
    ticks = int(plain["ticks"])  # 3 s of walking and the stop: one frame every other tick
    assert mp4["video"]["frames"] == math.ceil(ticks / 2)
    assert gif["video"]["frames"] == math.ceil(ticks / 5)


def test_the_mp4_holds_the_frames_at_the_size_asked(tmp_path: Path) -> None:
    path = tmp_path / "walk.mp4"
    summary = run(Config(), RunOptions(duration_s=2.0, fast=True, video=VideoOptions(path, 256, 192, 20.0)))
    frames = frames_of(path)
    assert len(frames) == summary["video"]["frames"] > 40
    assert frames[0].shape == (192, 256, 3)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) == pytest.approx(20.0)
    band = frames[10][:12].mean()  # the overlay's dark band with its text
    assert band < frames[10][40:60].mean() - 40


def test_the_gif_loops_at_the_frame_rate(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "walk.gif"
    summary = run(Config(), RunOptions(duration_s=1.0, fast=True, video=VideoOptions(path, fps=10.0)))
    with Image.open(path) as gif:
        frames = gif.n_frames  # type: ignore[attr-defined]  # a GIF's, not every image's
        assert (frames, gif.size) == (summary["video"]["frames"], (320, 240))
        assert gif.info["duration"] == 100 and gif.info["loop"] == 0


def test_the_robot_is_in_the_picture_and_the_camera_follows_it(tmp_path: Path) -> None:
    hal = SimHal(Config().sim, stand_pose())
    hal.open(0.02)
    try:
        truth = hal.truth()
        view = CameraView(target=truth.position, yaw_deg=-45.0, width=320, height=240)
        image = render(hal.scene(), view)
        camera = Camera(view)
        u, v = camera.to_pixels(camera.to_camera(np.array(truth.position)))
        assert abs(u - 160) < 1 and abs(v - 120) < 1  # looked at: the image centre
        torso = image[int(v) - 8 : int(v) + 8, int(u) - 8 : int(u) + 8]
        assert np.abs(torso.astype(int) - SKY).sum(axis=2).min() > 30  # not the background
        empty = render([], view)
        assert (image != empty).any(axis=2).sum() > 2000  # the robot covers a good patch
        picture = hal.render(view)  # PyBullet's own renderer sees it at the same place
        assert picture.shape == (240, 320, 3) and picture[110:130, 150:170].std() > 5
    finally:
        hal.close()
    path = tmp_path / "far.mp4"
    summary = run(
        Config(), RunOptions(speed=1.0, duration_s=8.0, fast=True, video=VideoOptions(path, overlay=False))
    )
    assert summary["distance_m"] > 0.4
    for frame in (frames_of(path)[0], frames_of(path)[-1]):  # still in the middle after half a metre
        robot = np.argwhere(frame.max(axis=2) < 110)  # the box edges: nothing else is that dark
        assert robot.size > 100
        assert abs(np.median(robot[:, 1]) - 160) < 40 and abs(np.median(robot[:, 0]) - 120) < 60


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--video", "{tmp}/walk.avi"], "give a file ending in .mp4 or .gif"),
        (["--video", "{tmp}/none/walk.mp4"], "its directory does not exist"),
        (["--video", "{tmp}/w.mp4", "--video-size", "33x9"], "video width 33 must be an even number"),
        (["--video", "{tmp}/w.mp4", "--video-size", "big"], "give WxH (e.g. 320x240)"),
        (["--video", "{tmp}/w.mp4", "--video-fps", "0"], "video fps 0.0 is out of range"),
        (["--video", "{tmp}/w.mp4", "--video-view", "0,-95,1"], "video pitch -95.0 deg is out of range"),
        (["--video", "{tmp}/w.mp4", "--video-view", "nan,-20,1"], "video yaw nan deg is out of range"),
        (
            ["--video", "{tmp}/w.gif", "--video-size", "1920x1920", "--video-fps", "60", "--duration", "3"],
            "film it as .mp4",
        ),
        (["--video", "{tmp}/w.mp4", "--hal", "hardware", "--bus", "emulated"], "run with --hal sim"),
    ],
)
def test_bad_video_options_are_one_line_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert plend(["run", "--fast", "--duration", "1", "--summary", "json", *argv]) == 2
    out, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1 and err.startswith("plend: error: ")
    assert out == ""
    assert not (tmp_path / "w.mp4").exists()


def test_video_needs_a_batch_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert plend(["run", "--no-socket", "--video", str(tmp_path / "w.mp4")]) == 2
    assert "add --fast" in capsys.readouterr().err
    assert plend(["evaluate", "--worlds", "1", "--video", str(tmp_path / "w.mp4")]) == 2
    assert "films and records nothing" in capsys.readouterr().err


def test_the_summary_names_the_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.mp4"
    assert plend(["run", "--fast", "--duration", "0.5", "--summary", "json", "--video", str(path)]) == 0
    video = json.loads(capsys.readouterr().out)["video"]
    assert video["path"] == str(path) and video["bytes"] == path.stat().st_size > 0


def test_a_video_is_written_beside_and_renamed_over_its_path(tmp_path: Path) -> None:
    """An older film is replaced whole, a link put at the path during the run is replaced
    rather than written through, and nothing is left beside it."""
    path, elsewhere = tmp_path / "w.gif", tmp_path / "elsewhere.gif"
    path.write_text("an older film")
    argv = ["run", "--fast", "--duration", "0.5", "--summary", "json", "--video", str(path)]
    argv += ["--video-size", "64x64", "--video-fps", "5"]
    opened = VideoRecorder.open

    def open_then_link(recorder: VideoRecorder) -> None:
        opened(recorder)
        path.unlink()
        path.symlink_to(elsewhere)  # after the checks, before the film is written

    elsewhere.write_text("not to be touched")
    with mock.patch.object(VideoRecorder, "open", open_then_link):
        assert plend(argv) == 0
    assert elsewhere.read_text() == "not to be touched"
    assert path.read_bytes().startswith(b"GIF8") and not path.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.gif", "w.gif"]
