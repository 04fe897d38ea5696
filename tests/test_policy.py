"""ONNX policies in the daemon: the contract, every refusal, and running one."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("pybullet")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from plend.core.clock import StepClock  # noqa: E402
from plend.core.config import Config, GaitConfig, LimitsConfig  # noqa: E402
from plend.daemon.headless import RunOptions, run  # noqa: E402
from plend.hal.fake import FakeHal  # noqa: E402
from plend.model.robot import LEG_JOINT_NAMES  # noqa: E402
from policies.contract import METADATA_KEY, PolicyError, PolicySpec, legacy_spec  # noqa: E402
from policies.runner import PolicyBehaviour, PolicyRunner, load_runner, make_policy_loader  # noqa: E402

LEGS = LEG_JOINT_NAMES["right"] + LEG_JOINT_NAMES["left"]
SPEC = PolicySpec(
    observation=(
        ("joint_pos", 18), ("projected_gravity", 3), ("gyro", 3), ("last_action", 12), ("gait_phase", 2),
    ),
    action_joints=LEGS, action_mode="residual", action_scale=(0.1,) * 12, rate_hz=50.0, gait_speed=0.5,
)  # fmt: skip


COMMAND_SPEC = dataclasses.replace(
    SPEC, observation=(*SPEC.observation, ("command", 3)), commands={"speed": (0.0, 1.0), "turn": (-0.5, 0.5)}
)


def save_model(path: Path, spec: PolicySpec | None, inputs: int, outputs: int, weight: float = 0.0,
               dtype: int = TensorProto.FLOAT, metadata: str | None = None) -> Path:  # fmt: skip
    x = helper.make_tensor_value_info("observation", dtype, ["batch", inputs])
    y = helper.make_tensor_value_info("action", dtype, ["batch", outputs])
    np_type = np.float32 if dtype == TensorProto.FLOAT else np.float64
    w = numpy_helper.from_array(np.full((inputs, outputs), weight, dtype=np_type), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["observation", "W"], ["action"])], "p", [x], [y], [w]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if spec is not None or metadata is not None:
        text = metadata if metadata is not None else spec.to_json()  # type: ignore[union-attr]
        helper.set_model_props(model, {METADATA_KEY: text})
    onnx.save(model, path)
    return path


@pytest.fixture
def zero_policy(tmp_path: Path) -> Path:
    return save_model(tmp_path / "zero.onnx", SPEC, SPEC.observation_size, 12)


def test_spec_round_trips_and_the_legacy_layout_has_26_values() -> None:
    assert PolicySpec.from_json(SPEC.to_json()) == SPEC
    legacy = legacy_spec()
    assert legacy.observation_size == 26 and len(legacy.action_joints) == 18
    data = json.loads(SPEC.to_json())
    assert data["observation"][0] == {"name": "joint_pos", "size": 18, "unit": "rad"}


def test_a_policy_trained_on_the_balanced_gait_runs_on_it(tmp_path: Path) -> None:
    import dataclasses

    from gaits.balance import BalanceGains
    from plend.core.config import GaitConfig
    from policies.runner import policy_gait

    balanced = dataclasses.replace(SPEC, gait_balance=True)
    assert PolicySpec.from_json(balanced.to_json()).gait_balance is True
    assert json.loads(SPEC.to_json())["gait_balance"] is False
    data = json.loads(SPEC.to_json())
    del data["gait_balance"]  # files written before the key existed: the open-loop gait
    assert PolicySpec.from_json(json.dumps(data)).gait_balance is False
    data["gait_balance"] = "yes"
    with pytest.raises(PolicyError, match="gait_balance must be true or false"):
        PolicySpec.from_json(json.dumps(data))
    config = GaitConfig(roll_rate_gain=0.1)
    gait = policy_gait(balanced, config)
    assert gait.balance is not None and gait.balance.gains == config.balance_gains(), "the daemon's gains"
    assert gait.balance.gains.roll_rate_gain == 0.1 and BalanceGains().roll_rate_gain != 0.1
    assert policy_gait(SPEC).balance is None
    assert policy_gait(SPEC, GaitConfig(balance=True)).balance is None, "as the policy trained"
    path = save_model(tmp_path / "balanced.onnx", balanced, SPEC.observation_size, 12)
    behaviour = PolicyBehaviour(load_runner(path, 50.0, "sim", None), gait=config)
    assert behaviour._gait.balance is not None


def test_a_good_policy_loads_with_its_inference_time(zero_policy: Path) -> None:
    runner = load_runner(zero_policy, 50.0, "sim", None)
    assert runner.spec == SPEC and runner.inference_ms["p99"] > 0


def test_the_size_limit_is_the_one_configured(zero_policy: Path) -> None:
    with pytest.raises(PolicyError, match=r"limits\.max_policy_bytes"):
        load_runner(zero_policy, 50.0, "sim", None, max_bytes=1024)
    config = Config(limits=LimitsConfig(max_policy_bytes=1024))
    with pytest.raises(PolicyError, match=r"limits\.max_policy_bytes"):
        make_policy_loader(FakeHal(StepClock()), 50.0, lambda: None)(zero_policy, config)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    return path


def bad_files(tmp: Path) -> dict[str, tuple[Path, str, str]]:
    n = SPEC.observation_size
    good = save_model(tmp / "good.onnx", SPEC, n, 12)
    truncated = tmp / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp / "junk.onnx"
    junk.write_bytes(b"this is not a model at all")
    wrong_joints = dataclasses.replace(SPEC, action_joints=(*LEGS[:-1], "tail"))
    nan_metadata = dataclasses.replace(SPEC)
    return {
        "not ONNX": (junk, "sim", "not a valid ONNX model"),
        "truncated": (truncated, "sim", "not a valid ONNX model"),
        "missing file": (tmp / "absent.onnx", "sim", "no such file"),
        "a folder": (tmp, "sim", "is a directory"),
        "a FIFO": (_fifo(tmp / "pipe.onnx"), "sim", "FIFO"),
        "a huge file": (_sparse(tmp / "huge.onnx", 33 << 20), "sim", "limits.max_policy_bytes"),
        "wrong input size": (save_model(tmp / "in.onnx", SPEC, n + 3, 12), "sim", f"input has size {n + 3}"),
        "wrong output size": (save_model(tmp / "out.onnx", SPEC, n, 10), "sim", "output has size 10"),
        "double input": (
            save_model(tmp / "f64.onnx", SPEC, n, 12, dtype=TensorProto.DOUBLE),
            "sim",
            "must be float32",
        ),
        "missing metadata": (
            save_model(tmp / "nometa.onnx", None, n, 12),
            "sim",
            "no 'plend.policy' metadata",
        ),
        "malformed metadata": (
            save_model(tmp / "bad.onnx", None, n, 12, metadata="{oops"),
            "sim",
            "malformed",
        ),
        "joint names": (
            save_model(tmp / "joints.onnx", None, n, 12, metadata=_json(wrong_joints)),
            "sim",
            "do not match",
        ),
        "rate": (
            save_model(tmp / "rate.onnx", dataclasses.replace(SPEC, rate_hz=100.0), n, 12),
            "sim",
            "--rate 100",
        ),
        "NaN output": (
            save_model(tmp / "nan.onnx", nan_metadata, n, 12, weight=float("nan")),
            "sim",
            "non-finite",
        ),
        "source on robot": (_legacy(tmp), "hardware", "torso_height, forward_velocity, lateral_position"),
    }


def _json(spec: PolicySpec) -> str:
    data = json.loads(SPEC.to_json())
    data["action"]["joints"] = list(spec.action_joints)
    return json.dumps(data)


def _legacy(tmp: Path) -> Path:
    spec = legacy_spec()
    return save_model(tmp / "legacy.onnx", spec, 26, 18)


@pytest.mark.parametrize(
    "case",
    ["not ONNX", "truncated", "missing file", "wrong input size", "wrong output size", "double input",
     "missing metadata", "malformed metadata", "joint names", "rate", "NaN output", "source on robot"],
)  # fmt: skip
@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_each_bad_policy_file_gets_its_own_clear_error(
    tmp_path: Path, case: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEND_POLICY_ENGINE", engine)  # the same checks whichever runs it
    path, hal, message = bad_files(tmp_path)[case]
    with pytest.raises(PolicyError) as info:
        load_runner(path, 50.0, hal, None)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_slow_inference_is_refused(zero_policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import policies.runner as runner_module

    monkeypatch.setattr(runner_module, "BUDGET_FRACTION", 1e-9)
    with pytest.raises(PolicyError, match=r"inference takes .* over the .* budget"):
        load_runner(zero_policy, 50.0, "sim", None)


def test_a_zero_residual_policy_walks_like_the_sine_gait(zero_policy: Path) -> None:
    policy = run(Config(), RunOptions(duration_s=10.0, fast=True, policy=zero_policy))
    # As the policy trained: no balance layer, stride in proportion to speed, the heading
    # sampled at each step boundary.
    open_loop = Config(gait=GaitConfig(balance=False, stride_exponent=1.0, heading_average=False))
    gait = run(open_loop, RunOptions(speed=0.5, duration_s=10.0, fast=True))
    assert policy["fell"] is False and policy["gait"] == "policy zero.onnx"
    assert policy["distance_m"] == pytest.approx(gait["distance_m"], abs=0.02)


class NaNAfter:
    """A runner stand-in whose actions turn NaN after a number of calls."""

    def __init__(self, real: PolicyRunner, calls: int):
        self.real, self.calls = real, calls
        self.spec, self.builder, self.path = real.spec, real.builder, real.path

    def act(self, observation: np.ndarray) -> np.ndarray:
        self.calls -= 1
        action = self.real.act(observation)
        return action * np.nan if self.calls < 0 else action


def test_non_finite_actions_at_run_time_make_the_robot_stand(
    zero_policy: Path, clock: StepClock, fake_robot: FakeHal
) -> None:
    from plend.control.loop import ControlLoop
    from plend.control.safety import SafetyFilter
    from plend.control.supervisor import Supervisor

    robot = fake_robot
    supervisor = Supervisor(Config().safety, 0.02)
    loop = ControlLoop(robot, supervisor, 0.02, SafetyFilter(0.02), clock)
    loop.start()
    runner = NaNAfter(load_runner(zero_policy, 50.0, "sim", None), calls=30)
    supervisor.handle("policy_load", behaviour=PolicyBehaviour(runner))  # type: ignore[arg-type]
    supervisor.handle("policy_start")
    loop.run(120)
    assert supervisor.mode == "stand"
    assert any(f.code == "behaviour" and "non-finite" in f.message for f in supervisor.faults)
    assert all(np.all(np.isfinite(w)) for w in robot.writes if w is not None)
