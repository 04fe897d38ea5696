"""The PyBullet backend: determinism, independence, servo model, standing and life cycle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("pybullet")

from gaits.sine import GaitParams, joint_targets, stand_pose
from plend.core.config import SimWorld
from plend.core.errors import HalError
from plend.hal.base import Sensors
from plend.hal.sim import SimHal
from plend.model.robot import joint_index
from plend.model.sim_world import ServoModel

PERIOD = 0.02
# PyBullet's motor alone, without the hobby servo's delay, lag, dead band and backlash:
# for checks of what the simulation adds around it (tick delays, contacts).
IDEAL = ServoModel(delay_ms=0.0, time_constant_ms=0.0, dead_band_deg=0.0, backlash_deg=0.0)
GRAVITY = 9.81
R_SHOULDER = joint_index("torso_r_shoulder")
L_SHOULDER = joint_index("torso_l_shoulder")


@contextmanager
def opened(world: SimWorld | None = None, pose: np.ndarray | None = None) -> Iterator[SimHal]:
    hal = SimHal(world, stand_pose() if pose is None else pose)
    hal.open(PERIOD)
    try:
        yield hal
    finally:
        hal.close()


def walking(k: int) -> np.ndarray:
    """The gait's joint targets at tick ``k``, fading in over the first half second."""
    params = GaitParams()
    return joint_targets((k * PERIOD / params.period_s) % 1.0, params, min(1.0, k / 25))


def waving(k: int) -> np.ndarray:
    q = stand_pose()
    q[R_SHOULDER] = 0.8 * np.sin(0.2 * k)
    q[L_SHOULDER] = -0.5 * np.sin(0.3 * k)
    return q


def _record(s: Sensors, hal: SimHal) -> tuple:  # type: ignore[type-arg]
    t = hal.truth()
    return (
        s.stamp, s.joint_pos.tobytes(), s.imu.quat, s.imu.gyro, s.imu.accel, s.contacts,
        t.position, t.velocity,
    )  # fmt: skip


def run_alone(world: SimWorld, commands: Callable[[int], np.ndarray], ticks: int) -> list[tuple]:  # type: ignore[type-arg]
    out = []
    with opened(world) as hal:
        for k in range(ticks):
            hal.write(commands(k))
            out.append(_record(hal.read(), hal))
    return out


# -- determinism and independence -------------------------------------------------------


NOISY = SimWorld(seed=11, mass_jitter=0.2, joint_noise_rad=0.002, gyro_noise_rad_s=0.01)


def test_same_seed_same_commands_same_readings() -> None:
    first = run_alone(NOISY, walking, 100)
    second = run_alone(NOISY, walking, 100)
    assert first == second
    # The walk did something: the feet left the ground and the joints moved.
    contacts = [r[5] for r in first]
    assert (False, True) in contacts or (True, False) in contacts
    # A different seed draws different masses and noise, so the readings differ.
    other_world = SimWorld(seed=12, mass_jitter=0.2, joint_noise_rad=0.002, gyro_noise_rad_s=0.01)
    other = run_alone(other_world, walking, 100)
    q_first = np.frombuffer(first[-1][1])
    q_other = np.frombuffer(other[-1][1])
    assert np.abs(q_first - q_other).max() > 1e-4


def test_mass_jitter_alone_changes_the_physics() -> None:
    base = SimWorld(seed=3, mass_jitter=0.3)
    a = run_alone(base, walking, 60)
    b = run_alone(SimWorld(seed=4, mass_jitter=0.3), walking, 60)
    assert a == run_alone(base, walking, 60)
    assert [r[6] for r in a] != [r[6] for r in b]  # torso trajectories differ


def test_two_sims_in_one_process_are_independent() -> None:
    world_a = SimWorld(seed=1, mass_jitter=0.2, joint_noise_rad=0.001)
    world_b = SimWorld(seed=2, friction=0.4, mass_scale=1.3, gyro_noise_rad_s=0.02)
    alone_a = run_alone(world_a, walking, 100)
    alone_b = run_alone(world_b, waving, 60)
    together_a, together_b = [], []
    a = SimHal(world_a, stand_pose())
    b = SimHal(world_b, stand_pose())
    a.open(PERIOD)
    b.open(PERIOD)  # resets b's own world only
    try:
        for k in range(100):
            if k < 60:
                # Alternate the call order between the two.
                first, second = ((a, walking), (b, waving)) if k % 2 else ((b, waving), (a, walking))
                first[0].write(first[1](k))
                second[0].write(second[1](k))
                together_b.append(_record(b.read(), b))
                together_a.append(_record(a.read(), a))
            else:
                if k == 60:
                    b.close()  # closing one must not disturb the other
                a.write(walking(k))
                together_a.append(_record(a.read(), a))
    finally:
        a.close()
        b.close()
    assert together_a == alone_a
    assert together_b == alone_b


def test_contacts_follow_the_swinging_foot() -> None:
    """Contacts are (right, left): the foot in mid-swing is off the ground."""
    params = GaitParams()
    swing = 1.0 - params.duty
    rows = run_alone(SimWorld(servo=IDEAL), walking, 100)
    seen = set()
    for k, row in enumerate(rows):
        if k < 25:  # still fading in
            continue
        phase = (k * PERIOD / params.period_s) % 1.0
        for side, offset, expected in (("right", 0.0, (False, True)), ("left", 0.5, (True, False))):
            u = ((phase + offset) % 1.0) / swing
            if 0.25 <= u <= 0.75:
                assert row[5] == expected, (k, side, row[5])
                seen.add(side)
    assert seen == {"right", "left"}


# -- the servo model ----------------------------------------------------------------------


@pytest.mark.parametrize("speed", [9.5, 4.0])
def test_servo_speed_limit(speed: float) -> None:
    step = 1.2
    world = SimWorld(servo_speed_rad_s=speed)
    with opened(world) as hal:
        q = stand_pose()
        for _ in range(10):
            hal.write(q)
        start = hal.read().joint_pos[R_SHOULDER]
        target = q.copy()
        target[R_SHOULDER] = start + step
        positions = [start]
        ticks = int((step / speed + 0.3) / PERIOD)
        for _ in range(ticks):
            hal.write(target)
            positions.append(hal.read().joint_pos[R_SHOULDER])
    velocity = np.diff(positions) / PERIOD
    assert velocity.max() <= 1.1 * speed, velocity
    # The limit, not sluggishness, sets the pace; and the servo gets there.
    assert velocity.max() >= 0.8 * speed, velocity
    reached = np.flatnonzero(np.abs(np.asarray(positions) - (start + step)) < 0.02)
    assert reached.size, positions
    assert reached[0] * PERIOD <= step / speed + 0.15


@pytest.mark.parametrize("delay", [0, 2])
def test_actuation_delay(delay: int) -> None:
    world = SimWorld(actuation_delay_ticks=delay, servo=IDEAL)
    with opened(world) as hal:
        q = stand_pose()
        for _ in range(25):
            hal.write(q)
        start = hal.read().joint_pos[R_SHOULDER]
        target = q.copy()
        target[R_SHOULDER] = start + 1.0
        moves = []
        for _ in range(delay + 2):
            hal.write(target)
            moves.append(abs(hal.read().joint_pos[R_SHOULDER] - start))
    for k in range(delay):
        assert moves[k] < 0.01, (k, moves)
    assert moves[delay] > 0.1, moves


def test_actuation_delay_right_after_open() -> None:
    with opened(SimWorld(actuation_delay_ticks=2, servo=IDEAL)) as hal:
        start = hal.read().joint_pos[R_SHOULDER]
        target = stand_pose()
        target[R_SHOULDER] = start + 1.0
        moves = []
        for _ in range(3):
            hal.write(target)
            moves.append(abs(hal.read().joint_pos[R_SHOULDER] - start))
    assert moves[0] < 0.01 and moves[1] < 0.01, moves
    assert moves[2] > 0.1, moves


# -- standing and relaxing ------------------------------------------------------------------


def _stand(world: SimWorld, ticks: int) -> dict[str, np.ndarray]:
    q = stand_pose()
    keys = ("accel", "gyro", "contacts", "height", "tilt", "yaw", "err")
    rows: dict[str, list] = {k: [] for k in keys}  # type: ignore[type-arg]
    with opened(world) as hal:
        for _ in range(ticks):
            hal.write(q)
            s = hal.read()
            t = hal.truth()
            rows["accel"].append(s.imu.accel)
            rows["gyro"].append(s.imu.gyro)
            rows["contacts"].append(s.contacts)
            rows["height"].append(t.position[2])
            rows["tilt"].append(t.tilt)
            rows["yaw"].append(t.euler[2])
            rows["err"].append(np.abs(s.joint_pos - q).max())
    return {k: np.asarray(v) for k, v in rows.items()}


def test_standing_still_on_the_stand_pose() -> None:
    settle, ticks = 25, 125  # 0.5 s to settle, then 2 s
    r = {k: v[settle:] for k, v in _stand(SimWorld(), ticks).items()}
    assert r["contacts"].all(), "both soles must touch the ground while standing"
    # An accelerometer at rest reads +g on its up axis.
    assert np.mean(r["accel"][:, 2]) == pytest.approx(GRAVITY, abs=0.2)
    assert np.median(np.abs(r["accel"][:, 2] - GRAVITY)) < 0.5
    assert np.abs(np.mean(r["accel"][:, :2], axis=0)).max() < 0.5
    assert np.median(np.linalg.norm(r["gyro"], axis=1)) < 0.2
    assert np.abs(np.mean(r["gyro"], axis=0)).max() < 0.05
    # Upright at the crouched stand height (0.158 m straight, crouch 8 mm), not sinking.
    assert r["tilt"].max() < 0.05
    assert np.mean(r["height"]) == pytest.approx(0.150, abs=0.003)
    assert r["height"].max() - r["height"].min() < 0.002
    # The servos hold the pose.
    assert r["err"].max() < 0.05


@pytest.mark.parametrize(
    "world",
    [
        pytest.param(SimWorld(), id="default-world"),
        pytest.param(SimWorld(solver_iterations=100), id="solver-100"),
    ],
)
def test_standing_still_every_tick(world: SimWorld) -> None:
    settle, ticks = 25, 250  # 0.5 s to settle, then 4.5 s
    r = {k: v[settle:] for k, v in _stand(world, ticks).items()}
    assert r["contacts"].all()
    assert np.abs(r["accel"][:, 2] - GRAVITY).max() <= 0.5
    assert np.linalg.norm(r["gyro"], axis=1).max() < 0.15
    assert r["yaw"].max() - r["yaw"].min() < 0.05


def test_relax_lets_the_robot_sag() -> None:
    with opened() as hal:
        q = stand_pose()
        for _ in range(10):
            hal.write(q)
        standing = hal.truth().position[2]
        heights = []
        for _ in range(100):  # 2 s
            hal.relax()
            heights.append(hal.truth().position[2])
        joints_after = hal.read().joint_pos
    assert min(heights) < standing - 0.03, (standing, min(heights))
    # The legs folded away from the commanded pose.
    assert np.abs(joints_after - q).max() > 0.3


# -- life cycle ---------------------------------------------------------------------------


def test_read_and_write_before_open_raise_hal_error() -> None:
    hal = SimHal(SimWorld())
    with pytest.raises(HalError, match="open"):
        hal.read()
    with pytest.raises(HalError):
        hal.write(stand_pose())
    with pytest.raises(HalError):
        hal.truth()
    assert isinstance(HalError("x"), RuntimeError)


def test_close_is_idempotent() -> None:
    hal = SimHal(SimWorld(), stand_pose())
    hal.close()  # never opened: nothing to do
    hal.open(PERIOD)
    with pytest.raises(HalError, match="already open"):
        hal.open(PERIOD)
    hal.write(stand_pose())
    assert hal.read().joint_pos.shape == (18,)
    hal.close()
    hal.close()
    with pytest.raises(HalError):
        hal.read()
    # It can be opened again after closing, and starts afresh.
    hal.open(PERIOD)
    try:
        s = hal.read()
        assert s.stamp == 0.0
        np.testing.assert_allclose(s.joint_pos, stand_pose(), atol=1e-9)
    finally:
        hal.close()
        hal.close()


def test_stamp_advances_one_period_per_tick() -> None:
    with opened() as hal:
        stamps = []
        for _ in range(5):
            hal.write(stand_pose())
            stamps.append(hal.read().stamp)
        hal.relax()
        stamps.append(hal.read().stamp)
    np.testing.assert_allclose(np.diff(stamps), PERIOD, atol=1e-12)
