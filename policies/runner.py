"""Running an ONNX walking policy in the daemon: load, check everything, then act.

:func:`load_policy` validates a file completely before the running behaviour is touched:
it parses, has one float input and output of the declared sizes, carries metadata that
fits this robot, needs only observation sources this backend has, was trained at the
loop's rate, gives finite outputs on a dry run, and infers within the tick budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaits.balance import Balance, BalanceGains
from gaits.sine import stand_pose
from gaits.walker import SineGait
from plend.errors import PlendError, require_package
from plend.hal.base import ImuReading, Sensors
from plend.robot import JOINT_NAMES
from policies.contract import (
    METADATA_KEY,
    SOURCES,
    ObsContext,
    ObservationBuilder,
    PolicyError,
    PolicySpec,
    sources_without_truth,
)

BUDGET_FRACTION = 0.25  # of the tick period


class PolicyOutputError(PlendError, ArithmeticError):
    """The policy produced a non-finite action at run time."""


@dataclass(frozen=True)
class _Zero:
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    euler: tuple[float, float, float] = (0.0, 0.0, 0.0)
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)


def available_sources(hal_name: str) -> frozenset[str]:
    """Observation sources a backend provides: the simulation has ground truth; the
    robot has no ground truth and no foot contact sensors."""
    if hal_name == "sim":
        return frozenset(SOURCES)
    return sources_without_truth() - {"foot_contacts"}


class PolicyRunner:
    """One checked ONNX session on one thread."""

    def __init__(self, path: Path, spec: PolicySpec, session: Any):
        self.path, self.spec, self.session = path, spec, session
        self.input_name = session.get_inputs()[0].name
        self.builder = ObservationBuilder(spec)
        self.inference_ms: dict[str, float] = {}

    def act(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: observation})[0], dtype=float).reshape(-1)


def _session(path: Path) -> Any:
    require_package("onnxruntime", "policy")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if not path.is_file():
        raise PolicyError(f"{path}: no such file")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"{path}: not a valid ONNX model ({first[:160]})") from None


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


def load_runner(path: Path, rate_hz: float, hal_name: str, sample: Sensors | None) -> PolicyRunner:
    """Load and check a policy file for a loop at ``rate_hz`` on backend ``hal_name``."""
    session = _session(path)
    spec = read_spec(path, session)
    _check_io(path, session, spec)
    missing = [n for n, _ in spec.observation if n not in available_sources(hal_name)]
    if missing:
        raise PolicyError(f"{path}: needs {', '.join(missing)}, which the {hal_name} backend cannot provide")
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
    ctx = ObsContext(sample, np.zeros(n), 0.0, runner.spec.gait_speed, _Zero())
    observation = runner.builder.build(ctx)
    times = []
    for _ in range(50):
        began = time.perf_counter()
        action = runner.act(observation)
        times.append(time.perf_counter() - began)
    if not np.all(np.isfinite(action)):
        raise PolicyError(f"{runner.path}: the dry run gave non-finite actions")
    p50, p99 = (float(v) * 1000 for v in np.percentile(times, [50, 99]))
    runner.inference_ms = {"p50": round(p50, 4), "p99": round(p99, 4)}
    if p99 / 1000 > BUDGET_FRACTION * period:
        raise PolicyError(
            f"{runner.path}: inference takes {p99:.2f} ms (p99), over the "
            f"{BUDGET_FRACTION * period * 1000:.1f} ms "
            "budget of a tick; use a smaller network or a lower rate"
        )


def policy_gait(spec: PolicySpec, gains: BalanceGains | None = None) -> SineGait:
    """The sine gait under a residual policy: with the balance layer if it trained with it."""
    balance = Balance(gains or BalanceGains()) if spec.gait_balance else None
    return SineGait(spec.gait_speed, balance=balance)


class PolicyBehaviour:
    """Walks on a policy; its actions are absolute targets or residuals on the sine gait."""

    name = "policy"

    def __init__(self, runner: PolicyRunner, truth: Any = None, balance: BalanceGains | None = None):
        self.runner = runner
        self._balance = balance or BalanceGains()
        self.spec = runner.spec
        self._truth = truth
        self._columns = [JOINT_NAMES.index(j) for j in self.spec.action_joints]
        self._scale = np.asarray(self.spec.action_scale, float)
        self._offset = np.asarray(self.spec.action_offset or np.zeros(len(self._columns)), float)
        self._stopping = False
        self.start(stand_pose())

    def start(self, measured: np.ndarray) -> None:
        self._gait = policy_gait(self.spec, self._balance)
        self._last = np.zeros(len(self._columns))
        self._stopping = False
        self._t = 0.0

    def update(self, sensors: Sensors, dt: float) -> np.ndarray:
        base = self._gait.update(sensors, dt) if self.spec.action_mode == "residual" else stand_pose()
        self._t += dt
        if dt == 0.0 or (self._stopping and self.spec.action_mode == "residual"):
            return base  # while blending in, and while the gait winds down, no policy output
        truth = self._truth() if self._truth is not None else None
        ctx = ObsContext(sensors, self._last, self._gait.phase, self.spec.gait_speed, truth)
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
    def finished(self) -> bool:
        if self.spec.action_mode == "residual":
            return self._gait.standing
        return self._stopping


def make_policy_loader(hal: Any, rate_hz: float, sample: Any) -> Any:
    """A loader for the daemon's policy slot (see plend.controls.PolicyLoader)."""

    def load(path: Path, config: Any) -> PolicyBehaviour:
        runner = load_runner(path, rate_hz, hal.name, sample())
        gains = config.gait.balance_gains() if config is not None else None
        return PolicyBehaviour(runner, getattr(hal, "truth", None), gains)

    return load
