"""Benchmark: where the time of learning goes, and steps per second while learning.

Run with ``.venv/bin/python tests/benchmarks/training_speed.py [LEARNING_STEPS]`` (needs
the [train] extra). On the training environment (the balanced gait under a command-taking
policy, worlds of the robustness suite) it prints:

- the raw environment: steps per second and CPU per step of ``WalkEnv.step`` and per reset;
- one TD3 gradient step (batch 256, 128x128 networks), stable-baselines3's and
  policies.td3's, and one actor inference;
- steps per second while learning, after the random-action warm-up, for
  stable-baselines3's own ``learn`` (one environment in the process, one gradient step per
  environment step: how ``policies.train`` learned before) and for
  :class:`policies.learner.Learner` as ``policies.train`` runs it now (environments in
  worker processes overlapped with learning, 0.25 gradient steps per environment step),
  and the same learner with one gradient step per environment step.

The machine's load average is printed before and after: on a shared machine the figures
move with what else runs.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from policies import train
from policies.env import WalkEnv, make_spec
from policies.learner import Learner, LearnSettings

WARMUP = 1000


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def env_speed(steps: int = 1500) -> None:
    env = WalkEnv(make_spec(balance=True))
    resets, step_wall, step_cpu = [], 0.0, 0.0
    t, c = time.perf_counter(), time.process_time()
    env.reset(seed=0)
    resets.append(time.perf_counter() - t)
    assert env.action_space.shape is not None
    zero = np.zeros(env.action_space.shape, np.float32)
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        _, _, terminated, truncated, _ = env.step(zero)
        step_wall += time.perf_counter() - t
        step_cpu += time.process_time() - c
        if terminated or truncated:
            t = time.perf_counter()
            env.reset()
            resets.append(time.perf_counter() - t)
    env.close()
    print(f"environment step: {steps / step_wall:6.0f} steps/s (wall {1e3 * step_wall / steps:.2f} ms, "
          f"CPU {1e3 * step_cpu / steps:.2f} ms); reset {1e3 * float(np.median(resets)):.0f} ms median "
          f"of {len(resets)}")  # fmt: skip


def stock_td3(venv: Any, learning_starts: int) -> Any:
    """stable-baselines3's TD3 as policies.train made it before the learner (its own update)."""
    from stable_baselines3 import TD3

    return TD3("MlpPolicy", venv, learning_starts=learning_starts, policy_kwargs={"net_arch": [128, 128]},
               device="cpu", verbose=0, seed=0)  # fmt: skip


def gradient_speed(args: Any) -> None:
    import torch
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    venv = DummyVecEnv([lambda: WalkEnv(make_spec(balance=True))])
    for name, model in (
        ("stable-baselines3", stock_td3(venv, 0)),
        ("policies.td3", train.make_model(args, venv)),
    ):
        model.set_logger(Logger(None, []))
        assert venv.observation_space.shape is not None
        n = venv.observation_space.shape[0]
        rng = np.random.default_rng(0)
        for _ in range(2000):
            obs = rng.normal(size=(1, n)).astype(np.float32)
            model.replay_buffer.add(obs, obs, rng.uniform(-1, 1, (1, 12)), np.zeros(1), np.zeros(1), [{}])
        model.train(20, 256)
        t, c = time.perf_counter(), time.process_time()
        model.train(300, 256)
        wall, cpu = (time.perf_counter() - t) / 300, (time.process_time() - c) / 300
        print(f"gradient step (batch 256), {name}: wall {1e3 * wall:.2f} ms, CPU {1e3 * cpu:.2f} ms")
    batch = torch.zeros((4, n))
    t = time.perf_counter()
    for _ in range(1000):
        with torch.no_grad():
            model.actor(batch)
    print(f"actor on 4 observations: {1e3 * (time.perf_counter() - t) / 1000:.3f} ms")
    venv.close()


def sb3_learn(args: Any, steps: int) -> None:
    """stable-baselines3's own loop and update, one environment, one update per step (before)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    venv = DummyVecEnv([lambda: WalkEnv(make_spec(balance=True))])
    model = stock_td3(venv, WARMUP)
    marks: dict[str, tuple[float, float, int]] = {}

    class Clock(BaseCallback):  # type: ignore[misc]
        def _on_step(self) -> bool:
            if self.num_timesteps == WARMUP:
                marks["from"] = (time.perf_counter(), time.process_time(), self.num_timesteps)
            return True

    model.learn(WARMUP + steps, callback=Clock())
    t0, c0, s0 = marks["from"]
    done = model.num_timesteps - s0
    rate = done / (time.perf_counter() - t0)
    print(f"  stable-baselines3 learn, 1 env, 1 update/step: {rate:6.0f} steps/s "
          f"(main process CPU {1e3 * (time.process_time() - c0) / done:.2f} ms/step)")  # fmt: skip
    venv.close()


def learner(args: Any, steps: int, envs: int, updates: float) -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecMonitor

    args.envs, args.updates_per_step = envs, updates
    spec = make_spec(balance=True)
    venv = VecMonitor(SubprocVecEnv([functools.partial(train.make_env, spec, args, True)] * envs))
    model = train.make_model(args, venv)
    settings = LearnSettings(steps=WARMUP + steps, learning_starts=WARMUP, critic_warmup=0,
                             updates_per_step=updates, eval_every=0, log_every_s=float("inf"))  # fmt: skip
    progress = Learner(model, venv, settings, None, threading.Event()).run()
    rate, cpu = progress.learning_rate()
    venv.close()
    print(f"  learner, {envs} worker envs, {updates:g} update/step: {rate:6.0f} steps/s "
          f"(main process CPU {1e3 * cpu:.2f} ms/step)")  # fmt: skip


def main() -> int:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    args = train.build_parser().parse_args(["--out", "runs/bench/walk.onnx"])
    args.argv = []
    print(f"load average before: {load()} on {os.cpu_count()} CPUs")
    env_speed()
    gradient_speed(args)
    print(f"steps per second while learning ({steps} steps after {WARMUP} random ones):")
    sb3_learn(args, steps // 2)
    learner(args, steps, envs=4, updates=0.25)
    learner(args, steps // 2, envs=4, updates=1.0)
    print(f"load average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
