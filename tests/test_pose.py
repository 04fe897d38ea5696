"""The daemon's pose source: hostile pose messages, the velocity filter, staleness, and
what policies may read on the robot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plend.control.supervisor import Supervisor
from plend.core.config import Config
from plend.daemon.pose import PoseRefusedError, PoseStore
from plend.daemon.server import ArgumentError
from policies.runner import available_sources


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store() -> tuple[PoseStore, FakeClock]:
    clock = FakeClock()
    return PoseStore(Config().track, clock), clock


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.15, yaw: float = 0.0, age: float = 0.01) -> dict:
    return {"position": [x, y, z], "euler": [0.0, 0.0, yaw], "age_s": age, "source": "aruco"}


BAD = {
    "NaN position": ({**pose(), "position": [math.nan, 0, 0]}, "finite"),
    "string": ({**pose(), "position": ["1", 0, 0]}, "finite number"),
    "bool": ({**pose(), "position": [True, 0, 0]}, "finite number"),
    "two numbers": ({**pose(), "position": [0, 0]}, "list of 3"),
    "far away": (pose(x=1e6), "outside"),
    "yaw beyond pi": ({**pose(), "euler": [0, 0, 7.0]}, "outside"),
    "no age": ({"position": [0, 0, 0.15]}, "age_s"),
    "negative age": (pose(age=-0.1), "outside"),
    "old": (pose(age=5.0), "outside"),
    "unknown key": ({**pose(), "speed": 3}, "speed"),
    "unknown source": ({**pose(), "source": "lidar"}, "lidar"),
    "empty lost": ({"lost": "", "age_s": 0.0}, "say why"),
    "seq": ({**pose(), "seq": 3}, "seq"),
    "lost with a position": ({"lost": "glare", "age_s": 0.0, "position": [0, 0, 0.15]}, "position"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_poses_are_refused_with_a_reason_and_change_nothing(store, case: str) -> None:
    s, clock = store
    s.submit(pose())
    before = s.latest
    clock.t += 0.05
    message, words = BAD[case]
    with pytest.raises(ArgumentError, match=words):
        s.submit(message)
    assert s.latest is before
    assert (s.accepted, s.lost) == (1, 0), "a refused pose is not counted"


def test_jumps_faster_than_the_robot_can_move_are_refused(store) -> None:
    s, clock = store
    s.submit(pose(x=0.0))
    clock.t += 0.033
    with pytest.raises(PoseRefusedError, match=r"jumps 0\.300 m"):
        s.submit(pose(x=0.3))
    assert s.latest.position[0] == 0.0 and s.refused == 1
    clock.t += 0.033
    s.submit(pose(x=0.002))  # a believable one is taken again
    assert s.latest.position[0] == 0.002


def test_after_a_gap_a_new_track_starts_wherever_the_robot_is(store) -> None:
    s, clock = store
    s.submit(pose(x=0.0))
    clock.t += 1.0  # longer than track.stale_timeout_s: the robot may have been carried
    s.submit(pose(x=0.5))
    assert s.latest.position[0] == 0.5 and s.latest.velocity == (0.0, 0.0, 0.0)


def test_poses_are_rate_limited_and_must_come_in_capture_order(store) -> None:
    s, clock = store
    s.submit(pose())
    clock.t += 0.001
    with pytest.raises(PoseRefusedError, match=r"faster than track\.max_rate_hz"):
        s.submit(pose())
    clock.t += 0.02
    with pytest.raises(PoseRefusedError, match="capture order"):
        s.submit(pose(age=0.5))


def test_velocity_is_the_filtered_slope_of_the_pose_history(store) -> None:
    s, clock = store
    rng = np.random.default_rng(0)
    for i in range(30):
        clock.t += 1 / 30
        x = 0.04 * i / 30 + rng.normal(0, 0.001)
        s.submit(pose(x=x, y=0.001 * i / 30, age=0.02))
    vx, vy, _ = s.latest.velocity
    assert abs(vx - 0.04) < 0.01 and abs(vy - 0.001) < 0.01


def test_a_pose_goes_stale_and_says_why(store) -> None:
    s, clock = store
    assert "no camera pose received" in s.problem()
    s.submit(pose())
    assert s.problem() is None
    s.submit({"lost": "marker 0 not found", "age_s": 0.0})
    clock.t += 0.5
    problem = s.problem()
    assert "0.51 s old" in problem and "marker 0 not found" in problem
    assert s.status()["fresh"] is False


def test_position_only_poses_do_not_give_world_yaw(store) -> None:
    s, _ = store
    s.submit({**pose(), "euler": None, "source": "blob"})
    sources = available_sources("hardware", s)
    assert {"torso_height", "forward_velocity", "lateral_position"} <= sources
    assert "world_yaw" not in sources and "foot_contacts" not in sources
    assert "torso_height" not in available_sources("hardware", None)


class NeedsPose:
    """A behaviour reading the camera pose; it walks on the stand pose."""

    name = "policy"
    needs_pose = True
    needs_orientation = False
    finished = False

    def start(self, measured: np.ndarray) -> None:
        pass

    def update(self, sensors, dt):  # type: ignore[no-untyped-def]
        from gaits.sine import stand_pose

        return stand_pose()

    def stop(self) -> None:
        pass


def test_a_stale_pose_during_a_policy_run_stands_the_robot(store) -> None:
    from gaits.sine import stand_pose
    from plend.hal.base import ImuReading, Sensors

    s, clock = store
    sup = Supervisor(Config().safety, 0.02, pose=s)
    imu = ImuReading((1.0, 0, 0, 0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
    sensors = Sensors(0.0, stand_pose(), imu, (True, True))
    sup.sense(sensors)
    sup.handle("policy_load", behaviour=NeedsPose())
    with pytest.raises(Exception, match="no camera pose received"):
        sup.handle("policy_start")
    s.submit(pose())
    sup.handle("policy_start")
    sup.update(sensors, None)
    assert sup.mode == "policy"
    clock.t += 0.3
    sup.update(sensors, None)
    assert sup.mode == "stand" and [f["code"] for f in sup.fault_list()] == ["stale_pose"]
    assert "camera pose is 0.31 s old" in sup.fault_list()[0]["message"]
    clock.t += 0.01
    s.submit(pose(x=0.001))
    sup.update(sensors, None)
    assert sup.fault_list() == [] and sup.mode == "stand"  # fresh again; it does not walk off by itself


def test_the_daemon_never_imports_opencv() -> None:
    import subprocess
    import sys

    code = (
        "import sys, plend.main, plend.daemon.daemon, plend.daemon.controls, plend.daemon.pose\n"
        "import policies.runner\n"
        "from plend.core.config import Config\n"
        "plend.main._parser()\n"
        "print('cv2' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
