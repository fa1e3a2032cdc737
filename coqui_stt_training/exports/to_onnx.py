"""The acoustic model as ONNX, streamable, for onnxruntime (`--export_onnx true`, or `--export_tflite false`
where Coqui wrote a TensorFlow graph; docs/compatibility.md, "Export").

Coqui exported a TensorFlow graph or TFLite file whose inputs are Coqui's streaming interface:
`input_node` [batch, steps, 19, 26] context windows of MFCC frames and the LSTM state
`previous_state_c`/`previous_state_h` [batch, n_hidden]; outputs `logits` (softmax probabilities,
despite the name) [steps, batch, classes] and `new_state_c`/`new_state_h`. The ONNX model keeps those
names and shapes, with the batch and the number of steps free, so a client can feed --n_steps frames
at a time and carry the state, or a whole utterance at once. The alphabet, sample rate and feature
settings are in the model's metadata.
coqui_stt_training.inference runs the model with onnxruntime alone.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import logging
import os
import tempfile
import warnings
from typing import Any

import torch
from torch import nn

from ..model.alphabet import AnyAlphabet, alphabet_record, serialize_binary
from ..model.deepspeech import DeepSpeech
from ..model.features import N_CONTEXT, N_INPUT, FeatureSettings

EXPORT_FORMAT_VERSION = 1
INPUT_NAMES = ["input_node", "previous_state_c", "previous_state_h"]
OUTPUT_NAMES = ["logits", "new_state_c", "new_state_h"]


class StreamingDeepSpeech(nn.Module):
    """The trained model behind Coqui's inference interface: windows and state in, probabilities and
    state out. Dropout is off (eval mode)."""

    def __init__(self, model: DeepSpeech):
        super().__init__()
        self.model = model.eval()

    def forward(self, windows: torch.Tensor, state_c: torch.Tensor, state_h: torch.Tensor):
        logits, (h, c) = self.model.from_windows(windows, (state_h[None], state_c[None]))
        return torch.softmax(logits, dim=-1), c[0], h[0]


def metadata(
    model: DeepSpeech, alphabet: AnyAlphabet, features: FeatureSettings, n_steps: int, beam_width: int, language: str
) -> dict[str, str]:
    meta = {
        "format": "coqui_stt_training acoustic model",
        "version": str(EXPORT_FORMAT_VERSION),
        "sample_rate": str(features.sample_rate),
        "feature_win_len": str(features.win_len_ms),
        "feature_win_step": str(features.win_step_ms),
        "n_context": str(N_CONTEXT),
        "n_input": str(N_INPUT),
        "n_hidden": str(model.n_hidden),
        "n_steps": str(n_steps),
        "beam_width": str(beam_width),
        "alphabet": json.dumps(alphabet_record(alphabet), ensure_ascii=False),
        "language": language,
    }
    if not alphabet.is_bytes:
        meta["coqui_alphabet"] = base64.b64encode(serialize_binary(alphabet)).decode("ascii")
    return meta


def onnx_bytes(
    model: DeepSpeech,
    alphabet: AnyAlphabet,
    features: FeatureSettings,
    n_steps: int = 16,
    beam_width: int = 500,
    language: str = "",
    quantize: bool = False,
) -> bytes:
    """The model as ONNX, float32 or with int8 weights (`quantize`): onnxruntime's dynamic quantisation of the
    LSTM (DynamicQuantizeLSTM) and of the hidden dense layers 1, 2, 3 and 5 (DynamicQuantizeMatMul), weights
    with one scale per tensor, inputs quantised per call. At n_hidden 2048 the LSTM is three quarters of the
    int8 model's time, bound by reading its recurrent matrix once per frame. The weights use 7 of the 8 bits
    (reduce_range): on CPUs without VNNI onnxruntime multiplies uint8 inputs by int8 weights with instructions
    whose int16 sums saturate, which moved the probabilities of Coqui's LDC93S1 fixture model by 0.1 with
    layer 5 at full range; with 7 bits all five layers leave them within 4e-3 of float32's, as Coqui's own
    int8 TFLite export does (docs/benchmarks.md). The output layer (29 columns) stays float32."""
    import onnx  # the onnx extra: only ONNX exports need it

    meta = metadata(model, alphabet, features, n_steps, beam_width, language)
    wrapper = StreamingDeepSpeech(copy.deepcopy(model).cpu())  # the caller's model stays on its device
    windows = torch.zeros(1, 16, 2 * N_CONTEXT + 1, N_INPUT)
    state = torch.zeros(1, model.n_hidden)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch's TorchScript-based exporter is deprecated but exports nn.LSTM with its state as plain ONNX
        # LSTM. Tracing nn.LSTM warns about its Python-side shape checks, which the traced graph does not need
        # (the state is an input with a free batch), and about a batch size other than 1, which it takes.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            wrapper,
            (windows, state, state),
            buffer,  # type: ignore[arg-type]  # torch accepts a file object
            dynamo=False,
            opset_version=17,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes={
                "input_node": {0: "batch", 1: "steps"},
                "previous_state_c": {0: "batch"},
                "previous_state_h": {0: "batch"},
                "logits": {0: "steps", 1: "batch"},
                "new_state_c": {0: "batch"},
                "new_state_h": {0: "batch"},
            },
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return quantized(proto) if quantize else proto.SerializeToString()


# The nodes --export_quantize makes int8, by the names torch's exporter gives them (the quantiser turns each
# Gemm into a MatMul named <Gemm>_MatMul before it quantises it).
QUANTIZED_NODES = ["/lstm/LSTM"] + [f"/layer_{n}/Gemm{suffix}" for n in (1, 2, 3, 5) for suffix in ("", "_MatMul")]


def quantized(proto: Any) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "int8.onnx")
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # its advice to pre-process first is for convolutional networks
            logging.getLogger().disabled = True  # (it gives that advice through the root logger)
            try:
                quantize_dynamic(proto, path, op_types_to_quantize=["LSTM", "MatMul"],
                                 nodes_to_quantize=QUANTIZED_NODES, weight_type=QuantType.QInt8,
                                 reduce_range=True)  # fmt: skip
            finally:
                logging.getLogger().disabled = False
        result = onnx.load(path)
    if not result.metadata_props:
        result.metadata_props.extend(proto.metadata_props)
    return result.SerializeToString()
