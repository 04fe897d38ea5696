"""Sizing a policy's graph before anything runs it.

A walking policy is a small network: its largest tensor is a weight matrix of some
thousands of values. A file can nonetheless describe tensors of any size
(``ConstantOfShape([1e9])`` is 4 GB of zeros, and an outer product of two modest vectors
is as large), which onnxruntime allocates while creating the session (it folds constant
parts of the graph) or on the first run, growing the daemon by gigabytes or getting it
killed. :func:`check_sizes` works out the shape of every tensor of the graph from the
file alone: the initialisers, the input (one observation: every named dimension is 1)
and the constant inputs that set sizes (Reshape, Expand, Tile, ConstantOfShape, Range,
Slice, ...), evaluating the small constant parts such as ``Shape -> Gather -> Concat``
as it goes. It refuses, in one line, a tensor of more than :data:`MAX_ELEMENTS` values,
more than :data:`MAX_TOTAL` in all, a size known only at run time, and an operator it
cannot size: nothing a walking policy needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from policies.onnx_file import DTYPES, Model, Node, shown_name

MAX_ELEMENTS = 10_000_000  # values in one tensor (40 MB of float32)
MAX_TOTAL = 30_000_000  # values in all the graph's tensors together
SMALL = 10_000  # constant tensors up to this size are evaluated (shapes, indices)
DEFAULT_DOMAINS = ("", "ai.onnx")

Shape = tuple[int, ...]

UNARY = frozenset({
    "Identity", "Cast", "CastLike", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Tanh",
    "Sigmoid", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "Abs", "Neg", "Exp", "Log",
    "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Floor", "Ceil",
    "Round", "Sign", "Erf", "Clip", "Not", "IsNaN", "IsInf", "Dropout", "Softmax", "LogSoftmax",
    "Hardmax", "LayerNormalization", "BatchNormalization", "InstanceNormalization", "LpNormalization",
    "Shrink", "ThresholdedRelu"
})  # fmt: skip
"""Operators whose outputs are no larger than their first input (PRelu's slope broadcasts
to the input's shape)."""
BROADCAST = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod"
})  # fmt: skip
REDUCE = frozenset({
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"
})  # fmt: skip


class GraphSizeError(ValueError):
    """The graph has a tensor larger than a walking policy needs, or one whose size
    cannot be known before it runs; the message says which."""


class _Unsized(Exception):
    """A node reads a tensor that nothing makes, or whose shapes do not fit: the engine
    fails there (at load or on the dry run) and never runs what depends on it, so the
    sizes downstream are left unknown and the engine says what is wrong."""


def _shown(text: str) -> str:
    return shown_name(text, 40)


class _Sizer:
    """The shapes (and small constant values) of a graph's tensors, node by node."""

    def __init__(self, model: Model, fed: Shape | None):
        graph = model.graph
        self.shapes: dict[str, Shape] = {}
        self.unknown: set[str] = set()
        self.values: dict[str, np.ndarray] = {}
        self.total = 0
        self.node: Node | None = None
        for name, array in graph.initializers.items():
            self._record(name, tuple(array.shape), f"initialiser {_shown(name)}")
            self.values[name] = array
        for info in graph.inputs:
            if info.name not in graph.initializers:
                dims = fed or tuple(d if isinstance(d, int) else 1 for d in info.shape)  # batch 1
                self._record(info.name, dims, f"input {_shown(info.name)}")

    def _record(self, name: str, shape: Shape, what: str) -> None:
        if any(d < 0 for d in shape):
            raise GraphSizeError(f"{what} has a negative dimension {list(shape)}")
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise GraphSizeError(
                f"{what} would hold {count:,} values (shape {list(shape)}), over the {MAX_ELEMENTS:,} "
                "a walking policy needs in one tensor; export a smaller network"
            )
        self.total += count
        if self.total > MAX_TOTAL:
            raise GraphSizeError(
                f"its tensors would hold over {MAX_TOTAL:,} values in all (at {what}), more than a "
                "walking policy needs; export a smaller network"
            )
        self.shapes[name] = shape

    def fail(self, why: str) -> GraphSizeError:
        assert self.node is not None
        name = self.node.outputs[0] if self.node.outputs else ""
        return GraphSizeError(f"{_shown(self.node.op_type)} node {_shown(name)!r}: {why}")

    def shape(self, index: int) -> Shape:
        assert self.node is not None
        name = self.node.inputs[index] if index < len(self.node.inputs) else ""
        if name not in self.shapes:
            raise _Unsized
        return self.shapes[name]

    def has(self, index: int) -> bool:
        assert self.node is not None
        return index < len(self.node.inputs) and bool(self.node.inputs[index])

    def value(self, index: int, what: str) -> np.ndarray:
        """A constant input; one computed at run time is refused."""
        assert self.node is not None
        name = self.node.inputs[index] if self.has(index) else ""
        if name in self.unknown or (name and name not in self.shapes):
            raise _Unsized
        if name not in self.values:
            raise self.fail(f"its {what} is computed at run time; a walking policy's sizes are constants")
        return self.values[name]

    def ints(self, index: int, attribute: str, what: str) -> list[int] | None:
        """Integers from an attribute (older opsets) or a constant input (newer); None if neither."""
        assert self.node is not None
        if attribute in self.node.attributes:
            return [int(v) for v in np.ravel(self.node.attributes[attribute])]
        if self.has(index):
            return [int(v) for v in np.ravel(self.value(index, what))]
        return None

    def attribute(self, name: str, default: Any) -> Any:
        assert self.node is not None
        return self.node.attributes.get(name, default)

    def run(self, node: Node) -> None:
        self.node = node
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in RULES:
            op = f"{node.domain}.{node.op_type}" if node.domain not in DEFAULT_DOMAINS else node.op_type
            raise GraphSizeError(
                f"operator {_shown(op)} is not one whose sizes plend can check; a walking policy is made of "
                "matrix products, element-wise operators, activations and reshapes"
            )
        try:
            shapes = RULES[node.op_type](self)
        except GraphSizeError:
            raise
        except (_Unsized, ValueError, IndexError, TypeError, OverflowError, KeyError):
            self.unknown.update(node.outputs)
            return
        for name, shape in zip(node.outputs, shapes, strict=False):
            if name:
                self._record(
                    name, tuple(int(d) for d in shape), f"{_shown(node.op_type)} node {_shown(name)}"
                )
        if node.op_type in EVALUATE and node.outputs and node.outputs[0] in self.shapes:
            self._evaluate(node)

    def _evaluate(self, node: Node) -> None:
        """Compute a small constant output, so that sizes computed from it are known."""
        shape = self.shapes[node.outputs[0]]
        inputs = [n for n in node.inputs if n]
        needs_values = node.op_type not in ("Shape", "Size")  # these read only the input's shape
        if math.prod(shape) > SMALL or (needs_values and not all(n in self.values for n in inputs)):
            return
        try:
            result = np.asarray(EVALUATE[node.op_type](self, [self.values.get(n) for n in inputs]))
        except (ValueError, IndexError, TypeError, KeyError, ArithmeticError):
            return  # left to the engine, which says what is wrong when it runs
        if result.shape == shape:
            self.values[node.outputs[0]] = result


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} for rank {rank}")
    return axis + rank if axis < 0 else axis


def _proxy(shape: Shape) -> np.ndarray:
    """An array of ``shape`` that takes no memory, to let numpy work out shapes."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, (0,) * len(shape), writeable=False)


def _matmul(s: _Sizer) -> list[Shape]:
    a, b = list(s.shape(0)), list(s.shape(1))
    if not a or not b:
        raise ValueError("a scalar operand")
    a_vector, b_vector = len(a) == 1, len(b) == 1
    a, b = ([1, *a] if a_vector else a), ([*b, 1] if b_vector else b)
    if a[-1] != b[-2]:
        raise ValueError(f"{a[-1]} columns by {b[-2]} rows")
    out = [*np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])), a[-2], b[-1]]
    return [tuple(out[: len(out) - 2] + out[len(out) - 2 + a_vector : len(out) - b_vector])]


def _gemm(s: _Sizer) -> list[Shape]:
    a, b = s.shape(0), s.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise ValueError("Gemm takes matrices")
    (m, k), (k2, n) = a[::-1] if s.attribute("transA", 0) else a, b[::-1] if s.attribute("transB", 0) else b
    if k != k2:
        raise ValueError(f"{k} columns by {k2} rows")
    if s.has(2):
        np.broadcast_shapes(s.shape(2), (m, n))
    return [(m, n)]


def _reshape(s: _Sizer) -> list[Shape]:
    source, wanted = s.shape(0), s.ints(1, "shape", "target shape") or []
    if not s.attribute("allowzero", 0):
        wanted = [source[i] if v == 0 and i < len(source) else v for i, v in enumerate(wanted)]
    known = math.prod(v for v in wanted if v != -1)
    if wanted.count(-1) == 1 and known > 0:
        wanted = [math.prod(source) // known if v == -1 else v for v in wanted]
    if math.prod(wanted) != math.prod(source) or any(v < 0 for v in wanted):
        raise ValueError(f"shape {wanted} from {list(source)}")
    return [tuple(wanted)]


def _flatten(s: _Sizer) -> list[Shape]:
    shape = s.shape(0)
    axis = _axis(s.attribute("axis", 1), len(shape)) if s.attribute("axis", 1) != len(shape) else len(shape)
    return [(math.prod(shape[:axis]), math.prod(shape[axis:]))]


def _squeeze(s: _Sizer) -> list[Shape]:
    shape = s.shape(0)
    axes = s.ints(1, "axes", "axes")
    drop = (
        {_axis(a, len(shape)) for a in axes}
        if axes is not None
        else {i for i, d in enumerate(shape) if d == 1}
    )
    return [tuple(d for i, d in enumerate(shape) if i not in drop)]


def _unsqueeze(s: _Sizer) -> list[Shape]:
    shape, axes = list(s.shape(0)), s.ints(1, "axes", "axes") or []
    rank = len(shape) + len(axes)
    for axis in sorted(_axis(a, rank) for a in axes):
        shape.insert(axis, 1)
    return [tuple(shape)]


def _concat(s: _Sizer) -> list[Shape]:
    assert s.node is not None
    shapes = [s.shape(i) for i, name in enumerate(s.node.inputs) if name]
    axis = _axis(s.attribute("axis", 0), len(shapes[0]))
    if any(len(sh) != len(shapes[0]) or sh[:axis] + sh[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :]
           for sh in shapes):  # fmt: skip
        raise ValueError(f"shapes {[list(sh) for sh in shapes]} along axis {axis}")
    return [(*shapes[0][:axis], sum(sh[axis] for sh in shapes), *shapes[0][axis + 1 :])]


def _slices(s: _Sizer, rank: int) -> tuple[slice, ...]:
    starts, ends = s.ints(1, "starts", "start"), s.ints(2, "ends", "end")
    axes = s.ints(3, "axes", "axes") or list(range(len(starts or [])))
    steps = s.ints(4, "steps", "step") or [1] * len(axes)
    chosen = [slice(None)] * rank
    for start, end, axis, step in zip(starts or [], ends or [], axes, steps, strict=True):
        chosen[_axis(axis, rank)] = slice(start, end, step)
    return tuple(chosen)


def _slice(s: _Sizer) -> list[Shape]:
    shape = s.shape(0)
    return [_proxy(shape)[_slices(s, len(shape))].shape]


def _gather(s: _Sizer) -> list[Shape]:
    data, indices = s.shape(0), s.shape(1)
    axis = _axis(s.attribute("axis", 0), len(data))
    return [(*data[:axis], *indices, *data[axis + 1 :])]


def _shape(s: _Sizer) -> list[Shape]:
    rank = len(s.shape(0))
    return [(len(range(rank)[slice(s.attribute("start", 0), s.attribute("end", rank))]),)]


def _constant(s: _Sizer) -> list[Shape]:
    attributes = s.node.attributes if s.node else {}
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attributes:
            return [np.shape(attributes[key])]
    raise ValueError(f"a Constant with attributes {sorted(attributes)}")


def _constant_of_shape(s: _Sizer) -> list[Shape]:
    return [tuple(s.ints(0, "", "shape") or [])]


def _expand(s: _Sizer) -> list[Shape]:
    return [np.broadcast_shapes(s.shape(0), tuple(s.ints(1, "", "shape") or []))]


def _tile(s: _Sizer) -> list[Shape]:
    shape, repeats = s.shape(0), s.ints(1, "", "repeats") or []
    if len(repeats) != len(shape):
        raise ValueError(f"{len(repeats)} repeats for rank {len(shape)}")
    return [tuple(d * r for d, r in zip(shape, repeats, strict=True))]


def _range(s: _Sizer) -> list[Shape]:
    start, limit, delta = (
        float(np.ravel(s.value(i, what))[0]) for i, what in enumerate(("start", "limit", "delta"))
    )
    if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
        raise ValueError(f"Range({start}, {limit}, {delta})")
    return [(max(math.ceil((limit - start) / delta), 0),)]


def _reduce(s: _Sizer) -> list[Shape]:
    assert s.node is not None
    shape = s.shape(0)
    if s.node.op_type.startswith("Arg"):
        axes: list[int] | None = [s.attribute("axis", 0)]
    else:
        axes = s.ints(1, "axes", "axes")
    if not axes:
        if s.attribute("noop_with_empty_axes", 0):
            return [shape]
        axes = list(range(len(shape)))
    chosen = {_axis(a, len(shape)) for a in axes}
    keep = s.attribute("keepdims", 1)
    return [tuple(1 if i in chosen else d for i, d in enumerate(shape) if keep or i not in chosen)]


def _split(s: _Sizer) -> list[Shape]:
    assert s.node is not None
    shape = s.shape(0)
    axis = _axis(s.attribute("axis", 0), len(shape))
    parts = s.ints(1, "split", "split sizes")
    if parts is None:
        count = s.attribute("num_outputs", len(s.node.outputs))
        each = -(-shape[axis] // count)
        parts = [min(each, max(shape[axis] - each * i, 0)) for i in range(count)]
    return [(*shape[:axis], p, *shape[axis + 1 :]) for p in parts]


def _transpose(s: _Sizer) -> list[Shape]:
    shape = s.shape(0)
    perm = s.attribute("perm", list(range(len(shape)))[::-1])
    if sorted(perm) != list(range(len(shape))):
        raise ValueError(f"perm {perm} for rank {len(shape)}")
    return [tuple(shape[p] for p in perm)]


def _unary(s: _Sizer) -> list[Shape]:
    assert s.node is not None
    return [s.shape(0)] * len(s.node.outputs)


def _broadcast(s: _Sizer) -> list[Shape]:
    assert s.node is not None
    return [np.broadcast_shapes(*(s.shape(i) for i, name in enumerate(s.node.inputs) if name))]


RULES: dict[str, Callable[[_Sizer], list[Shape]]] = {
    **dict.fromkeys(UNARY, _unary), **dict.fromkeys(BROADCAST, _broadcast),
    **dict.fromkeys(REDUCE | {"ArgMax", "ArgMin"}, _reduce),
    "MatMul": _matmul, "Gemm": _gemm, "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "Concat": _concat, "Slice": _slice, "Gather": _gather, "Shape": _shape,
    "Size": lambda s: [()], "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Expand": _expand, "Tile": _tile, "Range": _range, "Split": _split, "Transpose": _transpose,
}  # fmt: skip


def _constant_value(s: _Sizer, x: list[Any]) -> np.ndarray:
    attributes = s.node.attributes if s.node else {}
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in attributes:
            return np.asarray(attributes[key], dtype=dtype)
    raise ValueError("a Constant without a value")


def _shaped(s: _Sizer, x: list[Any]) -> np.ndarray:
    assert s.node is not None
    return np.reshape(x[0], s.shapes[s.node.outputs[0]])


def _divide(s: _Sizer, x: list[Any]) -> np.ndarray:
    quotient = np.divide(x[0], x[1])
    return np.trunc(quotient).astype(x[0].dtype) if x[0].dtype.kind in "iu" else quotient


EVALUATE: dict[str, Callable[[_Sizer, list[Any]], np.ndarray]] = {
    "Shape": lambda s, x: np.asarray(s.shape(0)[slice(s.attribute("start", 0), s.attribute("end", None))]),
    "Size": lambda s, x: np.asarray(math.prod(s.shape(0)), np.int64),
    "Constant": _constant_value,
    "Identity": lambda s, x: x[0],
    "Cast": lambda s, x: x[0].astype(DTYPES[s.attribute("to", 1)]),
    "Gather": lambda s, x: np.take(x[0], x[1], axis=s.attribute("axis", 0)),
    "Concat": lambda s, x: np.concatenate([np.atleast_1d(v) for v in x], axis=s.attribute("axis", 0)),
    "Slice": lambda s, x: x[0][_slices(s, x[0].ndim)],
    "Squeeze": _shaped, "Unsqueeze": _shaped, "Reshape": _shaped, "Flatten": _shaped,
    "Add": lambda s, x: x[0] + x[1], "Sub": lambda s, x: x[0] - x[1], "Mul": lambda s, x: x[0] * x[1],
    "Div": _divide, "Neg": lambda s, x: -x[0],
    "Range": lambda s, x: np.arange(x[0].item(), x[1].item(), x[2].item()).astype(x[0].dtype),
}  # fmt: skip


def check_sizes(model: Model, fed: Shape | None = None) -> int:
    """Refuse a graph with a tensor larger than a walking policy needs, or a size known
    only at run time; returns the number of values its tensors hold in all.

    Args:
        model: the policy file's model.
        fed: the shape of what the graph's input is fed (``(1, observation size)``),
            whatever the file declares; None: as declared, a named dimension 1.

    Raises:
        GraphSizeError: what is too large or unknown, in one line.
    """
    sizer = _Sizer(model, fed)
    for node in model.graph.nodes:
        sizer.run(node)
    return sizer.total
