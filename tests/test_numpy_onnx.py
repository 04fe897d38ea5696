"""The numpy policy evaluator: same numbers as onnxruntime, same refusals, chosen by itself
when onnxruntime is missing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.contract import PolicyError
from policies.numpy_onnx import NumpySession
from policies.onnx_file import read_model
from policies.runner import load_runner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WALK = ROOT / "policies" / "walk.onnx"
WALK_INPUTS = 41  # the shipped policy's observation: joints, IMU, last action, phase, command
TOLERANCE = 1e-5


def both(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ours = NumpySession(path)
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = theirs.get_inputs()[0].name
    return ours.run(None, {name: x})[0], theirs.run(None, {name: x})[0]


def observations(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, size)).astype(np.float32)


def test_the_shipped_policy_gives_onnxruntimes_actions() -> None:
    got, want = both(WALK, observations(512, WALK_INPUTS))
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (512, 12)
    assert float(np.max(np.abs(got - want))) <= TOLERANCE


def test_the_shipped_policy_reads_the_same_as_with_onnx() -> None:
    ours, theirs = read_model(WALK.read_bytes()), onnx.load(str(WALK))
    assert ours.metadata == {p.key: p.value for p in theirs.metadata_props}
    assert [n.op_type for n in ours.graph.nodes] == [n.op_type for n in theirs.graph.node]
    for tensor in theirs.graph.initializer:
        np.testing.assert_array_equal(ours.graph.initializers[tensor.name], numpy_helper.to_array(tensor))
    session = NumpySession(WALK)
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("observation", "tensor(float)", ("batch", WALK_INPUTS))
    ]


def tensor(name: str, shape: tuple[int, ...], rng: np.random.Generator, raw: bool = True) -> TensorProto:
    values = rng.normal(0.0, 0.5, shape).astype(np.float32)
    if raw:
        return numpy_helper.from_array(values, name)
    return helper.make_tensor(name, TensorProto.FLOAT, shape, values.ravel().tolist())  # float_data


def mlp(path: Path, nodes: list, initializers: list, inputs: int = 39, outputs: int = 12) -> Path:
    graph = helper.make_graph(
        nodes, "policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", outputs])],
        initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def every_operator(tmp_path: Path) -> Path:
    """An MLP that uses each operator the evaluator offers, in the ways exporters write them."""
    rng = np.random.default_rng(3)
    make = helper.make_node
    nodes = [
        make("Cast", ["observation"], ["x"], to=TensorProto.FLOAT),
        make("Flatten", ["x"], ["flat"], axis=1),
        make("Gemm", ["flat", "w0", "b0"], ["g0"], transB=1, alpha=0.9, beta=1.1),
        make("LeakyRelu", ["g0"], ["a0"], alpha=0.05),
        make("MatMul", ["a0", "w1"], ["m1"]),
        make("Add", ["m1", "b1"], ["h1"]),
        make("Elu", ["h1"], ["a1"], alpha=0.7),
        make("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1], np.int64))),
        make("Reshape", ["a1", "shape"], ["r1"]),
        make("Sigmoid", ["r1"], ["s1"]),
        make("Softplus", ["r1"], ["p1"]),
        make("Concat", ["s1", "p1"], ["c1"], axis=1),
        make("Gemm", ["w2t", "c1"], ["g2t"], transA=1, transB=1),  # (c1 @ w2t)^T, transposed back:
        make("Gemm", ["g2t", "eye"], ["g2"], transA=1),
        make("Sub", ["g2", "b2"], ["d2"]),
        make("Mul", ["d2", "k"], ["e2"]),
        make("Div", ["e2", "k2"], ["f2"]),
        make("Neg", ["f2"], ["n2"]),
        make("Relu", ["n2"], ["r2"]),
        make("Identity", ["r2"], ["i2"]),
        make("Clip", ["i2", "lo", "hi"], ["clipped"]),
        make("Tanh", ["clipped"], ["action"]),
    ]
    initializers = [
        tensor("w0", (64, 39), rng), tensor("b0", (64,), rng, raw=False),
        tensor("w1", (64, 32), rng), tensor("b1", (32,), rng),
        tensor("w2t", (64, 12), rng),
        numpy_helper.from_array(np.eye(12, dtype=np.float32), "eye"),
        tensor("b2", (12,), rng), tensor("k", (12,), rng),
        numpy_helper.from_array(np.array(1.7, np.float32), "k2"),
        numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
        numpy_helper.from_array(np.array(2.0, np.float32), "hi"),
    ]  # fmt: skip
    return mlp(tmp_path / "every.onnx", nodes, initializers)


def test_every_operator_matches_onnxruntime(tmp_path: Path) -> None:
    path = every_operator(tmp_path)
    got, want = both(path, observations(1, 39, seed=5))  # one observation: the daemon's case
    assert got.shape == want.shape == (1, 12)
    assert float(np.max(np.abs(got - want))) <= TOLERANCE


def test_a_policy_exported_from_torch_matches(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from policies.export import export_actor
    from tests.test_policy import SPEC

    torch.manual_seed(0)
    actor = torch.nn.Sequential(
        torch.nn.Linear(SPEC.observation_size, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 12), torch.nn.Tanh(),
    )  # fmt: skip
    path = export_actor(actor, SPEC, tmp_path / "actor.onnx")
    got, want = both(path, observations(256, SPEC.observation_size))
    assert float(np.max(np.abs(got - want))) <= TOLERANCE


def test_an_operator_it_lacks_is_refused_at_load_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mlp(
        tmp_path / "softmax.onnx",
        [
            helper.make_node("MatMul", ["observation", "w"], ["m"]),
            helper.make_node("Softmax", ["m"], ["action"]),
        ],
        [tensor("w", (39, 12), np.random.default_rng(0))],
    )
    monkeypatch.setenv("PLEND_POLICY_ENGINE", "numpy")
    with pytest.raises(PolicyError, match=r"uses operator Softmax, which the numpy evaluator lacks"):
        load_runner(path, 50.0, "sim", None)


def test_a_graph_that_cannot_run_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_policy import SPEC

    n = SPEC.observation_size  # the declared sizes are right; the weights do not fit them
    path = mlp(tmp_path / "shapes.onnx", [helper.make_node("MatMul", ["observation", "w"], ["action"])],
               [tensor("w", (n + 1, 12), np.random.default_rng(0))], inputs=n)  # fmt: skip
    helper_model = onnx.load(str(path))
    helper.set_model_props(helper_model, {"plend.policy": SPEC.to_json()})
    onnx.save(helper_model, path)
    monkeypatch.setenv("PLEND_POLICY_ENGINE", "numpy")
    with pytest.raises(PolicyError, match=r"the dry run failed \(ValueError"):
        load_runner(path, 50.0, "sim", None)


# Bits whose flip once crashed the loader or broke its message over two lines: a name
# holding a tab and a newline, numbers where messages or text belong, and back.
@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, WALK.stat().st_size - 1), flip=st.integers(0, WALK.stat().st_size - 1),
       bit=st.integers(0, 7))  # fmt: skip
@example(cut=0, flip=62, bit=3)
@example(cut=0, flip=73, bit=1)
@example(cut=0, flip=77, bit=2)
@example(cut=0, flip=78, bit=1)
@example(cut=0, flip=188, bit=1)
@example(cut=0, flip=190, bit=4)
def test_a_damaged_file_is_refused_in_one_line_or_loads(cut: int, flip: int, bit: int) -> None:
    data = bytearray(WALK.read_bytes())
    data[flip] ^= 1 << bit
    with tempfile.TemporaryDirectory() as tmp, _engine("numpy"):
        for name, damaged in (("flipped.onnx", bytes(data)), ("cut.onnx", WALK.read_bytes()[:cut])):
            path = Path(tmp) / name
            path.write_bytes(damaged)
            try:
                load_runner(path, 50.0, "sim", None)
            except PolicyError as exc:
                assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_a_number_where_text_belongs_is_refused_without_making_that_many_bytes() -> None:
    # A metadata entry (field 14) whose key (field 1) is a varint of 2**40 instead of text:
    # bytes(2**40) would ask for a terabyte.
    entry = bytes([0x08]) + _varint(1 << 40)
    model = bytes([0x72, len(entry)]) + entry
    with pytest.raises(ValueError, match=r"text or data is stored as a number \(a damaged file\?\)"):
        read_model(model)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    before = os.environ.get("PLEND_POLICY_ENGINE")
    os.environ["PLEND_POLICY_ENGINE"] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ["PLEND_POLICY_ENGINE"]
        else:
            os.environ["PLEND_POLICY_ENGINE"] = before


def test_without_onnxruntime_the_numpy_evaluator_is_chosen() -> None:
    code = f"""
import sys
class NoOnnxruntime:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'", name=name)
sys.meta_path.insert(0, NoOnnxruntime())
from policies.runner import load_runner
runner = load_runner(__import__("pathlib").Path({str(WALK)!r}), 50.0, "hardware", None)
print(runner.engine, "onnxruntime" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "False"]


def test_an_unknown_engine_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEND_POLICY_ENGINE", "tensorrt")
    with pytest.raises(
        PolicyError, match=r"PLEND_POLICY_ENGINE='tensorrt' is not one of: onnxruntime, numpy"
    ):
        load_runner(WALK, 50.0, "sim", None)
