"""The model as Coqui STT's TFLite export: the graph Coqui's export.py made with TensorFlow's converter,
written here without TensorFlow (docs/compatibility.md, "Export").

Coqui's native client (libstt) finds everything by tensor name. Inputs: `input_node` [1, n_steps, 19, 26]
context windows, `previous_state_c`/`_h` [1, H] and `input_samples` (one audio window). Outputs: `logits`
(softmax probabilities) [n_steps, C], `new_state_c`/`_h`, `mfccs` [1, 26] computed from the window by
TFLite's AudioSpectrogram and Mfcc kernels, and the `metadata_*` tensors it reads once at load time.
The LSTM is unrolled over the n_steps steps, as TensorFlow's converter unrolled Coqui's static
LSTMCell: per step a concatenation [x, h], one fully connected layer to the four gates (TF order i, c,
f, o), a split, and the cell arithmetic. With `quantize`, weights of 1024 elements or more are stored as
int8 with one symmetric scale per tensor and activations stay float32, as the converter's dynamic-range
quantisation did (the runtime then quantises each layer's input on the fly).
"""

from __future__ import annotations

import numpy as np
import torch

from ..checkpoints.layout import LSTM_SCOPE, variables
from ..formats import tflite
from ..formats.tflite import STRING, Graph, Operator, Tensor
from ..model.alphabet import AnyAlphabet, serialize_binary
from ..model.deepspeech import DeepSpeech
from ..model.features import LOWER_FREQUENCY_HZ, MEL_CHANNELS, N_CONTEXT, N_INPUT, FeatureSettings
from ..system.errors import ConfigError

GRAPH_VERSION = 6  # metadata_version: the native client refuses older graphs
MIN_RUNTIME_VERSION = b"1.6.0"
QUANTIZE_MIN_ELEMENTS = 1024  # the converter leaves smaller weights (biases, tiny layers) in float32
RELU = 1  # TFLite's fused activation code


def quantize_symmetric(weights: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """TFLite's SymmetricQuantizeFloats: scale = max|w| / 127, q = round(w * 127 / max|w|) half away from
    zero, in float32 arithmetic, clamped to [-127, 127]."""
    weights = np.asarray(weights, dtype=np.float32)
    bound = np.float32(np.max(np.abs(weights))) if weights.size else np.float32(0)
    if bound == 0:
        return np.zeros(weights.shape, dtype=np.int8), np.float32(1)
    scaled = weights * (np.float32(127) / bound)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded, -127, 127).astype(np.int8), np.float32(bound / np.float32(127))


class _Builder:
    """Tensors and operators appended in execution order (TFLite runs operators as listed)."""

    def __init__(self) -> None:
        self.graph = Graph([], [], [], [])

    def tensor(self, name: str, shape, dtype=np.float32) -> int:
        self.graph.tensors.append(Tensor(name, tuple(shape), dtype if dtype == STRING else np.dtype(dtype)))
        return len(self.graph.tensors) - 1

    def constant(self, name: str, value: np.ndarray, quantize: bool = False) -> int:
        value = np.ascontiguousarray(value)
        if quantize and value.size >= QUANTIZE_MIN_ELEMENTS:
            q, scale = quantize_symmetric(value)
            self.graph.tensors.append(
                Tensor(name, q.shape, np.dtype(np.int8), q.tobytes(), np.array([scale], np.float32), np.zeros(1))
            )
        else:
            self.graph.tensors.append(Tensor(name, value.shape, value.dtype, value.tobytes()))
        return len(self.graph.tensors) - 1

    def strings(self, name: str, values: list[bytes]) -> int:
        self.graph.tensors.append(Tensor(name, (len(values),), STRING, tflite.encode_strings(values)))
        return len(self.graph.tensors) - 1

    def op(self, op: str, inputs: list[int], outputs: list[int], version: int = 1, **options) -> None:
        self.graph.operators.append(Operator(op, inputs, outputs, options, version))

    def shape_of(self, index: int) -> tuple[int, ...]:
        return self.graph.tensors[index].shape


def tflite_bytes(
    model: DeepSpeech,
    alphabet: AnyAlphabet,
    features: FeatureSettings,
    n_steps: int = 16,
    beam_width: int = 500,
    language: str = "",
    quantize: bool = True,
) -> bytes:
    """The .tflite file of a trained model (dropout off). Layer normalisation has no TFLite form here."""
    if model.dims.layer_norm:
        raise ConfigError("a --layer_norm model has no TFLite export here: export it with --export_tflite false (ONNX)")
    with torch.no_grad():
        tf = {v.name: v.to_tf(v.params).detach().cpu().float().numpy() for v in variables(model)}
    hidden, classes = model.n_hidden, model.n_classes
    g = _Builder()
    fc_version = 3 if quantize else 1  # the converter marks hybrid (int8-weight) kernels as version 3

    # The feature path: one window of samples to one MFCC frame.
    window = features.window
    n_bins = (1 << (window - 1).bit_length()) // 2 + 1  # AudioSpectrogram's FFT is the next power of two
    samples = g.tensor("input_samples", [window])
    expanded = g.tensor("ExpandDims", [window, 1])
    g.op("RESHAPE", [samples, g.constant("ExpandDims/shape", np.array([window, 1], np.int32))], [expanded],
         new_shape=[window, 1])  # fmt: skip
    spectrogram = g.tensor("AudioSpectrogram", [1, 1, n_bins])
    g.op(
        "AudioSpectrogram",
        [expanded],
        [spectrogram],
        window_size=window,
        stride=features.stride,
        magnitude_squared=True,
    )
    mfcc = g.tensor("Mfcc", [1, 1, N_INPUT])
    rate = g.constant("Mfcc/sample_rate", np.array(features.sample_rate, np.int32))
    g.op(
        "Mfcc",
        [spectrogram, rate],
        [mfcc],
        upper_frequency_limit=float(features.sample_rate / 2),
        lower_frequency_limit=float(LOWER_FREQUENCY_HZ),
        filterbank_channel_count=MEL_CHANNELS,
        dct_coefficient_count=N_INPUT,
    )
    mfccs = g.tensor("mfccs", [1, N_INPUT])
    g.op("RESHAPE", [mfcc, g.constant("Reshape/shape", np.array([-1, N_INPUT], np.int32))], [mfccs],
         new_shape=[-1, N_INPUT])  # fmt: skip

    # The acoustic model on n_steps context windows.
    windows = g.tensor("input_node", [1, n_steps, 2 * N_CONTEXT + 1, N_INPUT])
    state_c = g.tensor("previous_state_c", [1, hidden])
    state_h = g.tensor("previous_state_h", [1, hidden])
    clip = model.relu_clip

    def dense(x: int, layer: str, activation: bool) -> int:
        weights = g.constant(f"{layer}/weights/transpose", tf[f"{layer}/weights"].T, quantize)
        bias = g.constant(f"{layer}/bias", tf[f"{layer}/bias"])
        out = g.tensor(f"{layer}/BiasAdd", [n_steps, g.shape_of(weights)[0]])
        g.op("FULLY_CONNECTED", [x, weights, bias], [out], fc_version, activation=RELU if activation else 0)
        if not activation:
            return out
        clipped = g.tensor(f"{layer}/Minimum", g.shape_of(out))
        g.op("MINIMUM", [out, g.constant(f"{layer}/Minimum/y", np.array(clip, np.float32))], [clipped])
        return clipped

    x = dense(dense(dense(windows, "layer_1", True), "layer_2", True), "layer_3", True)
    time_major = g.tensor("Reshape_2", [n_steps, 1, hidden])
    g.op("RESHAPE", [x, g.constant("Reshape_2/shape", np.array([-1, 1, hidden], np.int32))], [time_major],
         new_shape=[-1, 1, hidden])  # fmt: skip

    kernel = g.constant(f"{LSTM_SCOPE}/kernel/transpose", tf[f"{LSTM_SCOPE}/kernel"].T, quantize)
    lstm_bias = g.constant(f"{LSTM_SCOPE}/bias", tf[f"{LSTM_SCOPE}/bias"])
    split_axis = g.constant(f"{LSTM_SCOPE}/split/split_dim", np.array(1, np.int32))
    strides = g.constant("rnn/strided_slice/strides", np.array([1, 1, 1], np.int32))
    c, h, outputs = state_c, state_h, []
    for t in range(n_steps):
        last = t == n_steps - 1
        scope = f"{LSTM_SCOPE}/step_{t}"
        x_t = g.tensor(f"rnn/strided_slice_{t}", [1, hidden])
        begin = g.constant(f"rnn/strided_slice_{t}/begin", np.array([t, 0, 0], np.int32))
        end = g.constant(f"rnn/strided_slice_{t}/end", np.array([t + 1, 1, hidden], np.int32))
        g.op("STRIDED_SLICE", [time_major, begin, end, strides], [x_t], begin_mask=6, end_mask=6, shrink_axis_mask=1)
        joined = g.tensor(f"{scope}/concat", [1, 2 * hidden])
        g.op("CONCATENATION", [x_t, h], [joined], axis=1)
        gates = g.tensor(f"{scope}/BiasAdd", [1, 4 * hidden])
        g.op("FULLY_CONNECTED", [joined, kernel, lstm_bias], [gates], fc_version, activation=0)
        i, j, f, o = (g.tensor(f"{scope}/split_{k}", [1, hidden]) for k in range(4))
        g.op("SPLIT", [split_axis, gates], [i, j, f, o], num_splits=4)

        def cell_op(op: str, inputs: list[int], name: str, scope: str = scope) -> int:
            out = g.tensor(name if name.startswith("new_state") else f"{scope}/{name}", [1, hidden])
            g.op(op, inputs, [out])
            return out

        # c = sigmoid(f) * c + sigmoid(i) * tanh(j); h = sigmoid(o) * tanh(c) (forget bias 0, as Coqui's)
        kept = cell_op("MUL", [cell_op("LOGISTIC", [f], "sigmoid_f"), c], "mul_f")
        added = cell_op("MUL", [cell_op("LOGISTIC", [i], "sigmoid_i"), cell_op("TANH", [j], "tanh_j")], "mul_i")
        c = cell_op("ADD", [kept, added], "new_state_c" if last else "c")
        h = cell_op("MUL", [cell_op("LOGISTIC", [o], "sigmoid_o"), cell_op("TANH", [c], "tanh_c")],
                    "new_state_h" if last else "h")  # fmt: skip
        outputs.append(h)
    sequence = g.tensor("rnn/concat", [n_steps, hidden])
    g.op("CONCATENATION", outputs, [sequence], axis=0)

    scores = dense(dense(sequence, "layer_5", True), "layer_6", False)
    logits = g.tensor("logits", [n_steps, classes])
    g.op("SOFTMAX", [scores], [logits], beta=1.0)

    # Metadata: each an operator's output (the client runs those operators once to read them).
    numbers = {
        "metadata_version": GRAPH_VERSION,
        "metadata_sample_rate": features.sample_rate,
        "metadata_feature_win_len": features.win_len_ms,
        "metadata_feature_win_step": features.win_step_ms,
        "metadata_beam_width": beam_width,
    }
    texts = {"metadata_alphabet": serialize_binary(alphabet), "metadata_language": language.encode("utf-8")}
    metadata_outputs = []
    for name in [*numbers, *texts]:
        if name in numbers:
            copy = g.constant(f"{name}_copy", np.array([numbers[name]], np.int32))
        else:
            copy = g.strings(f"{name}_copy", [texts[name]])
        out = g.tensor(name, [1], g.graph.tensors[copy].dtype)
        g.op("RESHAPE", [copy, g.constant(f"{name}_copy_shape", np.array([1], np.int32))], [out], new_shape=[1])
        metadata_outputs.append(out)

    g.graph.inputs = [windows, state_c, state_h, samples]
    g.graph.outputs = [logits, c, h, mfccs, *metadata_outputs]
    g.graph.description = "coqui_stt_training export"
    g.graph.metadata = {"min_runtime_version": MIN_RUNTIME_VERSION}
    return tflite.write(g.graph)
