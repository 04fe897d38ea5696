"""The runtime builder readies what the control thread would otherwise compute itself."""

from __future__ import annotations

from gaits.walker import validate_speed_map
from plend.control.behaviours import Walk
from plend.core.config import Config
from plend.daemon.runtime import RuntimeOptions, build_runtime
from plend.hal.fake import FakeHal


def test_the_first_walk_does_not_check_the_gait_on_the_control_thread() -> None:
    # The check of the commands' range solves the legs' IK for every corner (~0.2 s):
    # done in the first tick that walks, it held the loop ten ticks late.
    validate_speed_map.cache_clear()
    build_runtime(Config(), RuntimeOptions(batch=True, hal=FakeHal()))
    checked = validate_speed_map.cache_info().misses
    Walk(0.5, turn=0.3, side=-0.2, config=Config().gait)  # what a 'gait' command makes, on the loop
    assert validate_speed_map.cache_info().misses == checked
