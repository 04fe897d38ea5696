"""Train a walking policy with TD3 in simulation and export it for the daemon.

Run ``python -m policies.train --help`` for the options. The policy learns residuals on
the sine gait (see :mod:`policies.env` for the observation, the reward and the domain
randomisation). Three things keep TD3 from wrecking the gait it starts from: the actor's
output layer starts near zero (the untrained policy is the sine gait), the critics learn
alone for a while before the actor moves, and the actor learns ten times slower than
the critics. Every ``--eval-every`` steps the deterministic policy walks the nominal world
and two randomised ones; the best of those actors (farthest without a fall) is exported
with :func:`policies.export.export_actor`, and the script prints the command, the steps
and the wall time. Check the result with ``python -m policies.evaluate FILE``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.errors import PlendError, require_package

DEFAULT_OUT = Path("policies/walk.onnx")
EVAL_SEEDS = (101, 102)  # the randomised worlds of the periodic evaluation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.train",
        description="Train a TD3 walking policy (residuals on the sine gait) in the PyBullet "
        "simulation and export it as an ONNX policy file for plend.",
    )
    add = parser.add_argument
    add("--steps", type=int, default=150_000, help="environment steps to train (default 150000)")
    add("--seed", type=int, default=0, help="random seed of the agent and the worlds (default 0)")
    add("--out", type=Path, default=DEFAULT_OUT, help=f"policy file to write (default {DEFAULT_OUT})")
    add("--log-dir", type=Path, help="write monitor.csv (episodes), evaluations.csv and model.zip here")
    add("--no-randomise", action="store_true", help="train on the nominal world only (default: a random "
        "world each episode: friction, masses, actuation delay, sensor noise)")  # fmt: skip
    add("--legacy-obs", action="store_true", help="observe the original 26-value layout (it needs ground "
        "truth, so the policy runs in simulation only)")  # fmt: skip
    add("--balance", action="store_true", help="learn on top of the sine gait with its balance layer "
        "(gaits.balance); the policy file says so and the robot runs it the same way")  # fmt: skip
    add("--learning-starts", type=int, default=5000, help="steps of uniformly random actions before "
        "learning (default 5000)")  # fmt: skip
    add("--critic-warmup", type=int, default=5000, help="steps after --learning-starts in which only the "
        "critics learn, from the near-zero policy's walks (default 5000)")  # fmt: skip
    add("--learning-rate", type=float, default=1e-3, help="Adam learning rate of the critics (default 1e-3)")
    add("--actor-lr", type=float, default=1e-4, help="Adam learning rate of the actor (default 1e-4)")
    add("--gamma", type=float, default=0.99, help="discount factor (default 0.99)")
    add("--noise", type=float, default=0.2, help="exploration noise sigma in action units (default 0.2)")
    add("--net-arch", default="128,128", help="hidden layers of actor and critics (default 128,128; "
        "256,256 trains ~40%% slower on a CPU)")  # fmt: skip
    add("--episode-steps", type=int, default=500, help="ticks per episode (default 500 = 10 s)")
    add("--reward", action="append", default=[], metavar="TERM=WEIGHT", help="set one reward weight "
        "(policies.env.RewardWeights), e.g. --reward action=-0.5; repeatable")  # fmt: skip
    add("--eval-every", type=int, default=10_000, help="steps between evaluations; the best actor is "
        "exported (default 10000; 0: export the last actor)")  # fmt: skip
    add("--device", default="cpu", help="torch device (default cpu)")
    add("--threads", type=int, default=2, help="torch threads (default 2)")
    add("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _net_arch(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise PlendError(f"--net-arch {text!r} must be comma-separated layer sizes, e.g. 256,256")
    return sizes


def reward_weights(changes: list[str]) -> Any:
    """RewardWeights with ``TERM=WEIGHT`` changes applied."""
    from policies.env import RewardWeights

    names = [f.name for f in dataclasses.fields(RewardWeights)]
    values: dict[str, float] = {}
    for change in changes:
        name, _, value = change.partition("=")
        try:
            if name not in names:
                raise ValueError
            values[name] = float(value)
        except ValueError:
            raise PlendError(
                f"--reward {change!r}: use TERM=WEIGHT with TERM one of {', '.join(names)}"
            ) from None
    return RewardWeights(**values)


def make_model(args: argparse.Namespace, env: Any) -> Any:
    """The TD3 agent the options describe, its actor starting near zero."""
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    class TD3WithActorRate(TD3):  # type: ignore[misc]
        def _update_learning_rate(self, optimizers: Any) -> None:
            super()._update_learning_rate(optimizers)
            for group in self.actor.optimizer.param_groups:
                group["lr"] = args.actor_lr

    n = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(n), np.full(n, args.noise))
    model = TD3WithActorRate(
        "MlpPolicy", env, action_noise=noise, learning_starts=args.learning_starts, seed=args.seed,
        learning_rate=args.learning_rate, gamma=args.gamma,
        policy_kwargs={"net_arch": _net_arch(args.net_arch)}, device=args.device, verbose=0,
    )  # fmt: skip
    start_near_zero(model)
    return model


def start_near_zero(model: Any, gain: float = 0.01) -> None:
    """Shrink the actor's output layer so that the untrained policy acts ~0.

    A residual policy then starts as the sine gait, which already walks, and explores
    around it instead of around a random offset that makes the robot fall.
    """
    import torch

    with torch.no_grad():
        last = [m for m in model.actor.mu if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(gain)
        last.bias.zero_()
    model.actor_target.load_state_dict(model.actor.state_dict())


def walk_once(actor: Any, env: Any, seed: int) -> tuple[float, bool]:
    """One deterministic episode of ``actor`` on ``env``: distance (m) and whether it fell."""
    import torch

    obs, _ = env.reset(seed=seed)
    info: dict[str, Any] = {"distance_m": 0.0, "fell": None}
    done = False
    while not done:
        with torch.no_grad():
            action = actor(torch.as_tensor(obs[None, :])).numpy()[0]
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return float(info["distance_m"]), info["fell"] is not None


def make_callback(model: Any, args: argparse.Namespace, spec: Any) -> Any:
    """Holds the actor still during the critic warm-up; evaluates and keeps the best actor."""
    from stable_baselines3.common.callbacks import BaseCallback

    from policies.env import WalkEnv

    release = args.learning_starts + args.critic_warmup

    class Callback(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, int, Any] | None = None
            self.rows: list[str] = []

        def _on_training_start(self) -> None:
            self.held = release > 0
            model.actor.requires_grad_(not self.held)  # the actor's updates then change nothing

        def _on_step(self) -> bool:
            if self.held and self.num_timesteps >= release:
                model.actor.requires_grad_(True)
                self.held = False
            if args.eval_every and self.num_timesteps % args.eval_every == 0:
                self.evaluate()
            return True

        def evaluate(self) -> None:
            steps = args.episode_steps
            worlds = [
                WalkEnv(spec, randomise=r, max_episode_steps=steps)
                for r in (False, *(True for _ in EVAL_SEEDS))
            ]
            walks = [
                walk_once(model.actor, env, seed) for env, seed in zip(worlds, (0, *EVAL_SEEDS), strict=True)
            ]
            for env in worlds:
                env.close()
            score = float(np.mean([d for d, _ in walks])) - sum(fell for _, fell in walks)
            self.rows.append(
                f"{self.num_timesteps},{score:.4f}," + ",".join(f"{d:.4f},{int(f)}" for d, f in walks)
            )
            if self.best is None or score > self.best[0]:
                self.best = (score, self.num_timesteps, copy.deepcopy(model.actor).cpu())

    return Callback()


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and export as ``args`` say; return what was done."""
    for module in ("torch", "stable_baselines3", "gymnasium", "onnx"):
        require_package(module, "train")
    import torch
    from stable_baselines3.common.monitor import Monitor

    from policies.env import WalkEnv
    from policies.export import export_actor

    torch.set_num_threads(args.threads)
    from policies.env import make_spec

    env = WalkEnv(
        make_spec(args.legacy_obs, balance=args.balance), randomise=not args.no_randomise,
        max_episode_steps=args.episode_steps, weights=reward_weights(args.reward),
    )  # fmt: skip
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    log = str(args.log_dir / "monitor.csv") if args.log_dir else None
    monitored = Monitor(env, log, info_keywords=("distance_m",))
    model = make_model(args, monitored)
    callback = make_callback(model, args, env.policy_spec)
    began = time.perf_counter()
    try:
        model.learn(total_timesteps=args.steps, callback=callback, progress_bar=not args.no_progress)
    finally:
        monitored.close()
    wall = time.perf_counter() - began
    if args.log_dir is not None:
        model.save(str(args.log_dir / "model.zip"))
        header = "step,score,nominal_m,nominal_fell," + ",".join(f"w{s}_m,w{s}_fell" for s in EVAL_SEEDS)
        (args.log_dir / "evaluations.csv").write_text("\n".join([header, *callback.rows]) + "\n")
    command = shlex.join([Path(sys.executable).name, "-m", "policies.train", *args.argv])
    _, step, actor = callback.best or (0.0, args.steps, model.actor)
    notes = {"trained_with": command, "steps": args.steps, "exported_step": step, "seed": args.seed,
             "randomised": not args.no_randomise}  # fmt: skip
    export_actor(actor, dataclasses.replace(env.policy_spec, notes=notes), args.out)
    rewards = monitored.get_episode_rewards()
    return {"command": command, "steps": args.steps, "wall_s": wall, "out": args.out,
            "exported_step": step, "evaluations": callback.rows, "episodes": len(rewards),
            "last_rewards": rewards[-10:]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        done = train(args)
    except (PlendError, OSError) as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"policies.train: error: {exc}", file=sys.stderr)
        return 1
    recent = done["last_rewards"]
    mean = sum(recent) / len(recent) if recent else float("nan")
    if done["evaluations"]:
        print(
            "evaluations (step, score, then metres and fell per world: nominal, then seeds", EVAL_SEEDS, "):"
        )
        print("\n".join(f"  {row}" for row in done["evaluations"]))
    print(f"command: {done['command']}")
    rate = done["steps"] / done["wall_s"]
    print(f"steps: {done['steps']}  wall: {done['wall_s']:.1f} s  ({rate:.0f} steps/s)")
    print(f"episodes: {done['episodes']}  mean reward of the last {len(recent)}: {mean:.1f}")
    print(f"wrote {done['out']} (actor of step {done['exported_step']}); "
          f"check it with: python -m policies.evaluate {done['out']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
