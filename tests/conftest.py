"""Fixtures shared by the tests: a robot in memory on a stepping clock.

The fake robot is the library's own (plend.hal.fake.FakeHal), so it implements the HAL
interface as it is, not as a test remembers it.
"""

from __future__ import annotations

import pytest

from plend.core.clock import StepClock
from plend.hal.fake import FakeHal


@pytest.fixture
def clock() -> StepClock:
    """A clock that jumps to each deadline: the loop runs as fast as the machine allows."""
    return StepClock()


@pytest.fixture
def fake_robot(clock: StepClock) -> FakeHal:
    """A robot whose joints go where they are sent, standing, stamped by ``clock``."""
    return FakeHal(clock)
