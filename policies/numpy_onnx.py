"""A numpy evaluator for the small ONNX graphs walking policies are: MLPs.

Where onnxruntime cannot be installed (it has no 32-bit ARM wheels) plend runs policies
with this instead. It implements the operators that exported actors use (Gemm, MatMul,
element-wise arithmetic, the usual activations, and the reshaping around them), in
float32 like onnxruntime, and offers the part of ``onnxruntime.InferenceSession`` the
policy runner uses, so that a policy is checked the same way whichever runs it. An
operator it does not know is refused when the file is loaded, never at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.onnx_file import DTYPES, Model, Node, OnnxFormatError, ValueInfo, read_model, shown_name

__all__ = ["NumpySession", "OnnxFormatError", "UnsupportedModelError"]

Op = Callable[[list[Any], dict[str, Any]], list[np.ndarray]]
DEFAULT_DOMAINS = ("", "ai.onnx")


class UnsupportedModelError(ValueError):
    """A valid ONNX model that uses something this evaluator does not implement."""


def _gemm(x: list[Any], a: dict[str, Any]) -> list[np.ndarray]:
    left = x[0].T if a.get("transA", 0) else x[0]
    right = x[1].T if a.get("transB", 0) else x[1]
    y = left @ right
    if a.get("alpha", 1.0) != 1.0:
        y = np.float32(a["alpha"]) * y
    if len(x) > 2 and x[2] is not None:
        y += x[2] if a.get("beta", 1.0) == 1.0 else np.float32(a["beta"]) * x[2]
    return [y]


def _clip(x: list[Any], a: dict[str, Any]) -> list[np.ndarray]:
    low = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
    high = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
    y = x[0]
    if low is not None:
        y = np.maximum(y, np.asarray(low, dtype=y.dtype))
    if high is not None:
        y = np.minimum(y, np.asarray(high, dtype=y.dtype))
    return [y]


def _flatten(x: list[Any], a: dict[str, Any]) -> list[np.ndarray]:
    axis = a.get("axis", 1)
    axis = axis + x[0].ndim if axis < 0 else axis
    return [x[0].reshape(math.prod(x[0].shape[:axis]), -1)]


def _reshape(x: list[Any], a: dict[str, Any]) -> list[np.ndarray]:
    shape = [int(v) for v in x[1]]
    if not a.get("allowzero", 0):  # 0 keeps that dimension of the input
        shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [x[0].reshape(shape)]


def _constant(x: list[Any], a: dict[str, Any]) -> list[np.ndarray]:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in a:
            return [np.asarray(a[key], dtype=dtype)]
    raise UnsupportedModelError(f"a Constant with attributes {sorted(a)}")


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(np.zeros((), v.dtype), -v))  # no overflow for large |v|


def _unary(f: Callable[[np.ndarray], np.ndarray]) -> Op:
    return lambda x, a: [f(x[0])]


def _binary(f: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Op:
    return lambda x, a: [f(x[0], x[1])]


OPS: dict[str, Op] = {
    "Identity": _unary(lambda v: v),
    "Cast": lambda x, a: [x[0].astype(DTYPES[a["to"]])],
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Constant": _constant,
    "Concat": lambda x, a: [np.concatenate(x, axis=a["axis"])],
    "Gemm": _gemm,
    "MatMul": _binary(np.matmul),
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Neg": _unary(np.negative),
    "Relu": _unary(lambda v: np.maximum(v, np.zeros((), v.dtype))),
    "LeakyRelu": lambda x, a: [np.where(x[0] >= 0, x[0], np.float32(a.get("alpha", 0.01)) * x[0])],
    "Elu": lambda x, a: [np.where(x[0] > 0, x[0], np.float32(a.get("alpha", 1.0)) * np.expm1(x[0]))],
    "Tanh": _unary(np.tanh),
    "Sigmoid": _unary(_sigmoid),
    "Softplus": _unary(lambda v: np.logaddexp(np.zeros((), v.dtype), v)),
    "Clip": _clip,
}


@dataclass(frozen=True)
class ModelMeta:
    """The model's metadata, as ``onnxruntime.ModelMetadata`` has it."""

    custom_metadata_map: dict[str, str]


class NumpySession:
    """Runs one ONNX graph with numpy; the same calls as ``onnxruntime.InferenceSession``.

    Raises:
        OnnxFormatError: the file is not an ONNX model.
        UnsupportedModelError: it uses an operator or a feature this evaluator lacks.
    """

    engine = "numpy"

    def __init__(self, path: str | Path):
        self.model: Model = read_model(Path(path).read_bytes())
        graph = self.model.graph
        self._inputs = [v for v in graph.inputs if v.name not in graph.initializers]
        self._constants = {name: _as_float32(value) for name, value in graph.initializers.items()}
        _check_graph(self.model, self._inputs)
        self._steps = self._compile()

    def get_inputs(self) -> list[ValueInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[ValueInfo]:
        return list(self.model.graph.outputs)

    def get_modelmeta(self) -> ModelMeta:
        return ModelMeta(dict(self.model.metadata))

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Evaluate the graph on ``feeds`` (input name -> array); returns the outputs."""
        values: dict[str, Any] = dict(self._constants)
        for info in self._inputs:
            values[info.name] = np.asarray(feeds[info.name], dtype=DTYPES.get(info.elem_type, np.float32))
        for op, inputs, outputs, attributes in self._steps:
            results = op([values[name] if name else None for name in inputs], attributes)
            values.update(zip(outputs, results, strict=False))
        names = output_names or [o.name for o in self.model.graph.outputs]
        return [np.asarray(values[name]) for name in names]

    def _compile(self) -> list[tuple[Op, tuple[str, ...], tuple[str, ...], dict[str, Any]]]:
        """The nodes as (operator, inputs, outputs, attributes), with each Gemm whose
        weights are constant and transposed given them transposed once, here."""
        steps = []
        for node in self.model.graph.nodes:
            attributes = dict(node.attributes)
            weights = node.inputs[1] if node.op_type == "Gemm" else ""
            if weights in self._constants and attributes.get("transB", 0):
                transposed = f"{weights}\0T"  # a name no graph can use
                self._constants[transposed] = np.ascontiguousarray(self._constants[weights].T)
                node = Node(node.op_type, node.domain, (node.inputs[0], transposed, *node.inputs[2:]),
                            node.outputs, {**attributes, "transB": 0})  # fmt: skip
            steps.append((OPS[node.op_type], node.inputs, node.outputs, node.attributes))
        return steps


def _as_float32(value: np.ndarray) -> np.ndarray:
    # Weights stay in their own type except doubles, which a float32 graph would not hold.
    return value.astype(np.float32) if value.dtype == np.float64 else value


def _check_graph(model: Model, inputs: list[ValueInfo]) -> None:
    """Refuse, at load, anything :meth:`NumpySession.run` could not evaluate."""
    unknown_domains = sorted(d for d in model.opsets if d not in DEFAULT_DOMAINS)
    if any(node.domain not in DEFAULT_DOMAINS for node in model.graph.nodes):
        raise UnsupportedModelError(
            f"operators from the {', '.join(map(shown_name, unknown_domains))} domain"
        )
    missing = sorted({node.op_type for node in model.graph.nodes} - OPS.keys())
    if missing:
        names = ", ".join(map(shown_name, missing))
        raise UnsupportedModelError(
            f"operator {names}, which the numpy evaluator lacks (it has {', '.join(OPS)})"
        )
    known = {v.name for v in inputs} | set(model.graph.initializers)
    for node in model.graph.nodes:
        _check_node(node, known)
        known.update(node.outputs)
    for output in model.graph.outputs:
        if output.name not in known:
            raise OnnxFormatError(f"the output {output.name!r} is not made by any node")


def _check_node(node: Node, known: set[str]) -> None:
    for name in node.inputs:
        if name and name not in known:
            raise OnnxFormatError(f"{shown_name(node.op_type)} reads {name!r} before anything makes it")
    to = node.attributes.get("to")
    if node.op_type == "Cast" and not (isinstance(to, int) and to in DTYPES):
        raise UnsupportedModelError(f"a Cast to data type {to!r}")
