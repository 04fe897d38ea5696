"""The camera tracker: accuracy on the emulated camera, bad scenes, the camera
calibration file and procedure, the command line and its recording."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("pybullet")

from calibration.camera import (  # noqa: E402
    CameraCalibrationError,
    board_points,
    fit_intrinsics,
    load,
    measure_floor,
    save,
)
from plend.core.config import Config, from_dict  # noqa: E402
from plend.main import main  # noqa: E402
from plend.track.detect import Lost, Measurement, make_tracker  # noqa: E402
from plend.track.emulated import EmulatedCamera  # noqa: E402
from plend.track.geometry import Pose  # noqa: E402
from plend.track.rehearse import rehearse  # noqa: E402

STANDING = Pose.from_euler((0.2, 0.01, 0.15), (0.02, -0.03, 0.3))


def camera(**emulated: object) -> tuple[Config, EmulatedCamera]:
    config = from_dict({"track": {"emulated": emulated}})
    return config, EmulatedCamera(config.track)


def error_mm(observation: Measurement, truth: Pose) -> float:
    return 1000 * float(np.linalg.norm(np.asarray(observation.position) - truth.t))


def test_a_walk_filmed_by_the_emulated_camera_is_measured_within_the_targets() -> None:
    config = Config()
    result = rehearse(config, 0.5, 4.0)
    # A frame at the detector's edge (the marker tilted and blurred mid-step) may be
    # reported lost, never guessed: at most one of the 4 s walk's 121.
    assert result["lost"] <= 1 and result["poses"] >= 118
    assert result["position_error_mm"]["p95"] <= 5.0
    assert result["yaw_error_deg"]["p95"] <= 1.0
    assert abs(result["distance_m"] - result["truth"]["distance_m"]) < 0.005
    assert result["distance_m"] > 0.05 and not result["fell"]


def test_two_markers_with_the_robot_id_give_no_pose() -> None:
    config, cam = camera(noise_sigma=0.0)
    tracker = make_tracker(config.track, cam.model())
    image = cam.render(STANDING)
    copy = cam.render(Pose.from_euler((0.3, -0.3, 0.15), (0, 0, 1.0)))
    image[:, 400:] = copy[:, 400:]
    seen = tracker.observe(image, 0.0)
    assert isinstance(seen, Lost) and "2 markers with id 0" in seen.reason


def test_a_partly_hidden_marker_is_reported_lost_not_guessed() -> None:
    config, cam = camera(noise_sigma=0.0)
    tracker = make_tracker(config.track, cam.model())
    image = cam.render(STANDING)
    found = tracker.observe(image, 0.0)
    assert isinstance(found, Measurement) and error_mm(found, STANDING) < 3.0
    corners = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)).detectMarkers(
        image
    )[0]
    x, y = corners[-1].reshape(4, 2)[0].astype(int)  # cover one corner of the robot's marker
    image[y - 12 : y + 12, x - 12 : x + 12] = 120
    hidden = make_tracker(config.track, cam.model()).observe(image, 0.1)
    assert isinstance(hidden, Lost) or error_mm(hidden, STANDING) < 5.0
    empty = make_tracker(config.track, cam.model()).observe(cam.render(None), 0.2)
    assert isinstance(empty, Lost) and empty.reason == "marker 0 not found"


@pytest.mark.parametrize("effects", [{"exposure": 0.35}, {"noise_sigma": 8.0}, {"blur_sigma_px": 1.6}])
def test_a_bad_image_gives_a_right_pose_or_none(effects: dict) -> None:
    config, cam = camera(**effects)
    tracker = make_tracker(config.track, cam.model())
    for i in range(10):
        truth = Pose.from_euler((0.1 + 0.02 * i, 0.0, 0.15), (0.0, 0.0, 0.1 * i))
        seen = tracker.observe(cam.render(truth), i / 30)
        if isinstance(seen, Measurement):
            assert error_mm(seen, truth) < 10.0


def test_the_coloured_ball_gives_the_position() -> None:
    config = from_dict({"track": {"method": "blob"}})
    cam = EmulatedCamera(config.track)
    tracker = make_tracker(config.track, cam.model())
    upright = Pose.from_euler((0.25, -0.05, 0.15), (0, 0, 0.4))
    seen = tracker.observe(cam.render(upright), 0.0)
    assert isinstance(seen, Measurement) and seen.euler is None
    assert error_mm(seen, upright) < 15.0
    grey = tracker.observe(cam.render(upright)[..., 0], 0.0)
    assert isinstance(grey, Lost) and "colour camera" in grey.reason


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EmulatedCamera, Config]:
    config, cam = camera()
    views = [v for v in map(board_points, cam.board_views(15)) if v is not None]
    record = measure_floor(fit_intrinsics(views, cam.size, "emulated"), [cam.render(None)] * 3, config.track)
    path = tmp_path_factory.mktemp("cam") / "camera.json"
    save(path, record)
    return path, cam, config


def test_charuco_calibration_finds_the_camera(calibrated) -> None:
    path, cam, config = calibrated
    model = load(path).model()
    assert np.allclose(np.diag(model.matrix)[:2], cam.settings.focal_px, rtol=0.01)
    assert model.floor is not None
    assert np.allclose(model.floor.t, cam.floor_in_camera.t, atol=0.01)
    tracker = make_tracker(config.track, model)
    seen = tracker.observe(cam.render(STANDING), 0.0)
    assert isinstance(seen, Measurement) and error_mm(seen, STANDING) < 12.0


def test_a_new_calibration_keeps_the_previous_one(calibrated, tmp_path: Path) -> None:
    path, _, _ = calibrated
    copy = tmp_path / "camera.json"
    record = load(path)
    save(copy, record)
    save(copy, dataclasses.replace(record, views=7))
    assert load(copy).views == 7 and json.loads((tmp_path / "camera.json.bak").read_text())["views"] == 15
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _corrupt(path: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    data = json.loads(path.read_text())
    cases = {}
    for name, change, words in [
        ("not json", None, "cannot be read"),
        ("version", {"version": 9}, "format version 9"),
        ("nan focal", {"matrix": [[float("nan"), 0, 320], [0, 500, 240], [0, 0, 1]]}, "finite"),
        ("no floor", {"floor": None}, "no floor frame"),
        ("missing key", "rms_px", "missing or malformed"),
    ]:
        file = tmp / f"{name}.json"
        if change is None:
            file.write_text(path.read_text()[:100])
        elif isinstance(change, str):
            file.write_text(json.dumps({k: v for k, v in data.items() if k != change}))
        else:
            file.write_text(json.dumps({**data, **change}))
        cases[name] = (file, words)
    cases["missing"] = (tmp / "absent.json", "not found")
    fifo = tmp / "fifo.json"  # a reader that waited on it would hang the daemon's start
    os.mkfifo(fifo)
    cases["fifo"] = (fifo, "FIFO (named pipe), not a regular file")
    cases["directory"] = (tmp, "a directory, not a regular file")
    return cases


def test_a_corrupt_or_missing_calibration_is_refused_in_one_line(calibrated, tmp_path: Path) -> None:
    for name, (file, words) in _corrupt(calibrated[0], tmp_path).items():
        with pytest.raises(CameraCalibrationError) as info:
            load(file)
        assert words in str(info.value), name
        assert "\n" not in str(info.value) and "plend track" in str(info.value)


def test_the_printed_marker_is_the_robots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "marker.png"
    assert main(["track", "--print-marker", str(out), "--print-board", str(tmp_path / "b.png")]) == 0
    image = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    ids = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)).detectMarkers(
        image
    )[1]
    assert ids.ravel().tolist() == [0]
    assert b"pHYs" in out.read_bytes()[:64]  # prints at its true size
    assert "50.0 mm" in capsys.readouterr().out
    assert board_points(cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_GRAYSCALE)) is not None


def test_a_printed_marker_never_overwrites_nor_follows_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kept.png").write_text("a file of the user's")
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    for name, words in (("kept.png", "already exists"), ("link.png", "is a symbolic link")):
        assert main(["track", "--print-marker", str(tmp_path / name)]) != 0
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert (tmp_path / "kept.png").read_text() == "a file of the user's"
    assert not (tmp_path / "elsewhere.png").exists()
    same = str(tmp_path / "both.png")
    assert main(["track", "--print-marker", same, "--print-board", same]) != 0
    assert "its own file" in capsys.readouterr().err and not (tmp_path / "both.png").exists()


def _config(tmp: Path) -> Path:
    path = tmp / "plend.toml"
    path.write_text(f'[paths]\nstate_dir = "{tmp}"\n')
    return path


def test_calibrate_set_floor_and_measure_a_walk_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(_config(tmp_path))
    base = ["--config", cfg, "track", "--camera", "emulated"]
    assert main([*base, "--set-floor", "--yes"]) == 2  # no intrinsics yet
    assert "run 'plend track --calibrate'" in capsys.readouterr().err
    assert main([*base, "--calibrate", "--yes", "--views", "12"]) == 0
    assert main([*base, "--set-floor", "--yes"]) == 0
    assert "above the floor" in capsys.readouterr().out
    record = tmp_path / "poses.mcap"
    args = ["--calibration", str(tmp_path / "camera.json"), "--duration", "2", "--summary", "json"]
    assert main([*base, *args, "--record", str(record)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["poses"] == result["frames"] >= 59 and result["position_error_mm"]["p95"] < 15.0
    from mcap.reader import make_reader

    with record.open("rb") as f:
        messages = list(make_reader(f).iter_messages(topics=["/plend/pose"]))
    assert len(messages) == result["frames"]
    assert json.loads(messages[0][2].data)["position"] is not None


@pytest.mark.parametrize(
    "argv, words",
    [
        (["track", "--camera", "/dev/video-missing", "--duration", "1"], "no camera at /dev/video-missing"),
        (["track", "--camera", "emulated", "--duration", "-3"], "--duration -3.0 is out of range"),
        (["track", "--calibrate", "--camera", "emulated", "--views", "2"], "--views 2 is out of range"),
        (["track", "--camera", ""], "--camera needs a device"),
        (["track", "--camera", "emulated", "--record", "poses.txt"], "ends in .mcap"),
    ],
)
def test_bad_track_options_get_one_line(tmp_path: Path, argv: list[str], words: str, capsys) -> None:
    assert main(["--config", str(_config(tmp_path)), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


class _Stalling:
    """A live camera that delivers a few frames, then none."""

    name = "/dev/video9"
    live = True

    def __init__(self, cam: EmulatedCamera, frames: int):
        self.cam, self.left = cam, frames

    def read(self):  # type: ignore[no-untyped-def]
        import time

        if self.left <= 0:
            time.sleep(0.01)
            return None
        self.left -= 1
        return self.cam.capture(STANDING, time.monotonic())

    def close(self) -> None:
        pass


class _Link:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, observation: object, source: str) -> None:
        self.sent.append(observation)


def test_a_camera_that_stops_is_reported_lost_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from plend.track import cli
    from plend.track.sources import CameraError
    from plend.track.summary import WalkSummary

    monkeypatch.setattr(cli, "NO_FRAME_WARN_S", 0.05)
    monkeypatch.setattr(cli, "NO_FRAME_FAIL_S", 0.3)
    config, cam = camera()
    link = _Link()
    with pytest.raises(CameraError, match="camera /dev/video9 stopped delivering frames"):
        cli._follow(_Stalling(cam, 3), make_tracker(config.track, cam.model()), link, WalkSummary(), None,
                    config, 10.0, threading.Event())  # fmt: skip
    assert [type(o).__name__ for o in link.sent[:3]] == ["Measurement"] * 3
    assert isinstance(link.sent[-1], Lost) and "camera gave no frame" in link.sent[-1].reason


def test_a_recorded_video_is_measured_like_a_live_camera(
    calibrated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, cam, _ = calibrated
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, cam.size, False)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(30):
        writer.write(cam.render(Pose.from_euler((0.1 + 0.002 * i, 0.0, 0.15), (0.0, 0.0, 0.0))))
    writer.release()
    argv = ["--config", str(_config(tmp_path)), "track", "--camera", str(video), "--calibration", str(path)]
    assert main([*argv, "--summary", "json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["poses"] >= 28 and abs(result["distance_m"] - 0.058) < 0.01
    assert main([*argv, "--socket", str(tmp_path / "none.sock")]) == 2  # no daemon there
