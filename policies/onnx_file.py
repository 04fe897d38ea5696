"""Reading an ONNX file without the onnx package: the few protobuf messages a policy uses.

An ONNX model is a protobuf ``ModelProto``. The daemon needs only its graph (nodes,
initialisers, inputs, outputs), its operator set versions and its metadata, so this
module decodes those message types straight from the protobuf wire format (varints,
fixed-width numbers and length-delimited fields) rather than depend on ``onnx``, which
is a training tool. Field numbers are those of onnx/onnx.proto (IR version 3 and later).
Anything malformed raises :class:`OnnxFormatError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# TensorProto.DataType -> numpy dtype (the types a policy graph can hold).
DTYPES: dict[int, Any] = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}  # fmt: skip
TYPE_NAMES = {
    1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64",
}  # fmt: skip
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
MAX_NODES = 10_000


class OnnxFormatError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("the file ends inside a number (truncated?)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("a number is longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field in one message.

    Varints and fixed-width values come as ints (fixed ones as their raw bytes' integer),
    length-delimited ones as memoryviews.
    """
    if not isinstance(buf, memoryview):
        raise OnnxFormatError("a message is stored as a number (a damaged file?)")
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(buf):
                raise OnnxFormatError("the file ends inside a number (truncated?)")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise OnnxFormatError("a field runs past the end of the file (truncated?)")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise OnnxFormatError(f"unknown protobuf wire type {wire}")
        if number == 0:
            raise OnnxFormatError("a field has number 0")
        yield number, wire, value


def _num(value: Any) -> int:
    """A varint field's value; a field of another wire type there is a damaged file."""
    if not isinstance(value, int):
        raise OnnxFormatError("a number is stored as bytes (a damaged file?)")
    return value


def _raw(value: Any) -> bytes:
    """A length-delimited (or fixed-width) field's bytes; never ``bytes(n)`` of a number,
    which would make ``n`` zero bytes."""
    if not isinstance(value, memoryview):
        raise OnnxFormatError("text or data is stored as a number (a damaged file?)")
    return bytes(value)


def _int64(value: Any) -> int:
    value = _num(value)
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value: Any) -> list[int]:
    """A repeated int64 field's values: one varint, or a packed run of them."""
    if wire == _VARINT:
        return [_int64(value)]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(_int64(item))
    return out


def _floats(wire: int, value: Any, fmt: str = "f") -> list[float]:
    """A repeated float (or double, ``fmt="d"``) field's values: one, or a packed run."""
    data = _raw(value)
    if len(data) % struct.calcsize(fmt):
        raise OnnxFormatError("a packed number list has a partial number")
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt}", data))


def shown_name(text: str, limit: int = 64) -> str:
    """A name read from the file, as an error may repeat it: on one line, and short (a
    damaged file can hold any bytes there)."""
    shown = text if text.isprintable() else ascii(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}..."


def _text(value: Any) -> str:
    try:
        return _raw(value).decode("utf-8")
    except UnicodeDecodeError:
        raise OnnxFormatError("a name is not UTF-8 text") from None


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: name, element type (TensorProto.DataType) and shape."""

    name: str
    elem_type: int = 0
    shape: tuple[int | str | None, ...] = ()

    @property
    def type(self) -> str:
        """As onnxruntime names it, e.g. ``tensor(float)``."""
        return f"tensor({TYPE_NAMES.get(self.elem_type, 'undefined')})"


@dataclass(frozen=True)
class Node:
    """One operator application."""

    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)


@dataclass
class Model:
    """What plend reads from an ONNX file."""

    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    graph: Graph = field(default_factory=Graph)
    metadata: dict[str, str] = field(default_factory=dict)


def read_tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    """A TensorProto: its name and values."""
    dims: list[int] = []
    name, data_type, raw, location = "", 0, None, 0
    typed: dict[int, list[Any]] = {}
    for number, wire, value in fields(buf):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            data_type = _num(value)
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = _raw(value)
        elif number == 14:
            location = _num(value)
        elif number in (4, 5, 7, 11, 12):  # float, int32, int64, double, uint64 data
            items: list[Any]
            if number == 4:
                items = _floats(wire, value)
            elif number == 11:
                items = _floats(wire, value, "d")
            else:
                items = _ints(wire, value)
            typed.setdefault(number, []).extend(items)
    if location == 1:
        raise OnnxFormatError(f"tensor {name!r} keeps its data in another file (external data)")
    if data_type not in DTYPES:
        raise OnnxFormatError(f"tensor {name!r} has an unsupported data type {data_type}")
    dtype = np.dtype(DTYPES[data_type])
    if raw is not None:
        values = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        values = np.asarray(next(iter(typed.values()), []), dtype=np.float64 if dtype.kind == "f" else None)
        if data_type == 10:  # float16 values travel as int32 bit patterns
            values = values.astype(np.uint16).view(np.float16)
        values = values.astype(dtype)
    if any(d < 0 for d in dims):
        raise OnnxFormatError(f"tensor {name!r} has a negative dimension {dims}")
    count = math.prod(dims)
    if values.size != count:
        raise OnnxFormatError(f"tensor {name!r} has {values.size} values for shape {dims}")
    return name, values.reshape(dims)


def _attribute(buf: memoryview) -> tuple[str, Any]:
    name, floats, ints, strings = "", [], [], []
    scalar: Any = None
    kind = 0
    for number, wire, value in fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:
            scalar = next(iter(_floats(wire, value)), None)
        elif number == 3:
            scalar = _int64(value)
        elif number == 4:
            scalar = _raw(value)
        elif number == 5:
            scalar = read_tensor(value)[1]
        elif number == 7:
            floats += _floats(wire, value)
        elif number == 8:
            ints += _ints(wire, value)
        elif number == 9:
            strings.append(_raw(value))
        elif number == 20:
            kind = _num(value)
    if kind == 6 or (scalar is None and floats):  # FLOATS
        return name, floats
    if kind == 7 or (scalar is None and ints):  # INTS
        return name, ints
    if kind == 8 or (scalar is None and strings):
        return name, strings
    return name, scalar


def _node(buf: memoryview) -> Node:
    inputs, outputs, attributes = [], [], {}
    op_type = domain = ""
    for number, _wire, value in fields(buf):
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
        elif number == 5:
            key, attr = _attribute(value)
            attributes[key] = attr
    if not op_type:
        raise OnnxFormatError("a node has no operator type")
    return Node(op_type, domain, tuple(inputs), tuple(outputs), attributes)


def _value_info(buf: memoryview) -> ValueInfo:
    name, elem_type = "", 0
    shape: list[int | str | None] = []
    for number, _wire, value in fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:  # TypeProto
            for n, _w, tensor in fields(value):
                if n == 1:  # TypeProto.Tensor
                    elem_type, shape = _tensor_type(tensor)
    return ValueInfo(name, elem_type, tuple(shape))


def _tensor_type(buf: memoryview) -> tuple[int, list[int | str | None]]:
    elem_type = 0
    shape: list[int | str | None] = []
    for number, _wire, value in fields(buf):
        if number == 1:
            elem_type = _num(value)
        elif number == 2:  # TensorShapeProto
            for n, _w, dim in fields(value):
                if n == 1:
                    shape.append(_dimension(dim))
    return elem_type, shape


def _dimension(buf: memoryview) -> int | str | None:
    found: int | str | None = None
    for number, _wire, value in fields(buf):
        if number == 1:
            found = _int64(value)
        elif number == 2:
            found = _text(value)
    return found


def _graph(buf: memoryview) -> Graph:
    graph = Graph()
    for number, _wire, value in fields(buf):
        if number == 1:
            if len(graph.nodes) >= MAX_NODES:  # stop before spending seconds decoding the rest
                raise OnnxFormatError(f"the graph has over {MAX_NODES:,} nodes; a walking policy has dozens")
            graph.nodes.append(_node(value))
        elif number == 5:
            name, array = read_tensor(value)
            graph.initializers[name] = array
        elif number == 11:
            graph.inputs.append(_value_info(value))
        elif number == 12:
            graph.outputs.append(_value_info(value))
        elif number == 15:
            raise OnnxFormatError("sparse initialisers are not supported")
    return graph


def _first_and_second(buf: memoryview) -> dict[int, Any]:
    return {number: value for number, _wire, value in fields(buf) if number in (1, 2)}


def read_model(data: bytes) -> Model:
    """Decode a ModelProto from the file's bytes."""
    model, has_graph = Model(), False
    for number, _wire, value in fields(memoryview(data)):
        if number == 1:
            model.ir_version = _num(value)
        elif number == 7:
            model.graph, has_graph = _graph(value), True
        elif number == 8:  # OperatorSetIdProto: domain (1), version (2)
            parts = _first_and_second(value)
            model.opsets[_text(parts.get(1, memoryview(b"")))] = _num(parts.get(2, 0))
        elif number == 14:  # StringStringEntryProto: key (1), value (2)
            parts = _first_and_second(value)
            model.metadata[_text(parts.get(1, memoryview(b"")))] = _text(parts.get(2, memoryview(b"")))
    if not has_graph or model.ir_version < 3:
        raise OnnxFormatError("no ONNX graph in it")
    return model
