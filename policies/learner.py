"""Off-policy learning with the simulations in worker processes, overlapped with learning.

Where the time of learning goes (``tests/benchmarks/training_speed.py``): one TD3
gradient step (two critics and, every second step, the actor, on a batch of 256) costs
several environment steps of CPU, and stable-baselines3's own loop runs one gradient step
per environment step, the simulation and the learning one after the other on one core.
:class:`Learner` keeps stable-baselines3's TD3 update (``model.train``) and its replay
buffer, and drives them differently:

- the environments step in ``envs`` worker processes (stable-baselines3's
  ``SubprocVecEnv``), and while they simulate the main process runs the gradient steps:
  ``step_async``, train, ``step_wait``;
- ``updates_per_step`` gradient steps per environment step (0.25 by default: fewer,
  larger-batch updates; TD3's one-to-one ratio is the cost the benchmark measures);
- the periodic evaluation of the deterministic policy runs in its own process on a copy
  of the actor, so learning never waits for it; the best actor so far is kept: the one
  that fell in the fewest of its walks, then the one with the highest score (a walk that
  falls late can score more than one that stands still to recover, and falls come first).

A stop request (Ctrl-C or SIGTERM, see :func:`stop_on_signals`) ends the loop at the
next step; the caller exports the best actor so far.
"""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EVAL_WORLDS = (900_001, 900_002, 900_003)  # suite worlds the periodic evaluation walks


@dataclass(frozen=True)
class LearnSettings:
    """How to learn (see :mod:`policies.train` for each option)."""

    steps: int
    learning_starts: int = 5000
    critic_warmup: int = 20_000
    updates_per_step: float = 0.25
    batch_size: int = 256
    noise: float = 0.2
    eval_every: int = 25_000
    log_every_s: float = 60.0
    # Until learning_starts: uniformly random actions (true), or the actor's with noise,
    # for an actor that starts from a trained policy (false).
    random_start: bool = True
    evaluate_first: bool = False  # evaluate the actor it starts from, at step 0


@dataclass
class Progress:
    """What the learning has done so far."""

    steps: int = 0
    updates: int = 0
    episodes: int = 0
    returns: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best: tuple[float, int, Any] | None = None  # (score, step, actor)
    stopped: str = ""  # why it stopped early ("" when it ran every step)
    learning_since: tuple[float, int] | None = None  # (perf_counter, step) when learning began
    cpu_since: float = 0.0  # this process's CPU time (s) then

    def learning_rate(self) -> tuple[float, float]:
        """Steps per second and this process's CPU seconds per step since learning began."""
        if self.learning_since is None:
            return (float("nan"), float("nan"))
        t, step = self.learning_since
        steps = max(self.steps - step, 1)
        return (steps / max(time.perf_counter() - t, 1e-9), (time.process_time() - self.cpu_since) / steps)


def ignore_interrupts() -> None:
    """In a worker process: leave Ctrl-C to the main process, which stops them in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make Ctrl-C and SIGTERM set ``stop``; returns a function that restores the handlers."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def evaluation_episodes(spec: Any) -> list[tuple[int | None, tuple[tuple[float, tuple[float, ...]], ...]]]:
    """The periodic evaluation: (suite world or None for the nominal one, command
    schedule) pairs, every command clipped into the policy's ranges."""

    def clip(speed: float, turn: float, side: float) -> tuple[float, ...]:
        ranges = [spec.command_range(n) for n in ("speed", "turn", "side")]
        return tuple(min(max(v, lo), hi) for v, (lo, hi) in zip((speed, turn, side), ranges, strict=True))

    return [
        (None, ((0.0, clip(0.5, 0.0, 0.0)),)),
        (None, ((0.0, clip(1.0, 0.0, 0.0)),)),
        (EVAL_WORLDS[0], ((0.0, clip(0.5, 0.0, 0.0)), (6.0, clip(0.5, 0.5, 0.0)))),
        (EVAL_WORLDS[1], ((0.0, clip(1.0, 0.0, 0.0)),)),
        (EVAL_WORLDS[2], ((0.0, clip(0.25, -0.5, 0.0)), (6.0, clip(0.75, 0.0, 0.0)))),
    ]


def evaluate_actor(actor: Any, make_env: Callable[[], Any]) -> dict[str, Any]:
    """Walk ``actor`` deterministically through :func:`evaluation_episodes`: the mean
    return (the score) and, per episode, distance, lateral drift, yaw and whether it fell."""
    import torch

    from plend.core.config import SimWorld
    from plend.model.worlds import draw_world

    torch.set_num_threads(1)
    env = make_env()
    walks = []
    for world_n, schedule in evaluation_episodes(env.policy_spec):
        world = SimWorld() if world_n is None else draw_world(world_n)
        obs, _ = env.reset(options={"world": world, "schedule": schedule})
        total, done, info = 0.0, False, {}
        while not done:
            with torch.no_grad():
                action = actor(torch.as_tensor(obs[None, :])).numpy()[0]
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        walks.append({"return": total, "distance_m": info["distance_m"], "lateral_m": info["lateral_m"],
                      "yaw_deg": info["yaw_deg"], "fell": info["fell"] is not None})  # fmt: skip
    env.close()
    return {"score": float(np.mean([w["return"] for w in walks])), "walks": walks}


def falls(result: dict[str, Any]) -> int:
    """How many walks of an evaluation fell."""
    return sum(bool(w["fell"]) for w in result["walks"])


def rank(result: dict[str, Any]) -> tuple[int, float]:
    """How an evaluation ranks, lower first: the walks that fell, then minus the score."""
    return (falls(result), -float(result["score"]))


class WorkerDiedError(RuntimeError):
    """A simulation worker process ended (its traceback is on stderr)."""


def wait_for_workers(venv: Any, poll_s: float = 1.0) -> None:
    """Wait until every worker of a ``SubprocVecEnv`` (under any wrappers) has answered,
    raising :class:`WorkerDiedError` if one has died: its pipe would otherwise wait forever."""
    while hasattr(venv, "venv") and not hasattr(venv, "remotes"):
        venv = venv.venv
    for index, (remote, process) in enumerate(zip(venv.remotes, venv.processes, strict=True)):
        while not remote.poll(poll_s):
            if not process.is_alive():
                raise WorkerDiedError(f"simulation worker {index} died (exit code {process.exitcode})")


def stop_workers(venv: Any) -> None:
    """Close the environments; after a worker died, end the others instead of waiting."""
    inner = venv
    while hasattr(inner, "venv") and not hasattr(inner, "processes"):
        inner = inner.venv
    processes = getattr(inner, "processes", [])
    if all(p.is_alive() for p in processes):
        venv.close()
        return
    for process in processes:
        process.terminate()
        process.join(5)


class Learner:
    """Runs TD3 (a stable-baselines3 model) on a ``VecEnv`` as the module docstring says.

    Args:
        model: the TD3 model; its replay buffer holds ``venv.num_envs`` environments.
        venv: the environments (worker processes), wrapped in a ``VecMonitor``.
        settings: the schedule of learning.
        make_eval_env: builds the evaluation's environment (in the evaluation process;
            must be picklable); None: no evaluation, the last actor is the result.
        stop: set to end the learning at the next step.
        log: where progress lines go.
    """

    def __init__(
        self,
        model: Any,
        venv: Any,
        settings: LearnSettings,
        make_eval_env: Callable[[], Any] | None,
        stop: threading.Event,
        log: Callable[[str], None] | None = None,
    ):
        self.model, self.venv, self.settings = model, venv, settings
        self.make_eval_env, self.stop = make_eval_env, stop
        self.log = log or (lambda line: print(line, flush=True))
        # Called with (step, actor) for each new best actor (e.g. to export it at once).
        self.on_best: Callable[[int, Any], None] | None = None
        # Called with (step, actor, result) for every evaluation (e.g. to keep each actor).
        self.on_evaluated: Callable[[int, Any, dict[str, Any]], None] | None = None
        self.progress = Progress()
        self._owed = 0.0
        self._submitted = -1
        self._pending: dict[concurrent.futures.Future[dict[str, Any]], tuple[int, Any]] = {}
        self._rng = np.random.default_rng(model.seed)
        self._best_rank: tuple[int, float] | None = None

    def run(self) -> Progress:
        """Learn for ``settings.steps`` environment steps (or until stopped)."""
        s, p = self.settings, self.progress
        pool = self._evaluation_pool()
        self._hold_actor(True)
        obs = self.venv.reset()
        if s.evaluate_first:
            self._submit(pool)
        began = last_log = time.perf_counter()
        try:
            while p.steps < s.steps and not self.stop.is_set():
                actions = self._act(obs)
                self.venv.step_async(actions)
                self._learn()
                wait_for_workers(self.venv)
                new_obs, rewards, dones, infos = self.venv.step_wait()
                self._store(obs, new_obs, actions, rewards, dones, infos)
                obs = new_obs
                self._after_step(pool)
                if time.perf_counter() - last_log >= s.log_every_s:
                    last_log = time.perf_counter()
                    self._log_progress(last_log - began)
            if self.stop.is_set():
                p.stopped = "stopped by a signal"
        except WorkerDiedError as exc:
            p.stopped = str(exc)
        try:
            self._finish(pool, wait=not p.stopped)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        return p

    # -- one step ---------------------------------------------------------------------

    def _act(self, obs: np.ndarray) -> np.ndarray:
        import torch

        n = self.venv.num_envs
        shape = (n, *self.venv.action_space.shape)
        if self.settings.random_start and self.progress.steps < self.settings.learning_starts:
            return self._rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        with torch.no_grad():
            action = self.model.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        noise = self._rng.normal(0.0, self.settings.noise, shape)
        return np.clip(action + noise, -1.0, 1.0).astype(np.float32)

    def _learn(self) -> None:
        s = self.settings
        if self.progress.steps < s.learning_starts:
            return
        if self.progress.learning_since is None:
            self.progress.learning_since = (time.perf_counter(), self.progress.steps)
            self.progress.cpu_since = time.process_time()
        self._owed += s.updates_per_step * self.venv.num_envs
        count = int(self._owed)
        if count:
            self._owed -= count
            self.model.train(gradient_steps=count, batch_size=s.batch_size)
            self.progress.updates += count

    def _store(self, obs: Any, new_obs: Any, actions: Any, rewards: Any, dones: Any, infos: Any) -> None:
        next_obs = np.array(new_obs, copy=True)
        for i, done in enumerate(dones):
            if done:
                terminal = infos[i].get("terminal_observation")
                if terminal is not None:
                    next_obs[i] = terminal
                episode = infos[i].get("episode")
                if episode is not None:
                    self.progress.episodes += 1
                    self.progress.returns.append(float(episode["r"]))
        self.model.replay_buffer.add(obs, next_obs, actions, rewards, dones, infos)

    def _after_step(self, pool: Any) -> None:
        p, s = self.progress, self.settings
        before = p.steps
        p.steps += self.venv.num_envs
        self.model.num_timesteps = p.steps
        if before < s.learning_starts + s.critic_warmup <= p.steps:
            self._hold_actor(False)
        if s.eval_every and before // s.eval_every != p.steps // s.eval_every:
            self._submit(pool)
        self._collect(wait=False)

    def _hold_actor(self, held: bool) -> None:
        """Freeze the actor while only the critics learn (the critic warm-up)."""
        held = held and self.settings.critic_warmup > 0
        self.model.actor.requires_grad_(not held)  # its optimiser then changes nothing

    # -- evaluation -------------------------------------------------------------------

    def _evaluation_pool(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if self.make_eval_env is None or not self.settings.eval_every:
            return None
        context = multiprocessing.get_context("spawn")
        return concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=ignore_interrupts)

    def _submit(self, pool: Any) -> None:
        if pool is None:
            return
        actor = copy.deepcopy(self.model.actor).cpu().eval()
        future = pool.submit(evaluate_actor, actor, self.make_eval_env)
        self._pending[future] = (self.progress.steps, actor)
        self._submitted = self.progress.steps

    def _collect(self, wait: bool) -> None:
        if not self._pending:
            return
        done = concurrent.futures.wait(self._pending, timeout=None if wait else 0).done
        for future in done:
            step, actor = self._pending.pop(future)
            result = future.result()
            self._record(step, actor, result)

    def _record(self, step: int, actor: Any, result: dict[str, Any]) -> None:
        p = self.progress
        p.evaluations.append({"step": step, **result})
        if self.on_evaluated is not None:
            self.on_evaluated(step, actor, result)
        best = self._best_rank is None or rank(result) < self._best_rank
        if best:
            self._best_rank = rank(result)
            p.best = (result["score"], step, actor)
            if self.on_best is not None:
                self.on_best(step, actor)
        walks = "  ".join(
            f"{w['distance_m']:.2f}m {w['yaw_deg']:+.0f}deg{' FELL' if w['fell'] else ''}"
            for w in result["walks"]
        )
        self.log(f"eval at step {step}: score {result['score']:.1f}{' (best)' if best else ''}  {walks}")

    def _finish(self, pool: Any, wait: bool) -> None:
        if wait and pool is not None:
            if self._submitted != self.progress.steps:
                self._submit(pool)  # the last actor is evaluated too
            self._collect(wait=True)
        if self.progress.best is None:
            actor = copy.deepcopy(self.model.actor).cpu().eval()
            self.progress.best = (float("nan"), self.progress.steps, actor)

    def _log_progress(self, elapsed: float) -> None:
        p = self.progress
        mean = float(np.mean(p.returns)) if p.returns else float("nan")
        self.log(
            f"step {p.steps}  {p.steps / max(elapsed, 1e-9):.0f} steps/s  updates {p.updates}  "
            f"episodes {p.episodes}  mean return of the last {len(p.returns)}: {mean:.1f}"
        )
