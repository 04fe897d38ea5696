"""Training side of policies: the environment, a short TD3 run, export, and the daemon loading it."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("pybullet")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from gaits.sine import stand_pose  # noqa: E402
from plend.core.config import SimWorld  # noqa: E402
from plend.hal.sim import SimHal, TorsoTruth  # noqa: E402
from policies import evaluate, train  # noqa: E402
from policies.contract import PolicyError  # noqa: E402
from policies.env import WalkEnv, fall_direction, leg_similarity, make_spec  # noqa: E402
from policies.export import add_metadata, export_actor  # noqa: E402
from policies.runner import PolicyBehaviour, load_runner  # noqa: E402


@pytest.fixture
def env():
    env = WalkEnv(randomise=False, max_episode_steps=60)
    yield env
    env.close()


def test_the_env_passes_gymnasium_checks() -> None:
    env = WalkEnv(max_episode_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded observation space: by design
        check_env(env, skip_render_check=True)
    env.close()


def test_the_observations_follow_the_spec() -> None:
    assert WalkEnv().observation_space.shape == (39,)
    legacy = WalkEnv(legacy_obs=True, randomise=False)
    obs, _ = legacy.reset(seed=0)
    assert obs.shape == (26,) and legacy.policy_spec.observation_size == 26
    legacy.close()


def test_similarity_is_bounded_and_finite_on_flat_or_zero_histories() -> None:
    zeros, flat = np.zeros((18, 3)), np.full((18, 3), 0.4)
    assert leg_similarity(zeros, zeros) == 1.0
    assert 0.0 <= leg_similarity(flat, zeros) < 1e-3
    assert leg_similarity(zeros, np.full((18, 3), np.nan)) == 0.0
    assert leg_similarity(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


def test_zero_residuals_walk_the_sine_gait_with_finite_rewards(env: WalkEnv) -> None:
    env.reset(seed=0)
    for _ in range(60):
        _, reward, terminated, truncated, info = env.step(np.zeros(12, np.float32))
        assert math.isfinite(reward) and all(math.isfinite(v) for v in info["terms"].values())
        assert not terminated
    assert truncated and info["distance_m"] > 0.01


def _tip(env: WalkEnv, roll: float, pitch: float) -> None:
    hal = env._hal
    assert hal is not None
    pos, _ = hal._pb.getBasePositionAndOrientation(hal._robot, **hal._c)
    quat = hal._pb.getQuaternionFromEuler((roll, pitch, 0.0))
    hal._pb.resetBasePositionAndOrientation(hal._robot, pos, quat, **hal._c)


@pytest.mark.parametrize(
    ("roll", "pitch", "direction"),
    [(0.0, 1.2, "forward"), (0.0, -1.2, "backward"), (1.2, 0.0, "right"), (-1.2, 0.0, "left")],
)
def test_a_fall_in_any_direction_ends_the_episode(
    env: WalkEnv, roll: float, pitch: float, direction: str
) -> None:
    env.reset(seed=0)
    _tip(env, roll, pitch)
    _, reward, terminated, truncated, info = env.step(np.zeros(12, np.float32))
    assert terminated and not truncated and info["fell"] == direction
    assert info["terms"]["fall"] < 0 and math.isfinite(reward)


def test_fall_direction_is_symmetric() -> None:
    up = (0.0, 0.0, 0.15)
    assert fall_direction(TorsoTruth(up, (0.0, 0.3, 0.0), (0, 0, 0))) is None
    assert fall_direction(TorsoTruth(up, (0.0, 1.0, 0.0), (0, 0, 0))) == "forward"
    assert fall_direction(TorsoTruth(up, (0.0, -1.0, 0.0), (0, 0, 0))) == "backward"
    assert fall_direction(TorsoTruth((0.0, 0.0, 0.05), (0.0, 0.0, 0.0), (0, 0, 0))) == "down"


def _walk_policy(path: Path, ticks: int = 50) -> None:
    runner = load_runner(path, 50.0, "sim", None)
    behaviour = PolicyBehaviour(runner)
    with SimHal(SimWorld(), initial_pose=stand_pose()) as hal:
        hal.open(0.02)
        for _ in range(ticks):
            targets = behaviour.update(hal.read(), 0.02)
            assert np.all(np.isfinite(targets))
            hal.write(targets)


def test_a_short_training_run_exports_a_policy_the_daemon_runs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "walk.onnx"
    argv = ["--steps", "300", "--learning-starts", "100", "--net-arch", "16,16", "--out", str(out),
            "--episode-steps", "100", "--critic-warmup", "50", "--eval-every", "150", "--no-progress",
            "--threads", "1", "--log-dir", str(tmp_path / "log")]  # fmt: skip
    assert train.main(argv) == 0
    assert "steps: 300" in capsys.readouterr().out
    assert (tmp_path / "log" / "evaluations.csv").read_text().count("\n") == 3  # header and two rows
    _walk_policy(out)
    assert evaluate.main([str(out), "--episodes", "2", "--seconds", "1"]) == 0
    assert "summary:" in capsys.readouterr().out


def test_an_sb3_actor_exported_by_torch_takes_metadata(tmp_path: Path) -> None:
    env = WalkEnv(randomise=False)
    model = sb3.TD3("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, device="cpu")
    path = tmp_path / "direct.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is marked legacy
        torch.onnx.export(
            model.policy.actor, (torch.zeros(1, 39),), str(path), input_names=["observation"],
            output_names=["action"], dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    with pytest.raises(PolicyError, match="size 39"):
        add_metadata(path, make_spec(legacy_obs=True))
    add_metadata(path, env.policy_spec)
    assert load_runner(path, 50.0, "sim", None).spec == env.policy_spec
    env.close()


def test_a_failed_export_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "walk.onnx"
    export_actor(torch.nn.Sequential(torch.nn.Linear(39, 12), torch.nn.Tanh()), make_spec(), path)
    before = path.read_bytes()
    with pytest.raises(PolicyError):
        export_actor(torch.nn.Linear(39, 5), make_spec(), path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the daemon's user


def test_training_on_the_balanced_gait_is_recorded_in_the_spec() -> None:
    from policies.env import make_spec
    from policies.train import build_parser

    assert build_parser().parse_args(["--balance"]).balance is True
    assert make_spec(balance=True).gait_balance is True
    env = WalkEnv(make_spec(balance=True), randomise=False, max_episode_steps=5)
    env.reset(seed=0)
    assert env._gait.balance is not None
    env.close()
