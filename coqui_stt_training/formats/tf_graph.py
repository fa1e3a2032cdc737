"""TensorFlow's frozen GraphDef (`.pb`), as far as reading Coqui's exports needs: the name, operation and
inputs of every node, and the value of its Const nodes (graph.proto, node_def.proto, tensor.proto)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from .protobuf import FormatError, Message, fields, int64, integer, message, read_varint

# types.proto DataType codes and their numpy types (DT_STRING is kept as a list of bytes)
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_}
DT_STRING = 7


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    value: np.ndarray | list[bytes] | None = None  # a Const's tensor


def _packed(buf: bytes, fmt: str) -> list:
    width = struct.calcsize("<" + fmt)
    if len(buf) % width:
        raise FormatError("packed field length is not a multiple of its element size")
    return list(struct.unpack(f"<{len(buf) // width}{fmt}", buf))


def _varints(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        value, pos = read_varint(buf, pos)
        out.append(int64(value))
    return out


def tensor_value(buf: bytes) -> np.ndarray | list[bytes]:
    """A TensorProto: from tensor_content, or from its typed repeated field (a shorter list repeats its last
    value to fill the shape, as TensorFlow's MakeNdarray does)."""
    entries = fields(buf)
    proto = Message(buf, "TensorProto")
    dtype = proto.integer(1)
    shape_proto = proto.message(2)
    shape = []
    for number, dim in fields(shape_proto):
        if number == 2:
            shape.append(Message(message(dim, "dim"), "TensorShapeProto.Dim").integer(1))
    if dtype == DT_STRING:
        return [message(v, "string_val") for n, v in entries if n == 8]
    if dtype not in _DTYPES:
        raise FormatError(f"unsupported tensor dtype {dtype}")
    numpy_type = np.dtype(_DTYPES[dtype])
    count = int(np.prod(shape)) if shape else 1
    if 4 in proto:
        values = np.frombuffer(proto.message(4), dtype=numpy_type)
        if values.size != count:
            raise FormatError(f"tensor_content holds {values.size} values for shape {shape}")
        return values.reshape(shape)
    typed: list = []
    for number, value in entries:
        if number == 5 and numpy_type == np.float32:  # float_val, packed or not
            typed += (
                _packed(value, "f")
                if isinstance(value, bytes)
                else [struct.unpack("<f", value.to_bytes(4, "little"))[0]]
            )
        elif number == 7 and numpy_type in (np.int32, np.uint8, np.int8):  # int_val
            typed += _varints(value) if isinstance(value, bytes) else [int64(integer(value, "int_val"))]
        elif number == 10 and numpy_type == np.int64:  # int64_val
            typed += _varints(value) if isinstance(value, bytes) else [int64(integer(value, "int64_val"))]
    if not typed:
        return np.zeros(shape, dtype=numpy_type)
    if len(typed) < count:
        typed += [typed[-1]] * (count - len(typed))
    return np.array(typed[:count], dtype=numpy_type).reshape(shape)


def read_graph(data: bytes) -> list[Node]:
    """The nodes of a GraphDef. Raises FormatError for bytes that are not one."""
    nodes = []
    for number, value in fields(data):
        if number != 1:  # node; versions and the function library are not needed
            continue
        node = Message(message(value, "GraphDef.node"), "NodeDef")
        name = node.message(1).decode("utf-8", "replace")
        op = node.message(2).decode("utf-8", "replace")
        raw = fields(message(value, "GraphDef.node"))
        inputs = [message(v, "input").decode("utf-8", "replace") for n, v in raw if n == 3]
        tensor = None
        if op == "Const":
            for n, entry in raw:
                if n != 5:  # attr: map<string, AttrValue>
                    continue
                attr = Message(message(entry, "attr"), "attr entry")
                if attr.message(1) == b"value":
                    tensor = tensor_value(Message(attr.message(2), "AttrValue").message(8))
        nodes.append(Node(name, op, inputs, tensor))
    if not nodes or not all(n.name and n.op for n in nodes):
        raise FormatError("not a TensorFlow GraphDef (no named nodes)")
    return nodes
