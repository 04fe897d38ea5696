"""Train a walking policy with TD3 in simulation and export it for the daemon.

Run ``python -m policies.train --help`` for the options. The policy learns residuals on
the balanced sine gait, takes the walking command (speed, turn, side) as an observation,
and is rewarded for tracking it, on worlds of the robustness suite (see
:mod:`policies.env` and :mod:`policies.reward`). Three things keep TD3 from wrecking the
gait it starts from: the actor's output layer starts near zero (the untrained policy is
the sine gait), the critics learn alone for a while before the actor moves, and the actor
learns ten times slower than the critics.

The simulations run in worker processes while the main process learns
(:mod:`policies.learner`). Every ``--eval-every`` steps a copy of the deterministic
policy walks fixed worlds and commands in another process; the best actor so far is
written to ``--out`` (with :func:`policies.export.export_actor`) whenever it improves, so
Ctrl-C (or SIGTERM) leaves the best actor so far and exits cleanly. The shipped policies
are never overwritten: copy a result into ``policies/`` after measuring it
(``python -m policies.evaluate FILE``, ``tests/benchmarks/policy_targets.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from plend.core.errors import PlendError, require_package

SHIPPED = Path(__file__).resolve().parent  # the shipped policies live here


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m policies.train",
        description="Train a TD3 walking policy (residuals on the balanced sine gait, taking speed, turn "
        "and side commands) on worlds of the robustness suite, and export it as an ONNX policy for plend.",
    )
    add = parser.add_argument
    add("--steps", type=int, default=2_000_000, help="environment steps to train (default 2000000)")
    add("--seed", type=int, default=0, help="random seed of the agent and the worlds (default 0)")
    add("--out", type=Path, help="policy file to write (default runs/walk-TIME/walk.onnx; never a "
        "shipped policy)")  # fmt: skip
    add("--replace", action="store_true", help="train over an existing --out (default: refused)")
    add("--log-dir", type=Path, help="evaluations.csv and model.zip go here (default: beside --out)")
    add("--envs", type=int, default=4, help="simulations in worker processes (default 4)")
    add("--updates-per-step", type=float, default=0.25, help="gradient steps per environment step "
        "(default 0.25; TD3's usual 1 learns 3-4x slower per step on a CPU)")  # fmt: skip
    add("--batch-size", type=int, default=256, help="samples per gradient step (default 256)")
    add("--buffer-size", type=int, default=1_000_000, help="replay buffer size (default 1000000)")
    add("--no-randomise", action="store_true", help="train on the nominal world only (default: a world "
        "of the robustness suite each episode)")  # fmt: skip
    add("--nominal-share", type=float, default=0.1, help="share of episodes on the nominal world "
        "(default 0.1)")  # fmt: skip
    add("--legacy-obs", action="store_true", help="observe the original 26-value layout (it needs ground "
        "truth, so the policy runs in simulation only; no commands)")  # fmt: skip
    add("--no-balance", action="store_true", help="learn on the open-loop sine gait (default: on the gait "
        "with its balance layer, gaits.balance; the policy file says which)")  # fmt: skip
    add("--speed-range", default="0,1", help="speed commands trained for (default 0,1)")
    add("--turn-range", default="-0.5,0.5", help="turn commands trained for (default -0.5,0.5)")
    add("--side-range", default="0", help="side-step commands trained for (default 0: none)")
    add("--learning-starts", type=int, default=5000, help="steps of uniformly random actions before "
        "learning (default 5000)")  # fmt: skip
    add("--critic-warmup", type=int, default=20_000, help="steps after --learning-starts in which only the "
        "critics learn (default 20000)")  # fmt: skip
    add("--residual-weight", type=float, default=0.4, help="pull of the actor toward action 0 (the gait) "
        "against the critic's normalised value (default 0.4; see policies.td3)")  # fmt: skip
    add("--learning-rate", type=float, default=1e-3, help="Adam learning rate of the critics (default 1e-3)")
    add("--actor-lr", type=float, default=1e-4, help="Adam learning rate of the actor (default 1e-4)")
    add("--gamma", type=float, default=0.99, help="discount factor (default 0.99)")
    add("--noise", type=float, default=0.2, help="exploration noise sigma in action units (default 0.2)")
    add("--net-arch", default="128,128", help="hidden layers of actor and critics (default 128,128)")
    add("--episode-steps", type=int, default=600, help="ticks per episode (default 600 = 12 s)")
    add("--reward", action="append", default=[], metavar="TERM=WEIGHT", help="set one reward weight "
        "(policies.reward.RewardWeights), e.g. --reward action=-0.5; repeatable")  # fmt: skip
    add("--eval-every", type=int, default=25_000, help="steps between evaluations; the best actor (fewest "
        "falls, then highest score) is exported (default 25000; 0: export the last actor)")  # fmt: skip
    add("--init-actor", type=Path, metavar="FILE", help="start the actor from this policy file (one "
        "policies.train exported, with the same observation layout, actions and --net-arch) instead of "
        "near zero; it explores with that actor from the first step and is evaluated at step 0")  # fmt: skip
    add("--device", default="cpu", help="torch device (default cpu)")
    add("--threads", type=int, default=1, help="torch threads of the learner (default 1)")
    add("--no-progress", action="store_true", help="no progress line every minute")
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
    from policies.reward import RewardWeights

    names = [f.name for f in dataclasses.fields(RewardWeights)]
    values: dict[str, float] = {}
    for change in changes:
        name, _, value = change.partition("=")
        try:
            if name not in names or not math.isfinite(float(value)):
                raise ValueError
            values[name] = float(value)
        except ValueError:
            raise PlendError(
                f"--reward {change[:60]!r}: use TERM=WEIGHT, WEIGHT a finite number, TERM one of "
                f"{', '.join(names)}"
            ) from None
    return RewardWeights(**values)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before anything starts; fill in the default output."""
    checks = [  # (option, allowed range); NaN is in none
        ("--steps", 1, 10**9), ("--envs", 1, 64), ("--updates-per-step", 1e-6, 8), ("--batch-size", 1, 65536),
        ("--episode-steps", 10, 100_000), ("--eval-every", 0, 10**9), ("--nominal-share", 0, 1),
        ("--threads", 1, 256), ("--buffer-size", args.batch_size, 10_000_000), ("--residual-weight", 0, 100),
        ("--learning-starts", 0, 10**9), ("--critic-warmup", 0, 10**9), ("--learning-rate", 1e-9, 1),
        ("--actor-lr", 1e-9, 1), ("--gamma", 0, 1), ("--noise", 0, 10),
    ]  # fmt: skip
    for name, low, high in checks:
        value = getattr(args, name[2:].replace("-", "_"))
        if not low <= value <= high:
            raise PlendError(f"{name} {value} is out of range; use {low:g} to {high:g}")
    reward_weights(args.reward)  # refused here, not in the workers
    if max(_net_arch(args.net_arch)) > 4096:
        raise PlendError(f"--net-arch {args.net_arch}: at most 4096 units a layer")
    if args.device not in ("cpu", "cuda", "mps") and not args.device.startswith("cuda:"):
        raise PlendError(f"--device {args.device[:40]!r}: give cpu, cuda, cuda:N or mps")
    if args.out is None:
        args.out = Path("runs") / time.strftime("walk-%Y%m%d-%H%M%S") / "walk.onnx"
    _check_out(args.out, args.replace)
    args.log_dir = args.log_dir or args.out.parent
    if args.log_dir.exists() and not args.log_dir.is_dir():
        raise PlendError(f"--log-dir {args.log_dir} is not a folder")


def _check_out(out: Path, replace: bool) -> None:
    """``--out``: a file name, never a shipped policy, an existing file only with ``--replace``."""
    if out.name in ("", ".", ".."):
        raise PlendError("--out needs a file name, e.g. runs/walk.onnx")
    if out.absolute().parent == SHIPPED or out.resolve().parent == SHIPPED:
        raise PlendError(
            f"--out {out} is where the shipped policies live; write elsewhere (e.g. runs/), measure "
            "it, then copy it there"
        )
    if out.is_symlink():
        raise PlendError(f"--out {out} is a symbolic link; choose another file name")
    if os.path.lexists(out) and not (replace and out.is_file()):
        advice = " (or --replace to train over it)" if out.is_file() else ""
        raise PlendError(f"--out {out} already exists; choose another file name{advice}")


def make_spec(args: argparse.Namespace) -> Any:
    from policies.commands import parse_range
    from policies.env import make_spec as env_spec

    ranges = {name: parse_range(name, getattr(args, f"{name}_range")) for name in ("speed", "turn", "side")}
    commands = {name: r for name, r in ranges.items() if r != (0.0, 0.0) or name == "speed"}
    return env_spec(args.legacy_obs, balance=not args.no_balance, commands=commands)


def make_env(spec: Any, args: argparse.Namespace, randomise: bool) -> Any:
    """A training (or, without ``randomise``, evaluation) environment; in a worker
    process it leaves Ctrl-C to the main process."""
    from policies.env import WalkEnv
    from policies.learner import ignore_interrupts

    ignore_interrupts() if randomise else None
    return WalkEnv(spec, randomise=randomise and not args.no_randomise, max_episode_steps=args.episode_steps,
                   weights=reward_weights(args.reward), nominal_share=args.nominal_share)  # fmt: skip


def make_model(args: argparse.Namespace, venv: Any, init: Any = None) -> Any:
    """The TD3 agent the options describe, its actor starting near zero, or from ``init``
    (a :class:`policies.warm_start.ActorWeights`)."""
    from stable_baselines3 import TD3
    from stable_baselines3.common.logger import Logger

    from policies.td3 import regularised_update

    class ResidualTD3(TD3):  # type: ignore[misc]
        def _update_learning_rate(self, optimizers: Any) -> None:
            super()._update_learning_rate(optimizers)
            for group in self.actor.optimizer.param_groups:
                group["lr"] = args.actor_lr

        def train(self, gradient_steps: int, batch_size: int = 256) -> None:
            regularised_update(self, gradient_steps, batch_size, args.residual_weight)

    model = ResidualTD3(
        "MlpPolicy", venv, learning_starts=args.learning_starts, seed=args.seed, buffer_size=args.buffer_size,
        learning_rate=args.learning_rate, gamma=args.gamma, batch_size=args.batch_size,
        policy_kwargs={"net_arch": _net_arch(args.net_arch)}, device=args.device, verbose=0,
    )  # fmt: skip
    model.set_logger(Logger(None, []))
    if init is None:
        start_near_zero(model)
    else:
        from policies.warm_start import load_actor

        load_actor(model, init)
    return model


def initial_actor(args: argparse.Namespace, spec: Any) -> Any:
    """The actor ``--init-actor`` names, checked against ``spec`` and ``--net-arch`` (None
    without the option)."""
    if args.init_actor is None:
        return None
    from policies.warm_start import check_fits, read_actor

    actor = read_actor(args.init_actor)
    check_fits(actor, spec, _net_arch(args.net_arch), args.init_actor)
    return actor


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


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and export as ``args`` say; return what was done."""
    for module in ("torch", "stable_baselines3", "gymnasium", "onnx"):
        require_package(module, "train")
    import torch
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecMonitor

    from policies.learner import Learner, LearnSettings, stop_on_signals, stop_workers

    check_args(args)
    torch.set_num_threads(args.threads)
    spec = make_spec(args)
    init = initial_actor(args, spec)  # refused before any worker starts
    args.log_dir.mkdir(parents=True, exist_ok=True)
    venv = VecMonitor(SubprocVecEnv([functools.partial(make_env, spec, args, True)] * args.envs))
    venv.seed(args.seed)
    model = make_model(args, venv, init)
    settings = LearnSettings(
        steps=args.steps, learning_starts=args.learning_starts, critic_warmup=args.critic_warmup,
        updates_per_step=args.updates_per_step, batch_size=args.batch_size, noise=args.noise,
        eval_every=args.eval_every, log_every_s=float("inf") if args.no_progress else 60.0,
        random_start=init is None, evaluate_first=init is not None,
    )  # fmt: skip
    stop = threading.Event()
    restore = stop_on_signals(stop)
    command = shlex.join([Path(sys.executable).name, "-m", "policies.train", *args.argv])
    exporter = _Exporter(spec, args, command, init)
    began = time.perf_counter()
    try:
        learner = Learner(model, venv, settings, functools.partial(make_env, spec, args, False), stop)
        learner.on_best = exporter.export
        learner.on_evaluated = exporter.keep
        progress = learner.run()
    finally:
        stop_workers(venv)
        restore()
    wall = time.perf_counter() - began
    _, step, actor = progress.best  # type: ignore[misc]
    measured = bool(progress.evaluations) or not stop.is_set()
    if measured:  # stopped before its first evaluation: nothing measured is worth a file
        exporter.export(step, actor, progress.steps, wall)
        model.save(str(args.log_dir / "model.zip"), exclude=["replay_buffer"])
        _write_evaluations(args.log_dir / "evaluations.csv", progress.evaluations)
    return {"command": command, "steps": progress.steps, "wall_s": wall, "out": args.out,
            "exported_step": step, "evaluations": progress.evaluations, "episodes": progress.episodes,
            "last_returns": list(progress.returns)[-10:], "stopped": progress.stopped,
            "interrupted": stop.is_set(), "written": measured}  # fmt: skip


class _Exporter:
    """Writes an actor to ``--out`` with the spec and how it was trained in its notes."""

    def __init__(self, spec: Any, args: argparse.Namespace, command: str, init: Any = None):
        self.spec, self.args, self.command = spec, args, command
        # Where a warm start came from: the file and how that actor was trained.
        self.origin: dict[str, Any] = {} if init is None else {
            "init_actor": str(args.init_actor),
            "init_actor_notes": {k: init.spec.notes[k] for k in ("trained_with", "exported_step", "seed")
                                 if k in init.spec.notes},
        }  # fmt: skip
        self.began = time.perf_counter()

    def export(self, step: int, actor: Any, steps: int | None = None, wall: float | None = None) -> None:
        notes = self._notes(step, step if steps is None else steps, wall)
        notes["finished"] = steps is not None
        self._write(actor, notes, self.args.out)

    def keep(self, step: int, actor: Any, result: dict[str, Any]) -> None:
        """Write an evaluated actor to ``LOG_DIR/actors/step-NNNNNNN.onnx``, its evaluation
        in its notes: five walks rank actors only roughly, so any of them can be measured
        on more worlds afterwards (``python -m policies.evaluate FILE``)."""
        from policies.learner import falls

        notes = self._notes(step, step, None)
        notes["evaluation"] = {"score": round(float(result["score"]), 1), "walks": len(result["walks"]),
                               "fell": falls(result)}  # fmt: skip
        folder = self.args.log_dir / "actors"
        folder.mkdir(exist_ok=True)
        self._write(actor, notes, folder / f"step-{step:07d}.onnx")

    def _notes(self, step: int, steps: int, wall: float | None) -> dict[str, Any]:
        wall = time.perf_counter() - self.began if wall is None else wall
        worlds = "nominal" if self.args.no_randomise else "robustness suite"
        notes = {"trained_with": self.command, "steps": steps, "exported_step": step, "seed": self.args.seed,
                 "wall_s": round(wall, 1), "worlds": worlds}  # fmt: skip
        notes.update(self.origin)
        return notes

    def _write(self, actor: Any, notes: dict[str, Any], path: Path) -> None:
        from policies.export import export_actor

        export_actor(actor, dataclasses.replace(self.spec, notes=notes), path)


def _write_evaluations(path: Path, evaluations: list[dict[str, Any]]) -> None:
    rows = ["step,score," + ",".join(f"walk{i}_m,walk{i}_yaw_deg,walk{i}_fell" for i in range(5))]
    for e in evaluations:
        walks = ",".join(f"{w['distance_m']:.4f},{w['yaw_deg']:.2f},{int(w['fell'])}" for w in e["walks"])
        rows.append(f"{e['step']},{e['score']:.3f},{walks}")
    path.write_text("\n".join(rows) + "\n")


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
    recent = done["last_returns"]
    mean = float(np.mean(recent)) if recent else float("nan")
    print(f"command: {done['command']}")
    rate = done["steps"] / max(done["wall_s"], 1e-9)
    print(f"steps: {done['steps']}  wall: {done['wall_s']:.1f} s  ({rate:.0f} steps/s)")
    print(f"episodes: {done['episodes']}  mean return of the last {len(recent)}: {mean:.1f}")
    if not done["written"]:
        print(f"{done['stopped']} before the first evaluation: nothing written ({done['out']} is as it was)")
        return 130
    if done["stopped"]:
        print(
            f"{done['stopped']}: wrote the best actor so far",
            file=sys.stdout if done["interrupted"] else sys.stderr,
        )
    print(f"wrote {done['out']} (actor of step {done['exported_step']}); "
          f"check it with: python -m policies.evaluate {done['out']}")  # fmt: skip
    if done["stopped"]:
        return 130 if done["interrupted"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
