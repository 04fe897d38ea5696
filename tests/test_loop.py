"""The control loop's schedule and the safety filter, on a fake clock and a fake HAL."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from plend.control.loop import ControlLoop, StepClock
from plend.control.safety import SafetyFilter
from plend.hal.base import Sensors
from plend.hal.fake import FakeHal
from plend.model.robot import NUM_JOINTS, joint_limits

LOWER, UPPER = joint_limits()


class Constant:
    """A decider that always asks for the same targets."""

    mode = "constant"

    def __init__(self, q: np.ndarray):
        self.q = q
        self.handled: list[str] = []

    def sense(self, sensors: Sensors) -> None: ...

    def update(self, sensors: Sensors, last_targets: np.ndarray | None) -> np.ndarray:
        return self.q

    def handle(self, name: str, **args: object) -> dict[str, object]:
        if name == "boom":
            raise ValueError("refused")
        self.handled.append(name)
        return {"mode": self.mode}

    def powered_mask(self) -> np.ndarray | None:
        return None


def _loop(cost: float, period: float = 0.02, q: np.ndarray | None = None) -> tuple[ControlLoop, FakeHal]:
    clock = StepClock(100.0)
    hal = FakeHal(clock, pose=np.zeros(NUM_JOINTS), write_cost_s=cost)
    loop = ControlLoop(
        hal, Constant(np.zeros(NUM_JOINTS) if q is None else q), period, SafetyFilter(period), clock
    )
    loop.start()
    return loop, hal


def test_deadlines_are_absolute_and_do_not_drift() -> None:
    loop, hal = _loop(cost=0.007)
    loop.run(1000)
    times = np.array(hal.times)
    assert times[-1] - times[0] == pytest.approx(999 * 0.02, abs=1e-6)
    assert loop.stats.overruns == 0


def test_overrun_is_counted_and_the_schedule_rebased_without_a_burst() -> None:
    loop, hal = _loop(cost=0.0)
    loop.run(10)
    hal.write_cost_s = 0.05  # one tick takes 2.5 periods
    loop.tick()
    hal.write_cost_s = 0.0
    loop.run(5)
    assert loop.stats.overruns == 1
    gaps = np.diff(hal.times[-6:])
    assert np.all(gaps >= 0.02 - 1e-9), "no catch-up burst after an overrun"


def test_commands_are_applied_between_ticks_and_errors_return_to_the_caller() -> None:
    from plend.control.loop import Request

    loop, _ = _loop(cost=0.0)
    ok = loop.submit(Request("stand"))
    bad = loop.submit(Request("boom"))
    assert not ok.done.is_set()
    loop.tick()
    assert ok.wait(0.0) == {"mode": "constant"}
    with pytest.raises(ValueError, match="refused"):
        bad.wait(0.0)
    loop.tick()  # the loop keeps running after a refused command
    assert loop.stats.ticks == 2


def test_urgent_commands_go_first_and_a_flood_waits_for_later_ticks() -> None:
    from plend.control.loop import MAX_COMMANDS_PER_TICK, Request

    loop, _ = _loop(cost=0.0)
    decider = loop.decider
    assert isinstance(decider, Constant)
    flood = [loop.submit(Request("stand")) for _ in range(MAX_COMMANDS_PER_TICK + 10)]
    estop = loop.submit(Request("estop"), urgent=True)
    told: list[str] = []
    estop.add_done_callback(lambda r: told.append(r.name))
    loop.tick()
    assert decider.handled[0] == "estop", "the e-stop is applied before every queued command"
    assert told == ["estop"] and estop.wait(0.0) == {"mode": "constant"}
    assert sum(r.done.is_set() for r in flood) == MAX_COMMANDS_PER_TICK, "a tick applies a bounded number"
    loop.tick()
    assert all(r.done.is_set() for r in flood)
    assert loop.urgent_latency.values().size == 1
    late: list[str] = []
    estop.add_done_callback(lambda r: late.append(r.name))  # already done: called at once
    assert late == ["estop"]


def test_an_urgent_command_brings_the_next_tick_forward_without_adding_one() -> None:
    from plend.control.loop import Request

    loop, hal = _loop(cost=0.0)
    loop.run(3)
    last = hal.times[-1]
    loop.submit(Request("estop"), urgent=True)
    loop.tick()
    assert hal.times[-1] == pytest.approx(last + 0.01), "half a period after the last tick, not a whole one"
    loop.run(2)
    assert hal.times[-2:] == pytest.approx([last + 0.04, last + 0.06]), "then the schedule as before"
    assert loop.stats.ticks == 6 and loop.stats.overruns == 0


def test_a_stalled_loop_is_reported_to_the_caller() -> None:
    from plend.control.loop import LoopStalledError, Request

    loop, _ = _loop(cost=0.0)
    with pytest.raises(LoopStalledError, match="stand"):
        loop.submit(Request("stand")).wait(0.01)


def test_targets_from_a_wild_controller_are_limited_and_slewed() -> None:
    q = np.full(NUM_JOINTS, 50.0)
    q[3] = np.nan
    loop, hal = _loop(cost=0.0, q=q)
    loop.run(100)
    writes = np.array(hal.writes)
    assert np.all(writes <= UPPER + 1e-12)
    assert np.all(np.abs(np.diff(writes, axis=0)) <= 9.0 * 0.02 + 1e-12)
    assert np.all(writes[:, 3] == 0.0), "a NaN target holds the last safe one"
    counts = loop.safety.counts
    assert counts.limit > 0 and counts.slew > 0 and counts.non_finite == 100


@settings(max_examples=200, deadline=None)
@given(
    start=arrays(float, NUM_JOINTS, elements=st.floats(-3, 3)),
    seq=st.lists(
        arrays(float, NUM_JOINTS, elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
        min_size=1, max_size=20,
    ),
)  # fmt: skip
def test_safety_filter_output_is_always_safe(start: np.ndarray, seq: list[np.ndarray]) -> None:
    f = SafetyFilter(0.02, max_speed_rad_s=9.0)
    f.reset(start)
    last = np.clip(start, LOWER, UPPER)
    for targets in seq:
        out = f.apply(targets)
        assert np.all(np.isfinite(out))
        assert np.all(out >= LOWER) and np.all(out <= UPPER)
        assert np.all(np.abs(out - last) <= 9.0 * 0.02 + 1e-9)
        last = out


def test_filter_refuses_to_run_without_a_measured_start() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        SafetyFilter(0.02).apply(np.zeros(NUM_JOINTS))
