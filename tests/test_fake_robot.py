"""The library's fake robot, as CONTRIBUTING.md shows it to people testing their own behaviours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from plend.control.loop import ControlLoop
from plend.control.safety import SafetyFilter
from plend.control.supervisor import Supervisor
from plend.core.clock import StepClock
from plend.core.config import SafetyConfig
from plend.hal.fake import FakeHal
from plend.model.robot import stand_pose

ROOT = Path(__file__).resolve().parents[1]


def test_the_contributing_example_runs_as_written() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example is not None, "CONTRIBUTING.md shows the fake robot in a python block"
    exec(compile(example.group(1), "CONTRIBUTING.md", "exec"), {})


def test_a_tilted_fake_robot_is_seen_to_fall_and_relaxed(fake_robot: FakeHal, clock: StepClock) -> None:
    supervisor = Supervisor(SafetyConfig(), 0.02)
    loop = ControlLoop(fake_robot, supervisor, 0.02, SafetyFilter.from_config(SafetyConfig(), 0.02), clock)
    loop.start()
    supervisor.handle("stand")
    loop.run(60)
    np.testing.assert_allclose(fake_robot.last(), stand_pose(), atol=1e-6)
    fake_robot.tilt_rad = 1.2  # past the fall threshold
    loop.run(3)
    assert supervisor.mode == "relax" and fake_robot.writes[-1] is None
