"""Training side of policies: the environment, a short TD3 run, export, and the daemon loading it."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
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
from policies.commands import Reference  # noqa: E402
from policies.contract import PolicyError  # noqa: E402
from policies.env import WalkEnv, fall_direction, leg_similarity, make_spec  # noqa: E402
from policies.export import add_metadata, export_actor  # noqa: E402
from policies.reward import RewardWeights, Tracking, tracking_terms  # noqa: E402
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
    env = WalkEnv()
    assert env.observation_space.shape == (41,)
    assert env.policy_spec.commands == {"speed": (0.0, 1.0), "turn": (-0.5, 0.5)}
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


def test_the_env_follows_a_command_schedule() -> None:
    env = WalkEnv(make_spec(balance=True), randomise=False, max_episode_steps=150)
    schedule = ((0.0, (0.5, 0.0, 0.0)), (1.0, (0.8, 0.5, 0.0)))
    obs, info = env.reset(options={"schedule": schedule})
    assert info["schedule"] == schedule and np.allclose(obs[-3:], [0.5, 0.0, 0.0])
    commands = []
    for _ in range(150):
        obs, _, _, _, info = env.step(np.zeros(12, np.float32))
        commands.append(tuple(np.round(obs[-3:], 3)))
    assert commands[48] == (0.5, 0.0, 0.0) and commands[50] == (0.8, 0.5, 0.0)
    assert env._gait.turn == 0.5 and info["yaw_deg"] > 2.0, "the gait took the turn at its next step"
    env.close()


def _truths(speed: float, yaw_rate: float, ticks: int, side: float = 0.0) -> list[TorsoTruth]:
    out, x, y, yaw = [], 0.0, 0.0, 0.3
    for _ in range(ticks):
        out.append(TorsoTruth((x, y, 0.15), (0.0, 0.0, yaw), (0, 0, 0)))
        x += 0.02 * (speed * math.cos(yaw) - side * math.sin(yaw))
        y += 0.02 * (speed * math.sin(yaw) + side * math.cos(yaw))
        yaw += 0.02 * yaw_rate
    return out


def test_tracking_measures_speed_and_yaw_rate_along_the_heading() -> None:
    truths = _truths(0.04, 0.2, 80, side=0.01)
    tracking = Tracking(truths[0], 0.02)
    for truth in truths[1:]:
        tracking.update(truth, turning=True)
    forward, side, yaw_rate = tracking.velocity(35)
    assert forward == pytest.approx(0.04, rel=0.01) and side == pytest.approx(0.01, rel=0.05)
    assert yaw_rate == pytest.approx(0.2, rel=1e-6) and tracking.heading_error() == 0.0


def test_the_tracking_reward_peaks_at_the_target_and_drift_costs() -> None:
    w = RewardWeights()
    truths = _truths(w.speed_gain * 0.03, 0.0, 60)
    tracking = Tracking(truths[0], 0.02)
    for truth in truths[1:]:
        tracking.update(truth, turning=False)
    on_target = tracking_terms(w, tracking, Reference(0.03, 0.0, 0.0), 35)
    assert on_target["speed"] == pytest.approx(w.speed) and on_target["yaw_rate"] == pytest.approx(w.yaw_rate)
    slower = tracking_terms(w, tracking, Reference(0.06, 0.0, 0.0), 35)
    assert slower["speed"] < 0.5 * w.speed
    told_to_step_left = tracking_terms(w, tracking, Reference(0.03, 0.01, 0.0), 35)
    assert told_to_step_left["lateral"] == pytest.approx(w.lateral * 0.01)
    turned = Tracking(truths[0], 0.02)
    for truth in _truths(0.03, 0.3, 60)[1:]:
        turned.update(truth, turning=False)
    terms = tracking_terms(w, turned, Reference(0.03, 0.0, 0.0), 35)
    assert terms["heading"] < -0.3 and terms["yaw_rate"] < 0.01 * w.yaw_rate


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
    argv = ["--steps", "200", "--learning-starts", "100", "--net-arch", "16,16", "--out", str(out),
            "--episode-steps", "60", "--critic-warmup", "50", "--eval-every", "0", "--no-progress",
            "--envs", "1", "--log-dir", str(tmp_path / "log")]  # fmt: skip
    assert train.main(argv) == 0
    assert "steps: 200" in capsys.readouterr().out
    assert (tmp_path / "log" / "model.zip").exists()
    notes = load_runner(out, 50.0, "sim", None).spec.notes
    assert notes["steps"] == 200 and notes["exported_step"] == 200 and notes["seed"] == 0
    assert "policies.train" in notes["trained_with"] and notes["finished"] is True
    _walk_policy(out)
    assert evaluate.main([str(out), "--worlds", "1", "--seconds", "1", "--no-tracking", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "worlds 0-0 of the suite" in printed and "policy / sine mean distance" in printed


def test_training_never_writes_over_the_shipped_policy(capsys) -> None:
    shipped = Path(train.__file__).parent / "walk.onnx"
    before = shipped.read_bytes()
    assert train.main(["--steps", "10", "--out", str(shipped)]) == 1
    assert "where the shipped policies live" in capsys.readouterr().err
    assert shipped.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--out", "{kept}"], "already exists; choose another file name (or --replace"),
        (["--out", "{link}"], "is a symbolic link"),
        (["--out", "{tmp}"], "already exists"),
        (["--out", ""], "needs a file name"),
        (["--learning-rate", "nan"], "--learning-rate nan is out of range"),
        (["--gamma", "5"], "--gamma 5.0 is out of range"),
        (["--noise", "-1"], "--noise -1.0 is out of range"),
        (["--buffer-size", "100000000000"], "--buffer-size 100000000000 is out of range"),
        (["--net-arch", "100000,100000"], "at most 4096 units"),
        (["--reward", "bogus=1"], "--reward 'bogus=1'"),
        (["--reward", "action=nan"], "WEIGHT a finite number"),
        (["--device", "bogus"], "give cpu, cuda"),
        (["--init-actor", "{fifo}"], "FIFO"),
    ],
)
def test_bad_options_are_refused_before_anything_starts_or_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"an earlier policy")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    os.mkfifo(tmp_path / "fifo")
    names = {"kept": kept, "link": tmp_path / "link.onnx", "tmp": tmp_path, "fifo": tmp_path / "fifo"}
    argv = [a.format(**names) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "new.onnx")]
    assert train.main(["--steps", "10", *argv]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert kept.read_bytes() == b"an earlier policy" and not (tmp_path / "elsewhere.onnx").exists()
    assert not (tmp_path / "new.onnx").exists()


def test_ctrl_c_before_the_first_evaluation_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "walk.onnx"
    out.write_bytes(b"the policy trained yesterday")
    argv = [sys.executable, "-m", "policies.train", "--steps", "1000000", "--learning-starts", "20",
            "--eval-every", "1000000", "--envs", "1", "--episode-steps", "40", "--net-arch", "8",
            "--out", str(out), "--replace", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    time.sleep(15.0)  # learning by now, long before its first evaluation
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "before the first evaluation: nothing written" in stdout
    assert out.read_bytes() == b"the policy trained yesterday"


def test_ctrl_c_ends_training_with_the_best_actor_so_far(tmp_path: Path) -> None:
    out = tmp_path / "walk.onnx"
    argv = [sys.executable, "-m", "policies.train", "--steps", "1000000", "--learning-starts", "20",
            "--critic-warmup", "0", "--eval-every", "40", "--envs", "1", "--episode-steps", "40",
            "--net-arch", "8", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not out.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the run
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopped by a signal: wrote the best actor so far" in stdout and "Traceback" not in stderr
    assert "eval at step 40: score" in stdout, "evaluated in its own process"
    notes = load_runner(out, 50.0, "sim", None).spec.notes
    assert notes["exported_step"] > 0 and notes["finished"] is True
    # Every evaluated actor is kept beside the log, with its evaluation, to be measured later.
    kept = sorted((tmp_path / "actors").glob("step-*.onnx"))
    evaluated = [int(m) for m in re.findall(r"eval at step (\d+): score", stdout)]
    assert [int(p.stem.removeprefix("step-")) for p in kept] == evaluated and evaluated[0] == 40
    first = load_runner(kept[0], 50.0, "sim", None).spec.notes
    assert first["exported_step"] == 40 and first["evaluation"]["walks"] == 5
    assert f"score {first['evaluation']['score']:.1f}" in stdout.split("eval at step 40: ")[1].splitlines()[0]


def test_an_sb3_actor_exported_by_torch_takes_metadata(tmp_path: Path) -> None:
    env = WalkEnv(randomise=False)
    model = sb3.TD3("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, device="cpu")
    path = tmp_path / "direct.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is marked legacy
        torch.onnx.export(
            model.policy.actor, (torch.zeros(1, 41),), str(path), input_names=["observation"],
            output_names=["action"], dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    with pytest.raises(PolicyError, match="size 41"):
        add_metadata(path, make_spec(legacy_obs=True))
    add_metadata(path, env.policy_spec)
    assert load_runner(path, 50.0, "sim", None).spec == env.policy_spec
    env.close()


def test_a_failed_export_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "walk.onnx"
    export_actor(torch.nn.Sequential(torch.nn.Linear(41, 12), torch.nn.Tanh()), make_spec(), path)
    before = path.read_bytes()
    with pytest.raises(PolicyError):
        export_actor(torch.nn.Linear(41, 5), make_spec(), path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the daemon's user


def test_training_on_the_balanced_gait_is_recorded_in_the_spec() -> None:
    from policies.env import make_spec
    from policies.train import build_parser

    assert build_parser().parse_args([]).no_balance is False, "the balanced gait by default"
    assert train.make_spec(build_parser().parse_args([])).gait_balance is True
    assert train.make_spec(build_parser().parse_args(["--no-balance"])).gait_balance is False
    assert make_spec(balance=True).gait_balance is True
    env = WalkEnv(make_spec(balance=True), randomise=False, max_episode_steps=5)
    env.reset(seed=0)
    assert env._gait.balance is not None
    env.close()
