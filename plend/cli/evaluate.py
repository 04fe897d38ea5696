"""``plend evaluate``: walk any walker (a gait or a policy) through the robustness suite.

Each world is one :func:`plend.daemon.headless.run` (the daemon's loop, supervisor, safety filter
and behaviours, on the simulated clock) of world ``n`` of the suite, run in parallel worker
processes, one simulation each. The table and the JSON give per world the distance and
lateral drift along and across the starting heading, the heading change and its rate,
whether and when it fell; and over all worlds the falls, the median and worst absolute
lateral drift and heading change, and the mean distance.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from plend.core.config import Config
from plend.core.errors import ConfigError
from plend.daemon.headless import RunOptions, run
from plend.model.sim_world import world_dict
from plend.model.worlds import draw_world


@dataclass(frozen=True)
class Plan:
    """What to evaluate: the walker, and on which worlds.

    Attributes:
        config: the configuration every world starts from (its ``[sim]`` is the base world).
        options: the walker and how long it walks (``duration_s``).
        seeds: the suite's world numbers; empty: the configured world alone.
        factors: the suite's factors drawn (None: all).
        keep: ``[sim]`` keys the command line set (``--friction``, ``--set sim.KEY=V``): they
            hold in every world, over what the suite draws, as in ``plend run --world-seed``.
    """

    config: Config
    options: RunOptions
    seeds: tuple[int, ...] = ()
    factors: tuple[str, ...] | None = None
    keep: tuple[str, ...] = ()

    def configs(self) -> list[tuple[str, Config]]:
        """(name, config) of every world, in order."""
        if not self.seeds:
            return [("configured", self.config)]
        kept = {key: getattr(self.config.sim, key) for key in self.keep}
        return [
            (str(n), dataclasses.replace(
                self.config, sim=dataclasses.replace(draw_world(n, self.config.sim, self.factors), **kept)
            ))
            for n in self.seeds
        ]  # fmt: skip


def walk_world(name: str, config: Config, options: RunOptions) -> dict[str, Any]:
    """One world's row (run in a worker process)."""
    logging.getLogger("plend").setLevel(logging.CRITICAL)  # falls are in the table
    summary = run(config, options)
    duration = max(float(summary["duration_s"]), 1e-9)
    yaw = float(summary.get("yaw_deg", 0.0))
    return {
        "world": name,
        "distance_m": summary.get("distance_m"),
        "walked_m": summary.get("walked_m"),  # along the heading, tick by tick: a turn's path
        "lateral_m": summary.get("lateral_m"),
        "yaw_deg": yaw,
        "yaw_rate_deg_s": summary.get("yaw_rate_deg_s", round(yaw / duration, 3)),
        "fell": bool(summary["fell"]),
        "time_to_fall_s": summary.get("time_to_fall_s"),
        "duration_s": summary["duration_s"],
        "wall_s": summary["wall_s"],
        "safety_interventions": summary["safety_interventions"],
        "parameters": world_dict(config.sim),
    }


def evaluate(
    plan: Plan, jobs: int = 1, progress: Callable[[int, int, int], None] | None = None
) -> list[dict[str, Any]]:
    """Walk every world of ``plan`` on ``jobs`` processes; rows in world order.

    ``progress(done, total, fell)`` is called after each world.
    """
    worlds = plan.configs()
    rows: dict[int, dict[str, Any]] = {}

    def finished(index: int, row: dict[str, Any]) -> None:
        rows[index] = row
        if progress is not None:
            progress(len(rows), len(worlds), sum(r["fell"] for r in rows.values()))

    if jobs <= 1 or len(worlds) == 1:
        for index, (name, config) in enumerate(worlds):
            finished(index, walk_world(name, config, plan.options))
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared with this one
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(worlds)), mp_context=context) as pool:
            futures = {pool.submit(walk_world, n, c, plan.options): i for i, (n, c) in enumerate(worlds)}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
    return [rows[i] for i in range(len(worlds))]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Falls, median and worst |lateral| and |yaw|, mean distance, over ``rows``."""
    lateral = [abs(r["lateral_m"]) for r in rows if r["lateral_m"] is not None]
    yaw = [abs(r["yaw_deg"]) for r in rows]
    distance = [r["distance_m"] for r in rows if r["distance_m"] is not None]
    return {
        "worlds": len(rows),
        "falls": sum(r["fell"] for r in rows),
        "median_abs_lateral_m": _round(statistics.median(lateral) if lateral else None, 4),
        "worst_abs_lateral_m": _round(max(lateral, default=None), 4),
        "median_abs_yaw_deg": _round(statistics.median(yaw) if yaw else None, 2),
        "worst_abs_yaw_deg": _round(max(yaw, default=None), 2),
        "mean_distance_m": _round(statistics.fmean(distance) if distance else None, 4),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def format_table(rows: list[dict[str, Any]], total: dict[str, Any]) -> str:
    """The rows and the totals as a text table."""
    lines = [
        f"{'world':>10} {'distance m':>10} {'lateral m':>9} {'yaw deg':>8} {'yaw deg/s':>9} "
        f"{'fell':>5} {'at s':>6}"
    ]
    for r in rows:
        at = "" if r["time_to_fall_s"] is None else f"{r['time_to_fall_s']:.2f}"
        lines.append(
            f"{r['world']:>10} {_num(r['distance_m'], 10, 3)} {_num(r['lateral_m'], 9, 3)} "
            f"{r['yaw_deg']:8.1f} "
            f"{r['yaw_rate_deg_s']:9.2f} {'yes' if r['fell'] else 'no':>5} {at:>6}"
        )
    lines.append(
        f"falls {total['falls']}/{total['worlds']}; |lateral| median {total['median_abs_lateral_m']} m, "
        f"worst {total['worst_abs_lateral_m']} m; |yaw| median {total['median_abs_yaw_deg']} deg, "
        f"worst {total['worst_abs_yaw_deg']} deg; mean distance {total['mean_distance_m']} m"
    )
    return "\n".join(lines)


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


class ProgressBar:
    """A one-line progress bar on ``stream``: redrawn in place on a terminal, otherwise a
    line at every tenth of the way."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream, self.width = stream or sys.stderr, width
        self.started = time.perf_counter()
        self._tty = self.stream.isatty()
        self._last_tenth = -1

    def __call__(self, done: int, total: int, fell: int) -> None:
        filled = round(self.width * done / max(total, 1))
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {done}/{total} worlds, {fell} fell, {elapsed:.0f} s"
        if self._tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
        elif (tenth := 10 * done // max(total, 1)) != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(text + "\n")
        self.stream.flush()


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def world_seeds(first: int, count: int) -> tuple[int, ...]:
    """World numbers ``first`` .. ``first + count - 1``, checked."""
    if isinstance(count, bool) or not 1 <= count <= 10000:
        raise ConfigError(f"--worlds {count} is out of range; use 1 to 10000")
    if not 0 <= first <= 2**32 - 1 - count:
        raise ConfigError(f"--first {first} is out of range; use 0 to {2**32 - 1 - count}")
    return tuple(range(first, first + count))


def check_plan(plan: Plan) -> None:
    """Refuse, before any world runs, what would fail in every one of them."""
    if plan.config.hal != "sim" and plan.config.hardware.bus != "emulated":
        raise ConfigError(
            "plend evaluate runs in simulation only (--hal sim, or --hal hardware --bus emulated)"
        )
    from plend.hal.sim import robot_model

    robot_model(plan.config.sim)  # a model that is not the robot: one line, nothing run
    if plan.options.policy is not None:
        from policies.runner import load_runner

        rate, limit = plan.config.loop.rate_hz, plan.config.limits.max_policy_bytes
        runner = load_runner(plan.options.policy, rate, "sim", None, max_bytes=limit)
        runner.spec.check_command(plan.options.speed, plan.options.turn, plan.options.side)


def run_plan(plan: Plan, jobs: int, progress: bool, out: TextIO | None = None) -> dict[str, Any]:
    """Check, evaluate, print the table; return the report (what ``--json`` writes)."""
    out = out or sys.stdout
    check_plan(plan)
    began = time.perf_counter()
    rows = evaluate(plan, jobs, ProgressBar() if progress else None)
    total = totals(rows)
    o = plan.options
    walker = f"policy {o.policy}" if o.policy else f"{o.gait} gait, speed {o.speed}"
    print(f"{walker}: {len(rows)} world(s) x {o.duration_s:g} s", file=out)
    print(format_table(rows, total), file=out)
    return {
        "walker": {
            k: str(v) if k == "policy" and v is not None else v for k, v in vars(plan.options).items()
        },
        "seconds": plan.options.duration_s,
        "factors": list(plan.factors) if plan.factors is not None else "all",
        "jobs": jobs,
        "wall_s": round(time.perf_counter() - began, 2),
        "versions": library_versions(),
        "totals": total,
        "worlds": rows,
    }


def library_versions() -> dict[str, str]:
    """The versions of the libraries a walk's arithmetic runs on, and the vector
    instructions numpy uses on this processor. A walk on a randomised world is chaotic:
    another numpy or pybullet, or the same numpy on a processor with other vector
    instructions (it picks its kernels at run time), can turn a world that stood into one
    that fell, so a report says which it was measured with."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("numpy", "pybullet", "onnxruntime"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["numpy_simd"] = _numpy_simd()
    return found


def _numpy_simd() -> str:
    """The run-time dispatched instruction sets numpy uses here (e.g. ``X86_V3 X86_V4``)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # another numpy layout: say so rather than guess
        return "unknown"
    used = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    return " ".join(used) or "baseline only"


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``section.key=VALUE`` items (VALUE in TOML) as nested dictionaries."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: use KEY=VALUE, e.g. --set sim.friction=0.6")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(
                f"--set {item!r}: {text.strip()!r} is not a TOML value (strings need quotes)"
            ) from None
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
