"""Exported models read back as checkpoints: Coqui STT's `.tflite` (float32 or int8) and frozen `.pb`,
and ours, for fine-tuning and transfer learning when the checkpoints are gone.

An export holds the trained weights and, in its `metadata_*` tensors, the alphabet, the sample rate and
the feature window. The weights come back under their checkpoint names in TensorFlow's layout (the
TFLite graph stores each dense kernel transposed; int8 weights are dequantised with their scales), so
everything that loads a checkpoint loads an export. There is no optimiser state: Adam moments start at
zero, the step count at 0, and the learning rate comes from --learning_rate.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..formats import tf_graph, tflite
from ..formats.protobuf import FormatError
from ..model.alphabet import AnyAlphabet, deserialize_binary
from ..system.errors import UserError
from .layout import LSTM_SCOPE

EXPORT_SUFFIXES = (".tflite", ".pb")
DENSE_LAYERS = ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6")
WEIGHT_SCOPES = (*DENSE_LAYERS[:3], LSTM_SCOPE, *DENSE_LAYERS[3:])


def kernel_name(scope: str) -> str:
    """A layer's weight matrix in a checkpoint: the LSTM's is `kernel`, a dense layer's `weights`."""
    return f"{scope}/kernel" if scope == LSTM_SCOPE else f"{scope}/weights"


WEIGHT_NAMES = [name for scope in WEIGHT_SCOPES for name in (kernel_name(scope), f"{scope}/bias")]
MIN_GRAPH_VERSION = 6


class ExportedModelError(UserError):
    pass


@dataclass(frozen=True)
class ExportMetadata:
    """What an export says about itself (Coqui's metadata_* tensors)."""

    version: int
    sample_rate: int
    win_len_ms: int
    win_step_ms: int
    beam_width: int
    alphabet: AnyAlphabet  # from metadata_alphabet
    language: str = ""


# A weight's shape in TensorFlow's layout, and how to read it as float32 in that layout. Reading is left
# until asked: a run opens the source to learn its flags and alphabet before it loads the weights.
Weight = tuple[tuple[int, ...], Callable[[], np.ndarray]]


class ExportedModel:
    """The weights of an export under Coqui's checkpoint names (a TensorReader), and its metadata."""

    weights_only = True  # no optimiser state, step count or learning rate

    def __init__(self, path: str, weights: dict[str, Weight], metadata: ExportMetadata, kind: str):
        self.path, self.weights, self.metadata, self.kind = path, weights, metadata, kind

    def __contains__(self, name: str) -> bool:
        return name in self.weights

    def names(self) -> list[str]:
        return list(self.weights)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.weights[name][0]

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(np.float32)

    def get(self, name: str) -> np.ndarray:
        return self.weights[name][1]()

    @property
    def n_hidden(self) -> int:
        return self.shape("layer_1/bias")[0]

    def alphabet(self) -> AnyAlphabet:
        return self.metadata.alphabet

    def source_flags(self) -> dict:
        """The flags the model was trained with, as far as its tensors tell (like a checkpoint's flags.txt)."""
        return {
            "n_hidden": self.n_hidden,
            "bytes_output_mode": self.alphabet().is_bytes,
            "audio_sample_rate": self.metadata.sample_rate,
            "feature_win_len": self.metadata.win_len_ms,
            "feature_win_step": self.metadata.win_step_ms,
        }


def as_checkpoint(model: ExportedModel, beta1: float, beta2: float) -> dict[str, np.ndarray]:
    """A complete checkpoint of a fresh optimiser at step 0 (what Coqui's loader requires): the weights,
    zero Adam moments, the initial beta powers. No learning_rate: the next run takes --learning_rate."""
    tensors: dict[str, np.ndarray] = {}
    for name in model.names():
        tensors[name] = np.ascontiguousarray(model.get(name), dtype=np.float32)
        tensors[f"{name}/Adam"] = np.zeros_like(tensors[name])
        tensors[f"{name}/Adam_1"] = np.zeros_like(tensors[name])
    tensors["beta1_power"] = np.array(beta1, dtype=np.float32)
    tensors["beta2_power"] = np.array(beta2, dtype=np.float32)
    tensors["global_step"] = np.array(0, dtype=np.int64)
    return tensors


def exported_model_file(location: str) -> str | None:
    """The export that `location` names: a .tflite or .pb file, or a directory holding one (an unpacked
    model zip: output_graph.tflite first, else its only .tflite, else its only .pb); None otherwise."""
    if not location:
        return None
    if os.path.isfile(location):
        return location if location.endswith(EXPORT_SUFFIXES) else None
    if not os.path.isdir(location):
        return None
    names = sorted(os.listdir(location))
    for suffix in EXPORT_SUFFIXES:
        if f"output_graph{suffix}" in names:
            return os.path.join(location, f"output_graph{suffix}")
        found = [n for n in names if n.endswith(suffix) and os.path.isfile(os.path.join(location, n))]
        if len(found) == 1:
            return os.path.join(location, found[0])
    return None


def open_exported(path: str) -> ExportedModel:
    """Read an export; a file that is not one of Coqui's models is refused with what it lacks."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportedModelError(f"{path}: cannot read the exported model ({e.strerror or e})") from None
    try:
        if data[4:8] == tflite.FILE_IDENTIFIER:
            return _from_tflite(path, tflite.read(data))
        if path.endswith(".tflite"):
            raise FormatError("not a TensorFlow Lite model (no TFL3 identifier)")
    except FormatError as e:
        raise ExportedModelError(f"{path}: {e}") from None
    try:
        graph = tf_graph.read_graph(data)
    except FormatError as e:  # (the protobuf reader's own words say where, not what the file is)
        raise ExportedModelError(f"{path}: not a TensorFlow graph (a .pb export) nor a .tflite model ({e})") from None
    try:
        return _from_graph(path, graph)
    except FormatError as e:
        raise ExportedModelError(f"{path}: {e}") from None


def _metadata(path: str, values: dict[str, np.ndarray | list[bytes] | None]) -> ExportMetadata:
    def number(name: str) -> int:
        value = values.get(f"metadata_{name}")
        if not isinstance(value, np.ndarray) or value.size != 1:
            raise ExportedModelError(f"{path}: no metadata_{name}; it is not a Coqui STT export")
        return int(value.ravel()[0])

    def strings(name: str) -> list[bytes]:
        value = values.get(f"metadata_{name}")
        if not isinstance(value, list) or len(value) != 1:
            raise ExportedModelError(f"{path}: no metadata_{name}; it is not a Coqui STT export")
        return value

    version = number("version")
    if version < MIN_GRAPH_VERSION:
        raise ExportedModelError(f"{path}: graph version {version}; Coqui STT 1.x exports are version 6 or later")
    language = values.get("metadata_language")
    return ExportMetadata(
        version,
        number("sample_rate"),
        number("feature_win_len"),
        number("feature_win_step"),
        number("beam_width"),
        deserialize_binary(strings("alphabet")[0], f"{path}: metadata_alphabet"),
        language[0].decode("utf-8", "replace") if isinstance(language, list) and language else "",
    )


def _checked(path: str, weights: dict[str, Weight], values: dict, kind: str) -> ExportedModel:
    """The weights checked first (a foreign model is told apart by them), then the metadata."""
    missing = [name for name in WEIGHT_NAMES if name not in weights]
    if missing:
        raise ExportedModelError(
            f"{path}: no {', '.join(missing)}; it is not a Coqui STT model (its tensors lack Coqui's names)"
        )
    hidden, classes = weights["layer_1/bias"][0][0], weights["layer_6/bias"][0][0]
    expected = {
        f"{LSTM_SCOPE}/kernel": (2 * hidden, 4 * hidden),
        f"{LSTM_SCOPE}/bias": (4 * hidden,),
        "layer_1/weights": (494, hidden),
        "layer_6/weights": (hidden, classes),
    }
    for name, shape in expected.items():
        if weights[name][0] != shape:
            raise ExportedModelError(f"{path}: {name} has shape {list(weights[name][0])}, expected {list(shape)}")
    metadata = _metadata(path, values)
    if metadata.alphabet.size + 1 != classes:
        raise ExportedModelError(
            f"{path}: its alphabet has {metadata.alphabet.size} labels but its output layer {classes} classes "
            f"(labels + blank); the file is inconsistent"
        )
    return ExportedModel(path, weights, metadata, kind)


def _from_tflite(path: str, graph: tflite.Graph) -> ExportedModel:
    """Weights are the second input of the fully connected layers, found by their Coqui names
    (`layer_2/weights/transpose`, `.../cudnn_compatible_lstm_cell/kernel/transpose_13`); the bias is the
    third input of the same layer."""
    found: dict[str, Weight] = {}
    for op in graph.operators:
        if op.op != "FULLY_CONNECTED" or len(op.inputs) < 3:
            continue
        matrix, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
        scope = next((s for s in WEIGHT_SCOPES if matrix.name.startswith(f"{s}/")), None)
        if scope is None or matrix.data is None or kernel_name(scope) in found:
            continue  # not Coqui's, or the unrolled LSTM's kernel again (it is used once per step)
        # TFLite stores [out, in]; the checkpoint layout is [in, out]
        found[kernel_name(scope)] = (matrix.shape[::-1], functools.partial(_transposed, matrix))
        if bias.data is not None:
            found[f"{scope}/bias"] = (bias.shape, bias.dequantized)
    values: dict[str, np.ndarray | list[bytes] | None] = {}
    for index in graph.outputs:
        tensor = graph.tensors[index]
        if not tensor.name.startswith("metadata_"):
            continue
        producer = graph.producer(index)
        source = graph.tensors[producer.inputs[0]] if producer and producer.inputs else tensor
        if source.data is not None:
            values[tensor.name] = source.strings() if source.dtype == tflite.STRING else source.array()
    return _checked(path, found, values, "int8 TFLite" if _quantized(graph) else "TFLite")


def _transposed(tensor: tflite.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.dequantized().T)


def _quantized(graph: tflite.Graph) -> bool:
    return any(t.scale is not None and t.dtype == np.int8 for t in graph.tensors)


def _from_graph(path: str, nodes: list[tf_graph.Node]) -> ExportedModel:
    """A frozen graph keeps the variables as Const nodes of the same names."""
    consts = {node.name: node.value for node in nodes if node.op == "Const"}
    found: dict[str, Weight] = {}
    for name in WEIGHT_NAMES:
        value = consts.get(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            found[name] = (tuple(value.shape), functools.partial(value.astype, np.float32))
    values = {name: value for name, value in consts.items() if name.startswith("metadata_")}
    return _checked(path, found, values, "TensorFlow graph")
