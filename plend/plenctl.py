"""``plenctl``: the operator's command line for a running plend.

Talks to the daemon's control socket (``--socket``, ``$PLEND_SOCKET`` or
``/run/plend/plend.sock``). Errors print one line ``plenctl: error: ...`` and exit 1;
set ``PLEND_DEBUG=1`` for a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from plend.cli.status_text import format_status
from plend.core.console import reader_went_away
from plend.core.errors import ConnectionLostError, PlendError
from plend.core.files import absolute, path_argument
from plend.core.locations import DEFAULT_SOCKET_PATH
from plend.core.replies import sentence

TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 16 << 20  # a status is a few KB; past this the other end is not plend


class ClientError(PlendError, ConnectionError):
    """The daemon cannot be reached or refused a request (``code``: the daemon's error code)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class Client:
    """One connection to the daemon; requests are sent one at a time."""

    def __init__(self, path: Path, timeout: float = TIMEOUT_S):
        self.path, self.timeout = path, timeout
        self._pending = b""  # what came after the last reply's newline
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
        except (BlockingIOError, TimeoutError):
            self._sock.close()
            raise ClientError(
                f"plend at {path} is busy (too many connections waiting); try again", "busy"
            ) from None
        except OSError as exc:
            self._sock.close()
            raise ClientError(f"cannot connect to plend at {path}: {exc.strerror or exc}") from None

    def request(self, cmd: str, **args: Any) -> Any:
        from plend.daemon.server import PROTOCOL_VERSION

        for name, value in args.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ClientError(f"--{name.replace('_', '-')} {value} is not a number; give a finite value")
        line = json.dumps({"v": PROTOCOL_VERSION, "cmd": cmd, "args": args}).encode() + b"\n"
        deadline = time.monotonic() + self.timeout  # for the whole reply, however it trickles
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(line)
            reply_line = self._read_line(deadline)
        except TimeoutError:
            raise ConnectionLostError(f"plend at {self.path} did not answer {cmd} in time") from None
        except OSError as exc:
            raise ConnectionLostError(
                f"lost the connection to plend at {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            reply = json.loads(reply_line)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise ConnectionLostError(f"plend at {self.path} sent a reply that is not a plend reply")
        if not reply["ok"]:
            message, code = reply.get("message"), reply.get("error")
            if not isinstance(message, str) or not isinstance(code, str):
                raise ConnectionLostError(f"plend at {self.path} sent an error that is not a plend error")
            raise ClientError(f"{_printable(message)} [{_printable(code)}]", code)
        return reply.get("result")

    def _read_line(self, deadline: float) -> bytes:
        """The next reply line, within ``deadline`` and :data:`MAX_REPLY_BYTES`."""
        data = bytearray(self._pending)
        end = data.find(b"\n")
        while end < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionLostError(f"plend at {self.path} closed the connection")
            end = chunk.find(b"\n")
            end = end if end < 0 else len(data) + end
            data += chunk
            if end < 0 and len(data) > MAX_REPLY_BYTES:
                raise ConnectionLostError(
                    f"the reply from {self.path} is over {MAX_REPLY_BYTES >> 20} MiB without an end; "
                    "is plend what listens there?"
                )
        self._pending = bytes(data[end + 1 :])
        return bytes(data[:end])

    def close(self) -> None:
        self._sock.close()


def _printable(text: str) -> str:
    """A daemon's message on one line (a newline or escape codes in it cannot forge output)."""
    return "".join(c if c.isprintable() else "?" for c in text)[:2000]


# Commands that need an action word, and what to say when it is missing.
ACTIONS = {
    "policy": "load NAME|FILE (a name from 'plenctl policy list', or a path), start, command, list",
    "record": "start [--out NAME], stop",
    "calibration": "show [--file FILE]",
    "sim": "respawn",
}


def _common() -> argparse.ArgumentParser:
    """--socket and --json: taken before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option not given after the subcommand leaves the one given before it.
    common.add_argument("--socket", type=path_argument, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="plenctl", description="Control a running plend.",
        epilog="--socket and --json may also follow the command.",
    )  # fmt: skip
    p.add_argument(
        "--socket", type=path_argument, help="control socket (default $PLEND_SOCKET or /run/plend/plend.sock)"
    )
    p.add_argument("--json", action="store_true", help="print the daemon's reply as JSON, for programs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, parents=[common], **kwargs)

    status = command("status", "mode, speed, policy, timing, joints, IMU, faults")
    status.add_argument(
        "--watch", type=_watch_period, nargs="?", const=1.0, metavar="SECONDS", help="refresh every SECONDS"
    )
    for name, text in (
        ("stand", "move to the stand pose (a fallen simulated robot is stood up)"),
        ("relax", "unpower the servos"),
        ("stop", "stop at the next safe point and stand"),
        ("estop", "relax at once; latched until reset"),
        ("reset", "clear the e-stop and latched faults (relaxed; a fallen simulated robot is stood up)"),
    ):
        command(name, text)
    gait = command("gait", "walk on a gait")
    gait.add_argument("name", choices=("sine",))
    gait.add_argument("--speed", type=float, default=0.5, help="speed in [-1, 1] (default 0.5)")
    gait.add_argument("--turn", type=float, default=0.0, help="turn in [-1, 1], positive left (default 0)")
    gait.add_argument("--side", type=float, default=0.0, help="step sideways in [-1, 1], positive left")
    replay = command("replay", "play a joint trajectory (CSV or NPY) or a recording's targets (MCAP)")
    replay.add_argument("file", type=path_argument)
    replay.add_argument("--rate", type=float, help="samples per second (overrides the file's)")
    replay.add_argument(
        "--measured", action="store_true", help="of a recording: play its measured angles, not its targets"
    )
    policy_sub = _actions(command("policy", "ONNX walking policies: load, start, command, list"))
    load = policy_sub.add_parser(
        "load", parents=[common], help="load and check a policy (the robot carries on)"
    )
    load.add_argument("policy", metavar="NAME|FILE", help="a name from 'plenctl policy list', or a path")
    start = policy_sub.add_parser("start", parents=[common], help="walk on the loaded policy")
    steer = policy_sub.add_parser(
        "command", parents=[common], help="change the walking policy's speed, turn or side step now"
    )
    for parser in (start, steer):  # not given: as it was (the policy's default at first)
        parser.add_argument("--speed", type=float, help="forward speed in [-1, 1], within the policy's range")
        parser.add_argument("--turn", type=float, help="turn in [-1, 1], positive left")
        parser.add_argument("--side", type=float, help="side step in [-1, 1], positive left")
    policy_sub.add_parser("list", parents=[common], help="the policies plend can load by name")
    _add_calibrate(command)
    _add_drive(command)
    calibration_sub = _actions(command("calibration", "the servo and IMU calibration file"))
    show = calibration_sub.add_parser(
        "show", parents=[common], help="print the stored calibration and what changed"
    )
    show.add_argument("--file", type=path_argument, help="default: the daemon's calibration file")
    record_sub = _actions(command("record", "telemetry recording to MCAP"))
    record_sub.add_parser("start", parents=[common], help="start recording").add_argument(
        "--out",
        metavar="NAME",
        help="file name (.mcap) in the daemon's recordings directory (default: timestamped)",
    )
    record_sub.add_parser("stop", parents=[common], help="stop recording")
    _actions(command("sim", "the simulated robot")).add_parser(
        "respawn", parents=[common], help="stand a fallen simulated robot up again"
    )
    return p


def _actions(parser: argparse.ArgumentParser) -> Any:
    return parser.add_subparsers(dest="action", metavar="ACTION")


def _add_drive(command: Any) -> None:
    drive = command(
        "drive", "drive the robot with the keys or a gamepad (it stops when this ends)",
        description="Drive the sine gait (or, with --policy, the loaded policy) from the keyboard or a "
        "gamepad. Up/Down or w/s speed, Left/Right or a/d turn, q/e side step, space stop, Enter stand, "
        "x or Esc e-stop, Ctrl-C quit. The daemon stops the walk at the next step when updates stop "
        "for drive.lease_s (0.5 s) or this program's connection closes.",
    )  # fmt: skip
    drive.add_argument(
        "--gamepad", nargs="?", const="", metavar="DEVICE",
        help="read a gamepad through evdev: DEVICE (/dev/input/eventN) or the first one found",
    )  # fmt: skip
    drive.add_argument(
        "--policy",
        action="store_true",
        help="moving from standing starts the loaded policy, not the sine gait",
    )
    drive.add_argument(
        "--config",
        type=path_argument,
        help="config file with the [drive] steps and gamepad mapping (default /etc/plend/plend.toml)",
    )


def _add_calibrate(command: Any) -> None:
    calibrate = command(
        "calibrate", "the servo and IMU calibration wizard",
        description="Walk through calibrating every joint (or those named with --joint) and the IMU, "
        "then review and save. Interactive by default; --answers or --operator sim run it unattended.",
    )  # fmt: skip
    calibrate.add_argument(
        "--joint", action="append", default=[], metavar="NAME", help="only this joint (repeatable)"
    )
    calibrate.add_argument(
        "--answers", type=path_argument, metavar="FILE", help="answers file (TOML): scripted mode"
    )
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


def _socket_path(args: argparse.Namespace) -> Path:
    return args.socket or Path(os.environ.get("PLEND_SOCKET") or DEFAULT_SOCKET_PATH)


def _file_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The file a command names, as the daemon is sent it; found before connecting, so a
    path that cannot be (a symbolic link loop, too long) is refused in one line at once."""
    if args.command == "replay":
        return {"path": str(absolute(args.file, "trajectory"))}
    if args.command == "policy" and args.action == "load":
        return _policy_argument(args.policy)
    return {}


def _request(client: Client, args: argparse.Namespace, files: dict[str, str]) -> Any:
    cmd = args.command
    if cmd == "gait":
        return client.request("gait", name=args.name, speed=args.speed, turn=args.turn, side=args.side)
    if cmd == "replay":
        extra: dict[str, Any] = {} if args.rate is None else {"rate_hz": args.rate}
        if args.measured:
            extra["source"] = "measured"
        return client.request("replay", **files, **extra)
    if cmd == "policy":
        if args.action == "load":
            return client.request("policy_load", **files)
        if args.action in ("start", "command"):
            given = {k: getattr(args, k) for k in ("speed", "turn", "side") if getattr(args, k) is not None}
            return client.request(f"policy_{args.action}", **given)
        return client.request(f"policy_{args.action}")
    if cmd == "record":
        if args.action == "start":
            return client.request("record_start", **({"out": args.out} if args.out else {}))
        return client.request("record_stop")
    if cmd == "sim":
        return client.request(f"sim_{args.action}")
    return client.request(cmd)


def _policy_argument(given: str) -> dict[str, str]:
    """A file here is sent as its absolute path; a bare name is looked up by the daemon."""
    if "/" in given or os.path.isfile(os.path.expanduser(given)):
        return {"path": str(absolute(Path(given), "policy"))}
    return {"name": given}


def _command_name(args: argparse.Namespace) -> str:
    """The daemon's name for the command (``policy load`` is ``policy_load``)."""
    action = getattr(args, "action", None)
    return (
        f"{args.command}_{action}" if action and args.command in ("policy", "record", "sim") else args.command
    )


def _print(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        print(json.dumps(result, indent=2 if args.command == "status" else None))
    elif args.command == "status":
        print(format_status(result))
    else:
        print(sentence(_command_name(args), result))


def _show_calibration(args: argparse.Namespace) -> str:
    """The calibration file as a table (read here: the daemon need not run)."""
    from calibration.describe import describe
    from calibration.store import backup_path, load, load_optional

    if args.file is not None and (not args.file.name or os.path.isdir(args.file)):
        raise ClientError(f"--file {args.file} is a directory; give a calibration file (calibration.json)")
    candidates = [args.file] if args.file else _calibration_files(args)
    for path in candidates:
        record = load_optional(path)
        if record is not None:
            return f"{path}\n" + describe(load(path), load_optional(backup_path(path)))
    raise ClientError(f"no calibration at {' or '.join(map(str, candidates))}; calibrate the robot first")


def _calibration_files(args: argparse.Namespace) -> list[Path]:
    """The running daemon's calibration file, or else where one would be."""
    try:
        client = Client(_socket_path(args), timeout=2.0)
    except ClientError:
        pass
    else:
        try:
            known = client.request("status").get("calibration_file")
        finally:
            client.close()
        if known:
            return [Path(known)]
    from plend.core.config import load
    from plend.core.locations import SYSTEM_STATE_DIR

    mine = load(None).calibration_path()
    robots = Path(SYSTEM_STATE_DIR) / "calibration.json"
    return [mine] if mine == robots else [mine, robots]


def _calibration_plan(args: argparse.Namespace) -> tuple[Any, Any]:
    """The wizard's operator and options from the command line, checked before connecting."""
    from calibration import operators, wizard
    from plend.model.robot import JOINTS

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
        answers = operators.ScriptedOperator.from_file(args.answers).answers
    if args.yes:
        answers = {"resume": True, "horns": False, "imu": True, "save": True, **answers}
    operator: operators.Operator
    if args.operator == "sim":
        from plend.hal.emulated.operator import SimulatedOperator

        operator = SimulatedOperator(answers)
    elif args.answers is not None or args.yes:
        operator = operators.ScriptedOperator(answers)
    elif not sys.stdin.isatty():
        raise ClientError("the wizard needs a terminal; unattended, give --answers FILE (or --operator sim)")
    else:
        operator = operators.KeyboardOperator()
    return operator, wizard.Options(joints=tuple(args.joint), imu=args.imu, imu_only=args.imu_only)


def _watch_period(text: str) -> float:
    """A --watch period: a number of seconds in [0.1, 3600]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a period; give seconds in [0.1, 3600]")
    return value


def _watch(client: Client, args: argparse.Namespace) -> int:
    try:
        while True:
            result = client.request("status")
            sys.stdout.write("\x1b[H\x1b[2J" + format_status(result) + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:  # how a watch is ended
        return 0


def _drive(args: argparse.Namespace) -> int:
    from plend.core.config import load
    from plend.drive.client import run

    config = load(args.config).drive
    return run(args, lambda: Client(_socket_path(args), timeout=2.0), config)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``plenctl``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command in ACTIONS and args.action is None:
            raise ClientError(f"say what to do: plenctl {args.command} {ACTIONS[args.command]}")
        if args.command == "calibration":
            print(_show_calibration(args))
            return 0
        if args.command == "drive":
            return _drive(args)
        plan = _calibration_plan(args) if args.command == "calibrate" else None
        files = _file_arguments(args)
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
            _print(args, _request(client, args, files))
        finally:
            client.close()
        return 0
    except PlendError as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(f"plenctl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("plenctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # plenctl status --json | head
        return reader_went_away()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        if os.environ.get("PLEND_DEBUG"):
            raise
        print(
            f"plenctl: error: the reply holds what this plenctl cannot show ({type(exc).__name__}: "
            f"{_printable(str(exc))[:200]}); are plenctl and plend the same version?",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
