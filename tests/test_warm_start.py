"""Training from an existing policy file: ``python -m policies.train --init-actor FILE``."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")
pytest.importorskip("gymnasium")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("pybullet")

from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from policies import train  # noqa: E402
from policies.contract import PolicyError  # noqa: E402
from policies.env import WalkEnv, make_spec  # noqa: E402
from policies.export import export_actor  # noqa: E402
from policies.runner import load_runner  # noqa: E402
from policies.warm_start import check_fits, read_actor  # noqa: E402

SHIPPED = Path(train.__file__).parent / "walk.onnx"


def _args(*extra: str) -> argparse.Namespace:
    return train.build_parser().parse_args(["--envs", "1", *extra])


def _mlp(hidden: int) -> Any:
    linear = torch.nn.Linear
    return torch.nn.Sequential(linear(41, hidden), torch.nn.ReLU(), linear(hidden, 12), torch.nn.Tanh())


def _act(path: Path, obs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"observation": obs})[0])


def test_the_actor_starts_as_the_file_acts() -> None:
    args = _args("--init-actor", str(SHIPPED))
    spec = train.make_spec(args)
    env = WalkEnv(spec, randomise=False, max_episode_steps=5)
    try:
        model = train.make_model(args, DummyVecEnv([lambda: env]), train.initial_actor(args, spec))
    finally:
        env.close()
    obs = np.random.default_rng(1).normal(0.0, 1.0, (32, spec.observation_size)).astype(np.float32)
    with torch.no_grad():
        ours = model.actor(torch.from_numpy(obs)).numpy()
        target = model.actor_target(torch.from_numpy(obs)).numpy()
    assert np.max(np.abs(ours - _act(SHIPPED, obs))) < 1e-5
    assert np.array_equal(ours, target), "the target network starts as the actor"
    fresh = np.abs(train.make_model(_args(), DummyVecEnv([lambda: WalkEnv(spec, randomise=False)]))
                   .actor(torch.from_numpy(obs)).detach().numpy())  # fmt: skip
    assert fresh.max() < 0.05 < np.abs(ours).max(), "without it the actor starts near zero"
    origin = train._Exporter(spec, args, "cmd", train.initial_actor(args, spec)).origin
    step = read_actor(SHIPPED).spec.notes["exported_step"]
    assert origin["init_actor"] == str(SHIPPED) and origin["init_actor_notes"]["exported_step"] == step


def test_an_actor_exported_here_reads_back_exactly(tmp_path: Path) -> None:
    spec = make_spec(balance=True)
    net = _mlp(16)
    export_actor(net, spec, tmp_path / "a.onnx")
    actor = read_actor(tmp_path / "a.onnx")
    assert actor.hidden == [16] and actor.activations == ("ReLU", "Tanh")
    assert np.array_equal(actor.layers[0][0], net[0].weight.detach().numpy())
    assert np.array_equal(actor.layers[1][1], net[2].bias.detach().numpy())
    check_fits(actor, spec, [16], tmp_path / "a.onnx")
    wanted = r"hidden layers \(--net-arch\) is \[16\], this training's is \[128, 128\]"
    with pytest.raises(PolicyError, match=wanted):
        check_fits(actor, spec, [128, 128], tmp_path / "a.onnx")


def test_an_actor_of_another_layout_or_gait_is_refused() -> None:
    actor = read_actor(SHIPPED)
    cases = [
        (make_spec(legacy_obs=True, balance=True), r"its observation layout is \['joint_pos\[18\]'"),
        (make_spec(balance=False), "its gait balance is True, this training's is False"),
        (dataclasses.replace(make_spec(balance=True), action_scale=(0.2,) * 12), "its action scale"),
        (dataclasses.replace(make_spec(balance=True), rate_hz=100.0), r"its rate \(Hz\) is 50.0"),
    ]
    for spec, message in cases:
        with pytest.raises(PolicyError, match=message):
            check_fits(actor, spec, [128, 128], SHIPPED)


def test_a_broken_file_is_refused_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07\x12\xff\xff")
    bare = tmp_path / "bare.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Linear(41, 12), (torch.zeros(1, 41),), str(bare), dynamo=False)
    conv = tmp_path / "conv.onnx"
    export_actor(torch.nn.Sequential(torch.nn.Linear(41, 12), torch.nn.Sigmoid()), make_spec(), conv)
    for path, message in [
        (tmp_path / "missing.onnx", "no such file"),
        (garbage, "not a valid ONNX model"),
        (bare, "no 'plend.policy' metadata"),
        (conv, "has a Sigmoid node where policies.train's actor has Gemm/Relu/Tanh layers"),
    ]:
        with pytest.raises(PolicyError, match=message) as caught:
            read_actor(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_the_trainer_refuses_a_bad_start_before_any_worker_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run" / "walk.onnx"
    argv = ["--steps", "100", "--out", str(out), "--envs", "1", "--init-actor", str(SHIPPED),
            "--net-arch", "16,16"]  # fmt: skip
    assert train.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--net-arch" in err and "[128, 128]" in err
    assert not out.parent.exists()


def test_a_warm_started_run_evaluates_its_start_and_records_it(tmp_path: Path, capsys) -> None:
    start = tmp_path / "start.onnx"
    net = _mlp(8)
    export_actor(net, make_spec(balance=True), start)
    out = tmp_path / "walk.onnx"
    argv = ["--steps", "40", "--learning-starts", "20", "--critic-warmup", "0", "--net-arch", "8",
            "--episode-steps", "20", "--eval-every", "1000", "--envs", "1", "--no-progress",
            "--init-actor", str(start), "--out", str(out)]  # fmt: skip
    assert train.main(argv) == 0
    assert "eval at step 0: score" in capsys.readouterr().out
    spec = load_runner(out, 50.0, "sim", None).spec
    assert spec.notes["init_actor"] == str(start) and spec.notes["init_actor_notes"] == {}
    assert spec.gait_gains == make_spec(balance=True).gait_gains, "trained on today's gait, recorded"


def test_a_warm_start_explores_around_its_actor_from_the_first_step() -> None:
    import threading
    from types import SimpleNamespace

    import gymnasium as gym

    from policies.learner import Learner, LearnSettings

    actor = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    with torch.no_grad():
        actor[0].weight.zero_()
        actor[0].bias.fill_(10.0)  # acts ~1 on every joint
    model = SimpleNamespace(seed=0, actor=actor)
    venv = SimpleNamespace(num_envs=64, action_space=gym.spaces.Box(-1, 1, (2,)))
    obs = np.zeros((64, 3), np.float32)
    for random_start, low in ((True, -1.0), (False, 0.2)):
        settings = LearnSettings(steps=10, learning_starts=1000, noise=0.1, random_start=random_start)
        actions = Learner(model, venv, settings, None, threading.Event())._act(obs)
        assert (actions.min() < -0.5) == random_start and actions.min() >= low


def test_the_best_actor_is_the_one_that_fell_least_then_scored_most() -> None:
    import threading
    from types import SimpleNamespace

    from policies.learner import Learner, LearnSettings

    def result(score: float, falls: int) -> dict[str, object]:
        return {
            "score": score,
            "walks": [{"fell": i < falls, "distance_m": 0.3, "yaw_deg": 0.0} for i in range(5)],
        }

    learner = Learner(
        SimpleNamespace(seed=0), None, LearnSettings(steps=1), None, threading.Event(), log=lambda line: None
    )
    exported: list[int] = []
    learner.on_best = lambda step, actor: exported.append(step)
    for step, (score, falls) in enumerate([(870.0, 1), (720.0, 0), (700.0, 0), (900.0, 1), (750.0, 0)]):
        learner._record(step, f"actor {step}", result(score, falls))
    assert exported == [0, 1, 4], "a higher score with a fall does not beat no fall"
    assert learner.progress.best is not None and learner.progress.best[1:] == (4, "actor 4")
