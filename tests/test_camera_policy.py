"""End to end on the emulated robot: a policy that reads forward_velocity and
torso_height loads and walks on ``--hal hardware --bus emulated`` while ``plend track``
films it with the emulated camera, is refused without the camera, and stands the robot
when the camera stops."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")
pytest.importorskip("pybullet")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from plend.model.robot import LEG_JOINT_NAMES  # noqa: E402
from policies.contract import METADATA_KEY, PolicySpec  # noqa: E402
from tests.support import Daemon, wait_for_mode  # noqa: E402

LEGS = LEG_JOINT_NAMES["right"] + LEG_JOINT_NAMES["left"]
# The original 26-value layout less the foot contacts the robot does not have.
SPEC = PolicySpec(
    observation=(("joint_pos", 18), ("torso_height", 1), ("forward_velocity", 1), ("torso_euler", 3),
                 ("lateral_position", 1)),
    action_joints=LEGS, action_mode="residual", action_scale=(0.05,) * 12, rate_hz=50.0, gait_speed=0.5,
)  # fmt: skip


def random_actor(path: Path) -> Path:
    """A small random MLP (24-32-12, tanh) with the policy metadata: it loads and runs."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (24, 32)).astype(np.float32), "W1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (32, 12)).astype(np.float32), "W2")
    nodes = [
        helper.make_node("MatMul", ["observation", "W1"], ["h"]), helper.make_node("Tanh", ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "W2"], ["b"]), helper.make_node("Tanh", ["b"], ["action"]),
    ]  # fmt: skip
    x = helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 24])
    y = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 12])
    model = helper.make_model(helper.make_graph(nodes, "actor", [x], [y], [w1, w2]),
                              opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: SPEC.to_json()})
    onnx.save(model, path)
    return path


def tracker(d: Daemon) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plend.main", "--config", str(d.tmp / "plend.toml"), "track",
         "--camera", "emulated", "--socket", str(d.socket), "--summary", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_pose(d: Daemon, fresh: bool, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while (pose := d.status()["pose"])["fresh"] != fresh:
        assert time.monotonic() < deadline, f"pose stayed {pose}"
        time.sleep(0.1)
    return pose


def test_a_policy_reading_the_camera_pose_walks_and_stands_when_the_camera_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = random_actor(tmp_path / "camera.onnx")
    # A loaded machine may hold the tracker's frames back a few hundred ms; what is tested
    # is that the robot stands when they stop, so give a late frame a second.
    stale = "[track]\nstale_timeout_s = 1.0\n"
    d = Daemon(tmp_path, "--hal", "hardware", "--bus", "emulated", "--gait", "stand", config=stale)
    camera = None
    try:
        assert d.ctl("policy", "load", str(policy)) == 1  # no camera yet: refused, says why
        err = capsys.readouterr().err
        assert "needs torso_height, forward_velocity, lateral_position" in err
        assert "only from a camera pose source: no camera pose received" in err
        camera = tracker(d)
        pose = wait_for_pose(d, True)
        assert abs(pose["position_m"][2] - 0.15) < 0.02  # the torso's height, seen from above
        assert d.ctl("policy", "load", str(policy)) == 0
        assert d.ctl("policy", "start") == 0
        wait_for_mode(d, "policy")
        time.sleep(2.0)
        status = d.status()
        assert status["mode"] == "policy" and status["faults"] == []
        camera.terminate()
        camera.wait(timeout=10)
        wait_for_mode(d, "stand", timeout=5.0)
        faults = d.status()["recent_faults"]
        assert any(f["code"] == "stale_pose" and "camera pose is" in f["message"] for f in faults)
        assert d.ctl("policy", "start") == 1
    finally:
        if camera is not None and camera.poll() is None:
            camera.kill()
            camera.wait()
        code, err = d.stop()
    assert code == 0, err
