"""TensorFlow Lite's model file (a FlatBuffer of TFLite's schema.fbs), written and read with the generated
bindings of the `tflite` package: Coqui's `.tflite` exports, and what its native client loads.

One subgraph is all Coqui's models use. Tensors are (name, shape, type, constant bytes or none, int8
scales); operators are a builtin name or a custom code with their inputs, outputs and options.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite
from flatbuffers import flexbuffers

from .protobuf import FormatError

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
STRING = "string"  # TFLite's string tensors hold a count, offsets and the bytes; no numpy dtype says that

_TYPES: dict[Any, int] = {
    np.dtype(np.float32): tflite.TensorType.FLOAT32,
    np.dtype(np.int32): tflite.TensorType.INT32,
    np.dtype(np.int64): tflite.TensorType.INT64,
    np.dtype(np.int8): tflite.TensorType.INT8,
    np.dtype(np.uint8): tflite.TensorType.UINT8,
    STRING: tflite.TensorType.STRING,
}
_DTYPES = {code: dtype for dtype, code in _TYPES.items()}
_BUILTIN_CODES = {name: code for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
_BUILTIN_NAMES = {code: name for name, code in _BUILTIN_CODES.items()}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: Any  # a numpy dtype, or STRING
    data: bytes | memoryview | None = None  # a constant's contents (read: a view into the file's bytes)
    scale: np.ndarray | None = None  # int8 weights: value = (q - zero_point) * scale
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0

    def array(self) -> np.ndarray:
        """A numeric constant's value, as stored (int8 stays int8)."""
        if self.data is None or self.dtype == STRING:
            raise FormatError(f"tensor {self.name} is not a numeric constant")
        values = np.frombuffer(self.data, dtype=self.dtype)
        if values.size != int(np.prod(self.shape)):
            raise FormatError(f"tensor {self.name} holds {values.size} values for its shape {list(self.shape)}")
        return values.reshape(self.shape)

    def dequantized(self) -> np.ndarray:
        """The float32 value of a float constant or of int8 weights (per tensor or per channel)."""
        values = self.array()
        if self.scale is None:
            return values.astype(np.float32)
        shape = [1] * values.ndim
        if self.scale.size > 1:
            shape[self.quantized_dimension] = self.scale.size
        zero = self.zero_point if self.zero_point is not None else np.zeros_like(self.scale)
        return ((values.astype(np.float32) - zero.reshape(shape)) * self.scale.reshape(shape)).astype(np.float32)

    def strings(self) -> list[bytes]:
        if self.data is None or self.dtype != STRING:
            raise FormatError(f"tensor {self.name} is not a string constant")
        return decode_strings(bytes(self.data))


@dataclass
class Operator:
    op: str  # a builtin operator's name (FULLY_CONNECTED) or a custom operator's code (Mfcc)
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    metadata: dict[str, bytes] = field(default_factory=dict)

    def index(self, name: str) -> int | None:
        return next((i for i, t in enumerate(self.tensors) if t.name == name), None)

    def producer(self, tensor: int) -> Operator | None:
        return next((op for op in self.operators if tensor in op.outputs), None)


def encode_strings(values: list[bytes]) -> bytes:
    """TFLite's string tensor: int32 count, int32 offsets of each string and of the end, then the bytes."""
    start = 4 * (len(values) + 2)
    offsets, position = [], start
    for value in values:
        offsets.append(position)
        position += len(value)
    offsets.append(position)
    return struct.pack(f"<{len(offsets) + 1}i", len(values), *offsets) + b"".join(values)


def decode_strings(data: bytes) -> list[bytes]:
    if len(data) < 4:
        raise FormatError("string tensor shorter than its count")
    (count,) = struct.unpack_from("<i", data)
    if count < 0 or len(data) < 4 * (count + 2):
        raise FormatError("string tensor shorter than its offsets")
    offsets = struct.unpack_from(f"<{count + 1}i", data, 4)
    bounds = list(itertools.pairwise(offsets))
    if any(end < start for start, end in bounds) or offsets[-1] > len(data):
        raise FormatError("string tensor offsets out of order or past its end")
    return [data[start:end] for start, end in bounds]


# ---- writing ----------------------------------------------------------------------------------------


def _int_vector(builder: flatbuffers.Builder, values) -> int:
    return builder.CreateNumpyVector(np.asarray(values, dtype=np.int32))


def _bytes_vector(builder: flatbuffers.Builder, data: bytes | memoryview, alignment: int = 16) -> int:
    """A [ubyte] vector whose contents start at an `alignment` boundary (TFLite reads weights in place)."""
    builder.StartVector(1, len(data), alignment)
    builder.head -= len(data)
    builder.Bytes[builder.head : builder.head + len(data)] = data
    return builder.EndVector()


def _builtin_options(builder: flatbuffers.Builder, op: str, options: dict[str, Any]) -> tuple[int, int]:
    """(options type, offset) of a builtin operator's options table; (0, 0) for those without options."""
    t = tflite
    if op == "FULLY_CONNECTED":
        t.FullyConnectedOptionsStart(builder)
        t.FullyConnectedOptionsAddFusedActivationFunction(builder, options.get("activation", 0))
        return t.BuiltinOptions.FullyConnectedOptions, t.FullyConnectedOptionsEnd(builder)
    if op == "RESHAPE":
        new_shape = _int_vector(builder, options["new_shape"])
        t.ReshapeOptionsStart(builder)
        t.ReshapeOptionsAddNewShape(builder, new_shape)
        return t.BuiltinOptions.ReshapeOptions, t.ReshapeOptionsEnd(builder)
    if op == "STRIDED_SLICE":
        t.StridedSliceOptionsStart(builder)
        t.StridedSliceOptionsAddBeginMask(builder, options.get("begin_mask", 0))
        t.StridedSliceOptionsAddEndMask(builder, options.get("end_mask", 0))
        t.StridedSliceOptionsAddShrinkAxisMask(builder, options.get("shrink_axis_mask", 0))
        return t.BuiltinOptions.StridedSliceOptions, t.StridedSliceOptionsEnd(builder)
    if op == "CONCATENATION":
        t.ConcatenationOptionsStart(builder)
        t.ConcatenationOptionsAddAxis(builder, options["axis"])
        return t.BuiltinOptions.ConcatenationOptions, t.ConcatenationOptionsEnd(builder)
    if op == "SPLIT":
        t.SplitOptionsStart(builder)
        t.SplitOptionsAddNumSplits(builder, options["num_splits"])
        return t.BuiltinOptions.SplitOptions, t.SplitOptionsEnd(builder)
    if op == "SOFTMAX":
        t.SoftmaxOptionsStart(builder)
        t.SoftmaxOptionsAddBeta(builder, options.get("beta", 1.0))
        return t.BuiltinOptions.SoftmaxOptions, t.SoftmaxOptionsEnd(builder)
    if op == "ADD":
        t.AddOptionsStart(builder)
        return t.BuiltinOptions.AddOptions, t.AddOptionsEnd(builder)
    if op == "MUL":
        t.MulOptionsStart(builder)
        return t.BuiltinOptions.MulOptions, t.MulOptionsEnd(builder)
    return 0, 0


def write(graph: Graph) -> bytes:
    """The model file of a one-subgraph graph. Constants get a buffer each; buffer 0 stays empty, as
    TFLite's converter leaves it."""
    size_hint = sum(len(t.data or b"") for t in graph.tensors) + 65536
    builder = flatbuffers.Builder(size_hint)
    constant_data: list[bytes | memoryview] = [t.data for t in graph.tensors if t.data is not None]
    metadata_items = list(graph.metadata.items())
    buffer_offsets = []
    for data in [None, *constant_data, *(value for _, value in metadata_items)]:
        contents = _bytes_vector(builder, data) if data else None
        tflite.BufferStart(builder)
        if contents is not None:
            tflite.BufferAddData(builder, contents)
        buffer_offsets.append(tflite.BufferEnd(builder))

    tensor_offsets, next_buffer = [], 1
    for tensor in graph.tensors:
        name = builder.CreateString(tensor.name)
        shape = _int_vector(builder, tensor.shape)
        quantization = None
        if tensor.scale is not None:
            scale = builder.CreateNumpyVector(np.asarray(tensor.scale, dtype=np.float32).ravel())
            zero = builder.CreateNumpyVector(
                np.zeros(tensor.scale.size, dtype=np.int64)
                if tensor.zero_point is None
                else np.asarray(tensor.zero_point, dtype=np.int64).ravel()
            )
            tflite.QuantizationParametersStart(builder)
            tflite.QuantizationParametersAddScale(builder, scale)
            tflite.QuantizationParametersAddZeroPoint(builder, zero)
            tflite.QuantizationParametersAddQuantizedDimension(builder, tensor.quantized_dimension)
            quantization = tflite.QuantizationParametersEnd(builder)
        buffer = 0
        if tensor.data is not None:
            buffer, next_buffer = next_buffer, next_buffer + 1
        tflite.TensorStart(builder)
        tflite.TensorAddShape(builder, shape)
        tflite.TensorAddType(builder, _TYPES[tensor.dtype])
        tflite.TensorAddBuffer(builder, buffer)
        tflite.TensorAddName(builder, name)
        if quantization is not None:
            tflite.TensorAddQuantization(builder, quantization)
        tensor_offsets.append(tflite.TensorEnd(builder))

    codes: dict[tuple[str, int], int] = {}
    operator_offsets = []
    for op in graph.operators:
        code = codes.setdefault((op.op, op.version), len(codes))
        inputs, outputs = _int_vector(builder, op.inputs), _int_vector(builder, op.outputs)
        custom = op.op not in _BUILTIN_CODES
        if custom:
            custom_options = _bytes_vector(builder, flexbuffers.Dumps(op.options), alignment=1)
        else:
            options_type, options = _builtin_options(builder, op.op, op.options)
        tflite.OperatorStart(builder)
        tflite.OperatorAddOpcodeIndex(builder, code)
        tflite.OperatorAddInputs(builder, inputs)
        tflite.OperatorAddOutputs(builder, outputs)
        if custom:
            tflite.OperatorAddCustomOptions(builder, custom_options)
        elif options_type:
            tflite.OperatorAddBuiltinOptionsType(builder, options_type)
            tflite.OperatorAddBuiltinOptions(builder, options)
        operator_offsets.append(tflite.OperatorEnd(builder))

    code_offsets = []
    for name, version in codes:
        custom_code = builder.CreateString(name) if name not in _BUILTIN_CODES else None
        builtin = _BUILTIN_CODES.get(name, tflite.BuiltinOperator.CUSTOM)
        tflite.OperatorCodeStart(builder)
        # Runtimes before TF 2.3 read only the 8-bit field; newer ones take the larger of the two.
        tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(builtin, 127))
        tflite.OperatorCodeAddBuiltinCode(builder, builtin)
        if custom_code is not None:
            tflite.OperatorCodeAddCustomCode(builder, custom_code)
        tflite.OperatorCodeAddVersion(builder, version)
        code_offsets.append(tflite.OperatorCodeEnd(builder))

    def vector(offsets: list[int]) -> int:
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    tensors, operators = vector(tensor_offsets), vector(operator_offsets)
    inputs, outputs = _int_vector(builder, graph.inputs), _int_vector(builder, graph.outputs)
    tflite.SubGraphStart(builder)
    tflite.SubGraphAddTensors(builder, tensors)
    tflite.SubGraphAddInputs(builder, inputs)
    tflite.SubGraphAddOutputs(builder, outputs)
    tflite.SubGraphAddOperators(builder, operators)
    subgraph = tflite.SubGraphEnd(builder)

    metadata_offsets = []
    first_metadata_buffer = 1 + len(constant_data)
    for i, (key, _) in enumerate(metadata_items):
        name = builder.CreateString(key)
        tflite.MetadataStart(builder)
        tflite.MetadataAddName(builder, name)
        tflite.MetadataAddBuffer(builder, first_metadata_buffer + i)
        metadata_offsets.append(tflite.MetadataEnd(builder))

    codes_vector, subgraphs, buffers = vector(code_offsets), vector([subgraph]), vector(buffer_offsets)
    metadata = vector(metadata_offsets)
    description = builder.CreateString(graph.description)
    tflite.ModelStart(builder)
    tflite.ModelAddVersion(builder, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(builder, codes_vector)
    tflite.ModelAddSubgraphs(builder, subgraphs)
    tflite.ModelAddDescription(builder, description)
    tflite.ModelAddBuffers(builder, buffers)
    tflite.ModelAddMetadata(builder, metadata)
    builder.Finish(tflite.ModelEnd(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


# ---- reading ----------------------------------------------------------------------------------------


def _options(op: tflite.Operator, name: str) -> dict[str, Any]:
    """The options of the operators Coqui's graphs use, as write() takes them (so a read graph writes back)."""
    if op.CustomOptionsLength():
        value = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
        return value if isinstance(value, dict) else {}
    table = op.BuiltinOptions()
    if table is None:
        return {}

    def parsed(options_type):
        options = options_type()
        options.Init(table.Bytes, table.Pos)
        return options

    if name == "FULLY_CONNECTED":
        fc = parsed(tflite.FullyConnectedOptions)
        return {"activation": fc.FusedActivationFunction(), "keep_num_dims": fc.KeepNumDims()}
    if name == "SPLIT":
        return {"num_splits": parsed(tflite.SplitOptions).NumSplits()}
    if name == "RESHAPE":
        reshape = parsed(tflite.ReshapeOptions)
        return {"new_shape": [int(d) for d in reshape.NewShapeAsNumpy()] if reshape.NewShapeLength() else []}
    if name == "STRIDED_SLICE":
        ss = parsed(tflite.StridedSliceOptions)
        return {"begin_mask": ss.BeginMask(), "end_mask": ss.EndMask(), "shrink_axis_mask": ss.ShrinkAxisMask()}
    if name == "CONCATENATION":
        return {"axis": parsed(tflite.ConcatenationOptions).Axis()}
    if name == "SOFTMAX":
        return {"beta": parsed(tflite.SoftmaxOptions).Beta()}
    return {}


def read(data: bytes) -> Graph:
    """The first subgraph of a model file. Raises FormatError for a file that is not one or is cut short."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise FormatError("not a TensorFlow Lite model (no TFL3 identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise FormatError("the model has no subgraph")
        subgraph = model.Subgraphs(0)
        tensors = []
        for i in range(subgraph.TensorsLength()):
            t = subgraph.Tensors(i)
            dtype = _DTYPES.get(t.Type())
            buffer = model.Buffers(t.Buffer()) if 0 < t.Buffer() < model.BuffersLength() else None
            # a view, not a copy: a release model's weights are read once, from the file's own bytes
            contents = memoryview(buffer.DataAsNumpy()) if buffer is not None and buffer.DataLength() else None
            q = t.Quantization()
            quantized = q is not None and q.ScaleLength() > 0
            tensors.append(
                Tensor(
                    (t.Name() or b"").decode("utf-8", "replace"),
                    tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                    dtype if dtype is not None else f"type {t.Type()}",
                    contents,
                    q.ScaleAsNumpy().astype(np.float32) if quantized else None,
                    q.ZeroPointAsNumpy().astype(np.float32) if quantized and q.ZeroPointLength() else None,
                    q.QuantizedDimension() if quantized else 0,
                )
            )
        operators = []
        for i in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == tflite.BuiltinOperator.CUSTOM:
                name = (code.CustomCode() or b"").decode("utf-8", "replace")
            else:
                name = _BUILTIN_NAMES.get(builtin, f"builtin {builtin}")
            inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
            operators.append(Operator(name, inputs, outputs, _options(op, name), code.Version()))
        metadata = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if 0 < entry.Buffer() < model.BuffersLength():
                metadata[(entry.Name() or b"").decode("utf-8", "replace")] = (
                    model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
                )
        return Graph(
            tensors,
            operators,
            [int(x) for x in subgraph.InputsAsNumpy()] if subgraph.InputsLength() else [],
            [int(x) for x in subgraph.OutputsAsNumpy()] if subgraph.OutputsLength() else [],
            (model.Description() or b"").decode("utf-8", "replace"),
            metadata,
        )
    except (IndexError, struct.error, ValueError, TypeError) as e:
        # The generated readers index straight into the bytes: a cut file ends in one of these.
        raise FormatError(f"damaged or truncated TensorFlow Lite model ({type(e).__name__}: {e})") from None
