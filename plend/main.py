"""``plend``: the composition root and command line.

``plend run`` runs one behaviour headless for a fixed time and can print a summary.
Set ``PLEND_DEBUG=1`` to see tracebacks instead of one-line errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plend import __version__
from plend.cli.recording_cli import (
    add_recording_commands,
    add_video_options,
    record_path,
    run_recording_command,
    video_options,
)
from plend.core.config import Config, as_dict, from_dict, load, replace_section
from plend.core.console import reader_went_away
from plend.core.errors import ConfigError, PlendError
from plend.core.files import absolute, path_argument, refuse_existing, write_new
from plend.hal import backend_names

if TYPE_CHECKING:
    from plend.daemon.headless import RunOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plend", description="On-robot software of a PLEN2-class biped.")
    parser.add_argument("--version", action="version", version=f"plend {__version__}")
    parser.add_argument(
        "--config", type=path_argument, help="TOML config file (default /etc/plend/plend.toml if present)"
    )
    parser.add_argument("--dump-config", action="store_true", help="print the merged configuration and exit")
    # --config is also taken after the subcommand (plend run --config X); SUPPRESS keeps the
    # subcommand's absent option from overwriting one given before it.
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument(
        "--config", type=path_argument, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser(
        "safe-off", add_help=False,
        help="switch every PWM output off and stop the PCA9685 (the service runs this after a stop)",
    )  # fmt: skip
    probe = sub.add_parser(
        "probe", parents=[config_option],
        help="check the robot's chips: answers, configuration, readings, timing",
    )  # fmt: skip
    probe.add_argument("--bus", choices=("i2c", "emulated"), help="default from config: i2c")
    probe.add_argument("--samples", type=int, default=3, help="live readings per channel (default 3)")
    run = sub.add_parser(
        "run",
        parents=[config_option],
        help="run the daemon (or, with --fast, a batch simulation)",
        description="Run the control loop. In real time it serves the control socket for plenctl; "
        "with --fast (simulation only) it runs a batch as fast as the machine allows, without a socket.",
    )
    run.add_argument("--hal", choices=backend_names(), help="robot backend (default from config: sim)")
    run.add_argument(
        "--bus", choices=("i2c", "emulated"),
        help="hardware backend: the Pi's I2C bus, or emulated chips driving the simulation",
    )  # fmt: skip
    run.add_argument(
        "--gait", choices=("sine", "stand", "relax"),
        help="behaviour to start with (default: sine with --fast, stand in simulation, else relax)",
    )  # fmt: skip
    run.add_argument("--speed", type=float, default=0.5, help="walking speed in [-1, 1] (default 0.5)")
    run.add_argument(
        "--turn", type=float, default=0.0, help="turn while walking, in [-1, 1]; positive left (default 0)"
    )
    run.add_argument(
        "--side", type=float, default=0.0, help="step sideways, in [-1, 1]; positive steps left (default 0)"
    )
    run.add_argument(
        "--policy", type=path_argument, help="with --fast: walk on this ONNX policy instead of a gait"
    )
    run.add_argument("--duration", type=float, help="seconds to run (default: until stopped; 20 with --fast)")
    run.add_argument("--fast", action="store_true", help="simulation only: run as fast as the machine allows")
    run.add_argument(
        "--socket", type=path_argument, help="control socket path (default from config, or PLEND_SOCKET)"
    )
    run.add_argument("--no-socket", action="store_true", help="do not serve the control socket")
    run.add_argument(
        "--summary", choices=("json", "text", "none"), help="report on exit (default text with --fast)"
    )
    run.add_argument("--rate", type=float, help="control rate, Hz (default 50)")
    run.add_argument(
        "--record", type=path_argument, metavar="FILE.mcap",
        help="with --fast: record every tick (and the simulation's ground truth) to this MCAP file",
    )  # fmt: skip
    add_video_options(run)
    world = run.add_argument_group("simulated world (sim backend)")
    world.add_argument("--gui", action="store_true", help="show the PyBullet window")
    world.add_argument("--seed", type=int, help="random seed of the simulation")
    world.add_argument("--friction", type=float, help="ground friction coefficient (default 0.8)")
    world.add_argument("--mass-scale", type=float, help="multiply every link mass by this")
    world.add_argument("--mass-jitter", type=float, help="random per-link mass change, e.g. 0.2 for +-20%%")
    world.add_argument("--actuation-delay", type=int, help="ticks between a command and the servos")
    world.add_argument(
        "--servo-model", metavar="FILE",
        help="drive the simulated servos as identified on the robot: a calibration file from "
        "'plenctl calibrate --servos' ([sim] servo_model)",
    )  # fmt: skip
    add_world_options(world)
    add_world_command(sub)
    add_evaluate_command(sub)
    add_recording_commands(sub)
    from plend.cli.live import add_parser as add_live

    add_live(sub)
    from plend.track.cli import add_parser as add_track

    add_track(sub)
    return parser


def add_evaluate_command(sub: Any) -> None:
    """``plend evaluate``: a walker on N worlds of the robustness suite."""
    ev = sub.add_parser(
        "evaluate", help="walk a gait or policy through N worlds of the robustness suite; table and JSON",
        description="Walk a gait or a policy (as plend run --fast would) through worlds of the robustness "
        "suite in parallel processes, and print per world and overall: distance, lateral drift, heading "
        "change and rate, falls. Every option of plend run --fast also applies (--gait, --speed, --policy, "
        "--urdf, --friction, --factors A,B to draw only some factors, ...), and so does --config.",
    )  # fmt: skip
    ev.add_argument("--worlds", type=int, default=50, help="how many worlds of the suite (default 50)")
    ev.add_argument("--first", type=int, default=0, help="number of the first world (default 0)")
    ev.add_argument(
        "--as-configured", action="store_true", help="only the world as configured, nothing drawn"
    )
    ev.add_argument("--seconds", type=float, default=20.0, help="walking time per world (default 20)")
    ev.add_argument("--jobs", type=int, help="worker processes (default: the cores available)")
    ev.add_argument(
        "--json", type=path_argument, metavar="FILE", help="write the report as JSON here ('-' for stdout)"
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ev.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config value for every world, e.g. --set sim.friction=0.6 (TOML value); repeatable",
    )  # fmt: skip


def add_world_options(group: argparse._ArgumentGroup) -> None:
    """The robot model and the robustness suite's world (``plend run`` and ``plend evaluate``)."""
    group.add_argument(
        "--urdf", type=path_argument, help="simulate this URDF of the robot (its 18 joints by name)"
    )
    group.add_argument(
        "--world-seed", type=int, metavar="N",
        help="draw world N of the robustness suite (plend world N prints it as config)",
    )  # fmt: skip
    group.add_argument(
        "--factors",
        metavar="A,B",
        help="with --world-seed: draw only these factors (default all; see plend world --help)",
    )


def add_world_command(sub: Any) -> None:
    """``plend world N``: print world N of the robustness suite as config."""
    from plend.model.worlds import FACTORS

    world = sub.add_parser(
        "world", help="print world N of the robustness suite as the [sim] tables of a config file",
        description=f"Print world N of the robustness suite as config. Factors: {', '.join(FACTORS)}.",
    )  # fmt: skip
    world.add_argument("seed", type=int, metavar="N", help="the world's number")
    world.add_argument("--factors", metavar="A,B", help="draw only these factors (default all)")
    world.add_argument("--urdf", type=path_argument, help="the robot model the world starts from")


_WORLD_OPTIONS = {
    "gui": "gui",
    "seed": "seed",
    "friction": "friction",
    "mass_scale": "mass_scale",
    "mass_jitter": "mass_jitter",
    "actuation_delay": "actuation_delay_ticks",
}


def apply_world_options(config: Config, args: argparse.Namespace) -> Config:
    """``--urdf``, ``--world-seed`` and ``--factors`` applied to ``config``'s world."""
    from plend.model.urdf_checks import absolute_model_path
    from plend.model.worlds import draw_world

    world = config.sim
    if getattr(args, "urdf", None) is not None:
        world = replace(world, urdf=absolute_model_path(args.urdf))
    factors = getattr(args, "factors", None)
    if getattr(args, "world_seed", None) is not None:
        world = draw_world(args.world_seed, world, parse_factors(factors))
    elif factors is not None:
        raise ConfigError("--factors needs --world-seed N (which world to draw them for)")
    return replace(config, sim=world)


def parse_factors(text: str | None) -> tuple[str, ...] | None:
    """``A,B`` -> the factor names, checked; None for all."""
    from plend.model.worlds import FACTORS, check_factors

    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--factors {text[:40]!r} names no factor; give some of: {', '.join(FACTORS)}")
    return check_factors(names)


def _apply_options(config: Config, args: argparse.Namespace) -> Config:
    from plend.core.servo_source import apply_servo_model

    if getattr(args, "servo_model", None) is not None:
        if not args.servo_model.strip():  # "" in config means none; on the command line, a mistake
            raise ConfigError("--servo-model needs the path of a calibration file; it was given ''")
        config = replace_section(config, "sim", servo_model=args.servo_model)
    config = apply_servo_model(config)
    config = apply_world_options(config, args)
    # "is not None": 0 is a value (--seed 0, --actuation-delay 0); --gui is False unless given.
    changes = {
        key: getattr(args, opt)
        for opt, key in _WORLD_OPTIONS.items()
        if getattr(args, opt) is not None and getattr(args, opt) is not False
    }
    if changes:
        config = replace_section(config, "sim", **changes)
    if args.rate is not None:
        config = replace_section(config, "loop", rate_hz=args.rate)
    if args.bus is not None:
        config = replace_section(config, "hardware", bus=args.bus)
    if args.hal is not None:
        config = replace(config, hal=args.hal)
    if args.bus is not None and config.hal != "hardware":
        raise ConfigError(
            f"--bus {args.bus} chooses the hardware backend's bus, but this run uses the {config.hal} "
            'backend; add --hal hardware (or set hal = "hardware" in the config)'
        )
    return config


def _dumped(config: Config) -> dict[str, Any]:
    """The configuration as --dump-config prints it: default paths filled in."""
    data = as_dict(config)
    data["paths"] = {
        "state_dir": str(config.paths.state_path()),
        "recordings_dir": str(config.paths.recordings_path()),
    }
    return data


def _print_summary(summary: dict[str, Any], style: str) -> None:
    if style == "json":
        print(json.dumps(summary), flush=True)
    elif style == "text":
        for key, value in summary.items():
            print(f"{key:>22}: {value}")


def _cmd_run(config: Config, args: argparse.Namespace) -> int:
    if args.fast:
        return _run_batch(config, args)
    if args.policy is not None:
        raise ConfigError(
            "--policy runs with --fast; to the daemon say: plenctl policy load FILE, plenctl policy start"
        )
    if args.video is not None:
        raise ConfigError("--video films a --fast run (a batch simulation); add --fast")
    if args.record is not None:
        raise ConfigError("--record is for --fast runs; to the daemon say: plenctl record start --out NAME")
    from plend.daemon.daemon import DaemonOptions, run_daemon
    from plend.daemon.service import setup_logging

    setup_logging()
    socket = None
    if not args.no_socket:
        socket = args.socket or Path(os.environ.get("PLEND_SOCKET") or config.socket.path)
    # The simulated robot appears standing; a real one starts with its servos unpowered.
    start = args.gait or ("stand" if config.hal == "sim" else "relax")
    options = DaemonOptions(
        socket=socket, start=start, speed=args.speed, duration_s=args.duration, turn=args.turn, side=args.side
    )
    code, summary = run_daemon(config, options)
    _print_summary(summary, args.summary or "none")
    return code


def _cmd_probe(config: Config, args: argparse.Namespace) -> int:
    from plend.cli.probe import probe

    if args.bus is not None:
        config = replace_section(config, "hardware", bus=args.bus)
    code, report = probe(config, max(1, min(10, args.samples)))
    print(report)
    return code


def _cmd_world(config: Config, args: argparse.Namespace) -> int:
    from plend.model.worlds import world_toml

    args.world_seed = args.seed
    print(world_toml(apply_world_options(config, args).sim), end="")
    return 0


def _cmd_evaluate(config: Config, args: argparse.Namespace, rest: list[str]) -> int:
    from plend.cli.evaluate import Plan, default_jobs, parse_settings, run_plan, world_seeds

    settings = parse_settings(args.set)
    config = apply_settings(config, settings)
    walker = _parser().parse_args(["run", "--fast", *rest])
    if walker.video is not None or walker.record is not None:
        raise ConfigError(
            "plend evaluate films and records nothing; for one world: plend run --fast --video/--record FILE"
        )
    if walker.world_seed is not None or walker.duration is not None:
        raise ConfigError("plend evaluate picks the worlds and the time: use --first/--worlds and --seconds")
    if walker.summary is not None or walker.socket is not None or walker.no_socket:
        raise ConfigError(
            "plend evaluate serves no socket and reports its own table (--json FILE for the figures); "
            "leave out --summary, --socket and --no-socket"
        )
    factors, walker.factors = parse_factors(walker.factors), None  # drawn per world below
    config = _apply_options(config, walker)
    options = replace(batch_options(walker), duration_s=args.seconds)
    seeds = () if args.as_configured else world_seeds(args.first, args.worlds)
    jobs = default_jobs() if args.jobs is None else args.jobs
    if not 1 <= jobs <= 256:
        raise ConfigError(f"--jobs {jobs} is out of range; use 1 to 256")
    # The [sim] keys the command line sets hold over every drawn world, as with plend run.
    given = {key for opt, key in _WORLD_OPTIONS.items() if getattr(walker, opt) not in (None, False)}
    keep = tuple(sorted((given | set(settings.get("sim", {}))) - {"seed"}))
    plan = Plan(config, options, seeds, factors, keep)
    to_stdout = args.json is not None and str(args.json) == "-"
    if args.json is not None and not to_stdout:
        refuse_existing("--json", args.json)  # before minutes of evaluation, not after
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        report = run_plan(plan, jobs, progress=not args.no_progress)  # the table: stderr under --json -
    text = json.dumps(report, indent=1) + "\n"
    if to_stdout:
        sys.stdout.write(text)
    elif args.json is not None:
        write_new("--json", args.json, text.encode())
    return 0


def apply_settings(config: Config, settings: dict[str, Any]) -> Config:
    """``config`` with ``settings`` (nested dictionaries, TOML layout) laid over it."""
    if not settings:
        return config

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            both = isinstance(value, dict) and isinstance(base.get(key), dict)
            out[key] = merge(base[key], value) if both else value
        return out

    return from_dict(merge(as_dict(config), settings))


def batch_options(args: argparse.Namespace) -> RunOptions:
    """What ``plend run --fast`` walks, from its options."""
    from plend.daemon.headless import RunOptions

    duration = 20.0 if args.duration is None else args.duration
    policy = absolute(args.policy, "--policy") if args.policy else None
    return RunOptions(
        gait=args.gait or "sine", speed=args.speed, duration_s=duration, fast=True, policy=policy,
        turn=args.turn, side=args.side, video=video_options(args), record=record_path(args),
    )  # fmt: skip


def _run_batch(config: Config, args: argparse.Namespace) -> int:
    from plend.daemon.headless import run

    if config.hal != "sim" and config.hardware.bus != "emulated":
        raise ConfigError("--fast runs in simulation only (--hal sim, or --hal hardware --bus emulated)")
    options = batch_options(args)
    if options.video is not None and config.hal != "sim":
        raise ConfigError("--video films the simulated robot; run with --hal sim")
    try:
        summary = run(config, options)
    except KeyboardInterrupt:
        print("plend: interrupted; the simulated robot was relaxed, the run not summarised", file=sys.stderr)
        return 130
    _print_summary(summary, args.summary or "text")
    return 1 if summary["fell"] else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``plend``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["safe-off"]:
        # Before the config is loaded: a broken config must not keep the servos powered.
        from plend.pwm_off import cli as safe_off

        return safe_off(argv[1:])
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "evaluate":
        parser.parse_args(argv)  # reports the unknown options and exits
    if args.command is None and not args.dump_config:
        args = parser.parse_args([*argv, "run"])  # plain `plend` runs the daemon
    try:
        config = load(args.config)
        if args.command == "run":
            config = _apply_options(config, args)
        if args.command == "probe":
            return _cmd_probe(config, args)
        if args.command == "track":
            from plend.track.cli import run as track

            return track(config, args)
        if args.command == "world":
            return _cmd_world(config, args)
        if args.command == "evaluate":
            return _cmd_evaluate(config, args, rest)
        if args.command in ("plot", "export"):
            return run_recording_command(args)
        if args.command == "live":
            from plend.cli.live import run as live

            return live(args)
        if args.dump_config:
            print(json.dumps(_dumped(config), indent=2))
            return 0
        return _cmd_run(config, args)
    except PlendError as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"plend: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plend: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_went_away()


if __name__ == "__main__":
    raise SystemExit(main())
