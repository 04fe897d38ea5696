"""Running an ONNX walking policy in the daemon: load, check everything, then act.

:func:`load_policy` validates a file completely before the running behaviour is touched:
it parses, has one float input and output of the declared sizes, carries metadata that
fits this robot, needs only observation sources this backend has, was trained at the
loop's rate, gives finite outputs on a dry run, and infers within the tick budget.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaits.balance import Balance
from gaits.sine import SpeedMap, stand_pose
from gaits.walker import SineGait
from plend.core.config import GaitConfig, LimitsConfig
from plend.core.errors import PlendError, require_package
from plend.core.files import FileRefusedError, check_regular
from plend.hal.base import GroundTruth, ImuReading, Sensors
from plend.model.robot import JOINT_NAMES
from policies.contract import (
    COMMANDS,
    METADATA_KEY,
    SOURCES,
    ObsContext,
    ObservationBuilder,
    PolicyError,
    PolicySpec,
    pose_sources,
    sources_without_truth,
)
from policies.timing import time_inference

BUDGET_FRACTION = 0.25  # of the tick period


class PolicyOutputError(PlendError, ArithmeticError):
    """The policy produced a non-finite action at run time."""


@dataclass(frozen=True)
class _Zero:
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    euler: tuple[float, float, float] = (0.0, 0.0, 0.0)
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)


def available_sources(hal_name: str, pose: Any = None) -> frozenset[str]:
    """Observation sources a backend provides: the simulation has ground truth; the
    robot has no foot contact sensors, and has the torso's pose only from a camera
    (``pose``, a plend.daemon.pose.PoseStore) that is sending fresh poses."""
    if hal_name == "sim":
        return frozenset(SOURCES)
    sources = sources_without_truth() - {"foot_contacts"}
    if pose is not None and pose.problem() is None:
        sources |= pose_sources()
        if pose.problem(needs_orientation=True) is not None:
            sources -= {"world_yaw"}
    return sources


def _missing_message(path: Path, hal_name: str, missing: list[str], pose: Any) -> str:
    names = ", ".join(missing)
    if hal_name == "sim" or not set(missing) <= pose_sources():
        return f"{path}: needs {names}, which the {hal_name} backend cannot provide"
    why = "this daemon has no pose source" if pose is None else pose.problem(needs_orientation=True)
    return f"{path}: needs {names}, which the {hal_name} backend has only from a camera pose source: {why}"


class PolicyRunner:
    """One checked ONNX session on one thread."""

    def __init__(self, path: Path, spec: PolicySpec, session: Any):
        self.path, self.spec, self.session = path, spec, session
        self.input_name = session.get_inputs()[0].name
        self.engine = getattr(session, "engine", "onnxruntime")
        self.builder = ObservationBuilder(spec)
        self.inference_ms: dict[str, float] = {}

    def act(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: observation})[0], dtype=float).reshape(-1)


ENGINES = ("onnxruntime", "numpy")


def policy_engine() -> str:
    """What runs policies: onnxruntime where installed, else plend's numpy evaluator.

    ``PLEND_POLICY_ENGINE=numpy`` (or ``onnxruntime``) chooses one explicitly.
    """
    chosen = os.environ.get("PLEND_POLICY_ENGINE", "").strip()
    if chosen:
        if chosen not in ENGINES:
            raise PolicyError(f"PLEND_POLICY_ENGINE={chosen!r} is not one of: {', '.join(ENGINES)}")
        return chosen
    try:
        found = importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        found = False
    return "onnxruntime" if found else "numpy"


def _observation_size(metadata: dict[str, str]) -> int:
    """What the graph is fed, from the metadata; 1 where it has none that is valid (such a
    file is refused before its graph ever runs, and creating a session reads no input)."""
    try:
        return PolicySpec.from_json(metadata[METADATA_KEY]).observation_size
    except (KeyError, PolicyError):
        return 1


def _check_graph(path: Path) -> None:
    """Refuse a graph whose tensors would be larger than a walking policy needs, before
    an engine allocates them (see policies.graph_sizes)."""
    from policies.graph_sizes import GraphSizeError, check_sizes
    from policies.onnx_file import OnnxFormatError, read_model

    try:
        model = read_model(path.read_bytes())
        check_sizes(model, (1, _observation_size(model.metadata)))
    except OnnxFormatError as exc:
        raise PolicyError(f"{path}: not a valid ONNX model ({exc})") from None
    except GraphSizeError as exc:
        raise PolicyError(f"{path}: {exc}") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _session(path: Path, max_bytes: int = LimitsConfig().max_policy_bytes) -> Any:
    try:  # a FIFO, a device, a folder or a file of gigabytes: refused before it is read
        check_regular(path, max_bytes, "policy", "limits.max_policy_bytes")
    except FileRefusedError as exc:
        raise PolicyError(str(exc)) from None
    if policy_engine() == "numpy":
        session = _numpy_session(path)  # allocates only the file's own weights
        _check_graph(path)
        return session
    _check_graph(path)
    require_package("onnxruntime", "onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"{path}: not a valid ONNX model ({first[:160]})") from None


def _numpy_session(path: Path) -> Any:
    from policies.numpy_onnx import NumpySession, OnnxFormatError, UnsupportedModelError

    try:
        return NumpySession(path)
    except OnnxFormatError as exc:
        raise PolicyError(f"{path}: not a valid ONNX model ({exc})") from None
    except UnsupportedModelError as exc:
        raise PolicyError(
            f"{path}: uses {exc}; run it with onnxruntime (.venv/bin/pip install -e '.[onnxruntime]', "
            "64-bit systems only)"
        ) from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _check_io(path: Path, session: Any, spec: PolicySpec) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise PolicyError(
            f"{path}: needs exactly one input and one output, has {len(inputs)} and {len(outputs)}"
        )
    for kind, node, size in (
        ("input", inputs[0], spec.observation_size),
        ("output", outputs[0], len(spec.action_joints)),
    ):
        if node.type != "tensor(float)":
            raise PolicyError(f"{path}: the {kind} must be float32, is {node.type}")
        last = node.shape[-1] if node.shape else None
        if isinstance(last, int) and last != size:
            raise PolicyError(f"{path}: the {kind} has size {last}, its metadata declares {size}")


def read_spec(path: Path, session: Any) -> PolicySpec:
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise PolicyError(f"{path}: no '{METADATA_KEY}' metadata; export it with policies.export")
    try:
        return PolicySpec.from_json(meta[METADATA_KEY])
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def load_runner(
    path: Path,
    rate_hz: float,
    hal_name: str,
    sample: Sensors | None,
    pose: Any = None,
    max_bytes: int = LimitsConfig().max_policy_bytes,
) -> PolicyRunner:
    """Load and check a policy file for a loop at ``rate_hz`` on backend ``hal_name``
    (with ``pose``, the daemon's camera pose store, on the robot); a file over
    ``max_bytes`` (``limits.max_policy_bytes``) is refused unread."""
    session = _session(path, max_bytes)
    spec = read_spec(path, session)
    _check_io(path, session, spec)
    missing = [n for n, _ in spec.observation if n not in available_sources(hal_name, pose)]
    if missing:
        raise PolicyError(_missing_message(path, hal_name, missing, pose))
    if abs(spec.rate_hz - rate_hz) > 1e-6:
        raise PolicyError(
            f"{path}: trained at {spec.rate_hz:g} Hz but the loop runs at {rate_hz:g} Hz; "
            f"run plend with --rate {spec.rate_hz:g}"
        )
    runner = PolicyRunner(path, spec, session)
    _dry_run(runner, sample, 1.0 / rate_hz)
    return runner


def _dry_run(runner: PolicyRunner, sample: Sensors | None, period: float) -> None:
    if sample is None:
        imu = ImuReading((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 9.81))
        sample = Sensors(0.0, stand_pose(), imu, (True, True))
    n = len(runner.spec.action_joints)
    command = runner.spec.default_command()
    ctx = ObsContext(sample, np.zeros(n), 0.0, command[0], _Zero(), command)
    observation = runner.builder.build(ctx)
    try:
        action = runner.act(observation)
    except Exception as exc:  # a graph that cannot run on the observation: say so, at load
        raise PolicyError(f"{runner.path}: the dry run failed ({type(exc).__name__}: {exc})") from None
    if not np.all(np.isfinite(action)):
        raise PolicyError(f"{runner.path}: the dry run gave non-finite actions")
    timing = time_inference(lambda: runner.act(observation), BUDGET_FRACTION * period * 1000)
    runner.inference_ms = timing.as_dict()
    if not timing.fits:
        raise PolicyError(
            f"{runner.path}: inference takes {timing.cpu_p50:.3f} ms of CPU at the median of "
            f"{timing.runs} runs (wall median {timing.p50:.3f} ms, p99 {timing.p99:.3f} ms), over the "
            f"{timing.budget:.3g} ms budget (a quarter of the {period * 1000:g} ms tick); use a smaller "
            "network or a lower rate"
        )


LEGACY_HEADING = (0.5, 0.0, 0.12)  # the sine gait's heading hold before it was configurable


def policy_gait(
    spec: PolicySpec, config: GaitConfig | None = None, command: tuple[float, float, float] | None = None
) -> SineGait:
    """The sine gait a residual policy trained on, walking ``command`` (default: the
    policy's default command): its heading hold as the policy's metadata records it, and
    the balance layer, if the policy trained with it, with the gains its metadata records
    (``gait_gains``, by name) and ``config``'s (``[gait]``) for the others, a gain retuned
    since policies first learnt on the balanced gait back at its original value; its stride
    exponent and heading averaging as the metadata records them (``gait_options``), else as
    the gait was before they existed (stride in proportion to speed, heading sampled at step
    boundaries), whatever ``config`` says."""
    gains = (config or GaitConfig()).balance_gains(spec.gait_gains or None)
    balance = Balance(gains) if spec.gait_balance else None
    gain, bias, max_turn = spec.gait_heading or LEGACY_HEADING
    speed, turn, side = command or spec.default_command()
    return SineGait(
        speed, turn=turn, side=side, balance=balance, heading_gain=gain, heading_bias_gain=bias,
        max_turn_rad=max_turn, speed_map=SpeedMap(stride_exponent=spec.gait_option("stride_exponent")),
        heading_average=spec.gait_option("heading_average"),
    )  # fmt: skip


class PolicyBehaviour:
    """Walks on a policy; its actions are absolute targets or residuals on the sine gait."""

    name = "policy"

    def __init__(
        self,
        runner: PolicyRunner,
        truth: Any = None,
        needs_pose: bool = False,
        gait: GaitConfig | None = None,
    ):
        self.runner = runner
        self._gait_config = gait
        self.spec = runner.spec
        self._truth = truth
        # The supervisor stands the robot when the camera's pose goes stale.
        self.needs_pose = needs_pose
        self.needs_orientation = needs_pose and any(n == "world_yaw" for n, _ in self.spec.observation)
        self._columns = [JOINT_NAMES.index(j) for j in self.spec.action_joints]
        self._scale = np.asarray(self.spec.action_scale, float)
        self._offset = np.asarray(self.spec.action_offset or np.zeros(len(self._columns)), float)
        self._stopping = False
        self.command = self.spec.default_command()
        self.start(stand_pose())

    def set_command(self, speed: float, turn: float = 0.0, side: float = 0.0) -> None:
        """Walk on ``(speed, turn, side)`` from the gait's next step on; refused with the
        range (:class:`PolicyError`) if the policy was not trained for it, changing nothing."""
        command = self.spec.check_command(speed, turn, side)
        if self.spec.action_mode == "residual":
            self._gait.set_command(*command)
        self.command = command

    def steer(self, command: dict[str, float]) -> list[str]:
        """A driver's ``command`` (speed, turn, side), each part held to the range the
        policy trained for, so a stick pushed past it walks at the range's edge instead of
        being refused every update. Returns the parts it can change (a range, not a value)."""
        ranges = [self.spec.command_range(k) for k in COMMANDS]
        wanted = [command.get(k, now) for k, now in zip(COMMANDS, self.command, strict=True)]
        self.set_command(*(min(max(v, lo), hi) for v, (lo, hi) in zip(wanted, ranges, strict=True)))
        return [k for k, (lo, hi) in zip(COMMANDS, ranges, strict=True) if hi > lo]

    def report(self) -> dict[str, Any]:
        """The command the policy walks on, and its gait's state (see SineGait.report)."""
        speed, turn, side = self.command
        return {**self._gait.report(), "command": {"speed": speed, "turn": turn, "side": side}}

    def start(self, measured: np.ndarray) -> None:
        self._gait = policy_gait(self.spec, self._gait_config, self.command)
        self._last = np.zeros(len(self._columns))
        self._stopping = False
        self._t = 0.0

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        base = self._gait.update(sensors, dt) if self.spec.action_mode == "residual" else stand_pose()
        self._t += dt
        if dt == 0.0 or (self._stopping and self.spec.action_mode == "residual"):
            return base  # while blending in, and while the gait winds down, no policy output
        truth = self._truth() if self._truth is not None else None
        ctx = ObsContext(sensors, self._last, self._gait.phase, self.command[0], truth, self.command)
        action = self.runner.act(self.runner.builder.build(ctx))
        if action.shape != self._last.shape or not np.all(np.isfinite(action)):
            raise PolicyOutputError(f"policy {self.runner.path.name} gave a non-finite action")
        self._last = action
        targets = base.copy()
        if self.spec.action_mode == "residual":
            targets[self._columns] += self._scale * action
        else:
            targets[self._columns] = self._offset + self._scale * action
        return targets

    def stop(self) -> None:
        self._stopping = True
        self._gait.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def finished(self) -> bool:
        if self.spec.action_mode == "residual":
            return self._gait.standing
        return self._stopping


def camera_pose(pose: Any) -> Any:
    """The torso pose a policy reads on the robot: the camera's latest estimate."""

    def latest() -> Any:
        estimate = pose.latest
        if estimate is None:
            raise PolicyOutputError("no camera pose yet")
        return estimate

    return latest


def make_policy_loader(hal: Any, rate_hz: float, sample: Any, pose: Any = None) -> Any:
    """A loader for the daemon's policy slot (see plend.daemon.controls.PolicyLoader). In
    simulation the policy reads the torso's true pose; on the robot (real or emulated)
    the camera's, from ``pose`` (a plend.daemon.pose.PoseStore)."""

    def load(path: Path, config: Any) -> PolicyBehaviour:
        limit = config.limits.max_policy_bytes if config is not None else LimitsConfig().max_policy_bytes
        runner = load_runner(path, rate_hz, hal.name, sample(), pose, limit)
        gait = config.gait if config is not None else None
        if hal.name == "sim":
            return PolicyBehaviour(runner, hal.truth if isinstance(hal, GroundTruth) else None, gait=gait)
        uses_pose = any(n in pose_sources() for n, _ in runner.spec.observation)
        truth = camera_pose(pose) if uses_pose else None
        return PolicyBehaviour(runner, truth, needs_pose=uses_pose, gait=gait)

    return load
