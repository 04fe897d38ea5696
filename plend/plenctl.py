"""``plenctl``: the operator's command line for a running plend.

Talks to the daemon's control socket (``--socket``, ``$PLEND_SOCKET`` or
``/run/plend/plend.sock``). Errors print one line ``plenctl: error: ...`` and exit 1;
set ``PLEND_DEBUG=1`` for a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from plend.config import SocketConfig
from plend.errors import ConnectionLostError, PlendError
from plend.server import PROTOCOL_VERSION

TIMEOUT_S = 5.0


class ClientError(PlendError, ConnectionError):
    """The daemon cannot be reached or refused a request (``code``: the daemon's error code)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class Client:
    """One connection to the daemon; requests are sent one at a time."""

    def __init__(self, path: Path, timeout: float = TIMEOUT_S):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except FileNotFoundError:
            raise ClientError(f"plend is not running (no socket at {path})") from None
        except ConnectionRefusedError:
            raise ClientError(f"plend is not running (nothing listens on {path})") from None
        except PermissionError:
            raise ClientError(f"permission denied on {path}; join the plend group or use sudo") from None
        self._file = self._sock.makefile("rwb")

    def request(self, cmd: str, **args: Any) -> Any:
        line = json.dumps({"v": PROTOCOL_VERSION, "cmd": cmd, "args": args}).encode() + b"\n"
        try:
            self._file.write(line)
            self._file.flush()
            reply_line = self._file.readline()
        except OSError as exc:
            raise ConnectionLostError(f"lost the connection to plend at {self.path}: {exc}") from None
        if not reply_line:
            raise ConnectionLostError(f"plend at {self.path} closed the connection")
        reply = json.loads(reply_line)
        if not reply.get("ok"):
            raise ClientError(f"{reply.get('message')} [{reply.get('error')}]", reply.get("error"))
        return reply["result"]

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the daemon went away first: nothing left to flush
            self._file.close()
        self._sock.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plenctl", description="Control a running plend.")
    p.add_argument(
        "--socket", type=Path, help="control socket (default $PLEND_SOCKET or /run/plend/plend.sock)"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", help="mode, timing, joints, IMU, faults")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS", help="refresh")
    for name, text in (
        ("stand", "move to the stand pose"),
        ("relax", "unpower the servos"),
        ("stop", "stop at the next safe point and stand"),
        ("estop", "relax at once; latched until reset"),
        ("reset", "clear the e-stop and latched faults (the robot stays relaxed)"),
    ):
        sub.add_parser(name, help=text)
    gait = sub.add_parser("gait", help="walk on a gait")
    gait.add_argument("name", choices=("sine",))
    gait.add_argument("--speed", type=float, default=0.5, help="speed in [-1, 1] (default 0.5)")
    replay = sub.add_parser("replay", help="play a recorded joint trajectory (CSV or NPY)")
    replay.add_argument("file", type=Path)
    replay.add_argument("--rate", type=float, help="samples per second (overrides the file's)")
    policy = sub.add_parser("policy", help="ONNX walking policies")
    policy_sub = policy.add_subparsers(dest="action", required=True)
    policy_sub.add_parser("load", help="load and check a policy file").add_argument("file", type=Path)
    policy_sub.add_parser("start", help="walk on the loaded policy")
    calibrate = sub.add_parser(
        "calibrate", help="the servo and IMU calibration wizard",
        description="Walk through calibrating every joint (or those named with --joint) and the IMU, "
        "then review and save. Interactive by default; --answers or --operator sim run it unattended.",
    )  # fmt: skip
    calibrate.add_argument(
        "--joint", action="append", default=[], metavar="NAME", help="only this joint (repeatable)"
    )
    calibrate.add_argument("--answers", type=Path, metavar="FILE", help="answers file (TOML): scripted mode")
    calibrate.add_argument(
        "--operator", choices=("person", "sim"), default="person",
        help="sim: on a simulated robot, align joints from the simulation's ground truth",
    )  # fmt: skip
    calibrate.add_argument("--yes", action="store_true", help="scripted: resume, horns fitted, IMU, save")
    imu = calibrate.add_mutually_exclusive_group()
    imu.add_argument("--imu", dest="imu", action="store_true", default=None, help="calibrate the IMU too")
    imu.add_argument("--no-imu", dest="imu", action="store_false", help="leave the IMU as it is")
    imu.add_argument("--imu-only", action="store_true", help="only the IMU; the joints stay as stored")
    calibrate.add_argument(
        "--servos", action="store_true",
        help="measure each servo's response (delay, lag, dead band, backlash, speed) on a calibrated robot",
    )  # fmt: skip
    calibration = sub.add_parser("calibration", help="the servo and IMU calibration file")
    calibration_sub = calibration.add_subparsers(dest="action", required=True)
    show = calibration_sub.add_parser("show", help="print the stored calibration and what changed")
    show.add_argument("--file", type=Path, help="default: calibration.json in the state directory")
    record = sub.add_parser("record", help="telemetry recording to MCAP")
    record_sub = record.add_subparsers(dest="action", required=True)
    record_sub.add_parser("start", help="start recording").add_argument("--out", type=Path)
    record_sub.add_parser("stop", help="stop recording")
    return p


def _socket_path(args: argparse.Namespace) -> Path:
    return args.socket or Path(os.environ.get("PLEND_SOCKET") or SocketConfig().path)


def _request(client: Client, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd == "gait":
        return client.request("gait", name=args.name, speed=args.speed)
    if cmd == "replay":
        extra = {} if args.rate is None else {"rate_hz": args.rate}
        return client.request("replay", path=str(args.file.resolve()), **extra)
    if cmd == "policy":
        if args.action == "load":
            return client.request("policy_load", path=str(args.file.resolve()))
        return client.request("policy_start")
    if cmd == "record":
        if args.action == "start":
            return client.request("record_start", **({"out": str(args.out.resolve())} if args.out else {}))
        return client.request("record_stop")
    return client.request(cmd)


def _fmt(value: float | None, width: int = 8) -> str:
    return f"{value:+{width}.3f}" if value is not None and math.isfinite(value) else f"{'-':>{width}}"


def format_status(s: dict[str, Any]) -> str:
    """The status as a readable table."""
    rate = s["rate_hz"]
    c, lat = s["compute_ms"], s["lateness_ms"]
    lines = [
        f"mode      {s['mode']}{'  (E-STOP LATCHED)' if s['estop'] else ''}   hal {s['hal']}",
        f"rate      {rate['achieved']:.1f} / {rate['configured']:.0f} Hz   ticks {s['ticks']}   "
        f"overruns {s['overruns']}",
        f"compute   p50 {c['p50']:.3f}  p99 {c['p99']:.3f}  max {c['max']:.3f} ms",
        f"lateness  p50 {lat['p50']:.3f}  p99 {lat['p99']:.3f}  max {lat['max']:.3f} ms",
    ]
    if "imu" in s:
        roll, pitch, yaw = s["imu"]["euler_deg"]
        contacts = s["contacts"]
        feet = "n/a" if contacts is None else (
            f"R {'down' if contacts['right'] else 'up'}  L {'down' if contacts['left'] else 'up'}"
        )  # fmt: skip
        lines.append(f"imu       roll {roll:+.1f}  pitch {pitch:+.1f}  yaw {yaw:+.1f} deg   feet {feet}")
    if "hardware" in s:
        lines.append("hardware  " + ", ".join(f"{k} {v}" for k, v in s["hardware"].items()))
    for fault in s.get("sensor_faults", []):
        lines.append(f"sensor    {fault}")
    safety = ", ".join(f"{k} {v}" for k, v in s["safety"].items())
    lines.append(f"safety    {safety}")
    rec = s["recording"]
    lines.append(f"recording {'to ' + str(rec['path']) if rec['recording'] else 'off'}")
    faults = s["faults"]
    lines.append(
        "faults    " + ("none" if not faults else "; ".join(f"{f['code']}: {f['message']}" for f in faults))
    )
    if "joints" in s:
        lines.append("")
        lines.append(f"{'joint':<22}{'target':>9}{'measured':>9}{'lower':>8}{'upper':>8}")
        for j in s["joints"]:
            lines.append(
                f"{j['name']:<22}{_fmt(j['target'], 9)}{_fmt(j['measured'], 9)}"
                f"{j['lower']:+8.2f}{j['upper']:+8.2f}"
            )
    return "\n".join(lines)


def _print(args: argparse.Namespace, result: Any) -> None:
    if args.command == "status" and not args.json:
        print(format_status(result))
    elif args.command == "status":
        print(json.dumps(result, indent=2))
    elif isinstance(result, dict) and set(result) == {"mode"}:
        print(f"mode: {result['mode']}")
    else:
        print(json.dumps(result))


def _show_calibration(path: Path | None) -> str:
    """The calibration file as a table (read locally: no daemon needed)."""
    from calibration.store import backup_path, describe, load, load_optional
    from plend.config import PathsConfig

    path = path or Path(PathsConfig().state_dir) / "calibration.json"
    record = load_optional(path)
    if record is None:
        raise ClientError(f"no calibration at {path}; calibrate the robot first")
    return f"{path}\n" + describe(load(path), load_optional(backup_path(path)))


def _calibration_plan(args: argparse.Namespace) -> tuple[Any, Any]:
    """The wizard's operator and options from the command line, checked before connecting."""
    from calibration import wizard
    from plend.robot import JOINTS

    if args.imu_only and args.joint:
        raise ClientError("--imu-only calibrates no joint; drop --joint, or drop --imu-only")
    if args.servos and (args.imu_only or args.imu is not None):
        raise ClientError("--servos measures the servos only; run the IMU's calibration on its own")
    wired = [j.name for j in JOINTS if j.wired]
    unknown = [name for name in args.joint if name not in wired]
    if unknown:
        raise ClientError(f"no servo joint {', '.join(unknown)}; joints: {', '.join(wired)}")
    answers: dict[str, Any] = {}
    if args.answers is not None:
        answers = wizard.ScriptedOperator.from_file(args.answers).answers
    if args.yes:
        answers = {"resume": True, "horns": False, "imu": True, "save": True, **answers}
    operator: wizard.Operator
    if args.operator == "sim":
        operator = wizard.SimulatedOperator(answers)
    elif args.answers is not None or args.yes:
        operator = wizard.ScriptedOperator(answers)
    elif not sys.stdin.isatty():
        raise ClientError("the wizard needs a terminal; unattended, give --answers FILE (or --operator sim)")
    else:
        operator = wizard.KeyboardOperator()
    return operator, wizard.Options(joints=tuple(args.joint), imu=args.imu, imu_only=args.imu_only)


def _watch(client: Client, args: argparse.Namespace) -> int:
    while True:
        result = client.request("status")
        sys.stdout.write("\x1b[H\x1b[2J" + format_status(result) + "\n")
        sys.stdout.flush()
        time.sleep(args.watch)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``plenctl``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "calibration":
            print(_show_calibration(args.file))
            return 0
        plan = _calibration_plan(args) if args.command == "calibrate" else None
        client = Client(_socket_path(args))
        try:
            if args.command == "status" and args.watch:
                return _watch(client, args)
            if plan is not None and args.servos:
                from calibration.servo_wizard import run as run_servo_wizard

                return run_servo_wizard(client, *plan)
            if plan is not None:
                from calibration.wizard import run as run_wizard

                return run_wizard(client, *plan)
            _print(args, _request(client, args))
        finally:
            client.close()
        return 0
    except PlendError as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"plenctl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
