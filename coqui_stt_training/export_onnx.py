"""Export: the acoustic model as ONNX, streamable, with what a client needs to use it
(docs/compatibility.md, "Export").

Coqui exported a TensorFlow graph or TFLite file whose inputs are Coqui's streaming interface:
`input_node` [batch, steps, 19, 26] context windows of MFCC frames and the LSTM state
`previous_state_c`/`previous_state_h` [batch, n_hidden]; outputs `logits` (softmax probabilities,
despite the name) [steps, batch, classes] and `new_state_c`/`new_state_h`. The ONNX model keeps those
names and shapes, with the batch and the number of steps free, so a client can feed --n_steps frames
at a time and carry the state, or a whole utterance at once. The alphabet, sample rate and feature
settings are in the model's metadata; a model card like Coqui's is written next to it.
coqui_stt_training.inference runs the model with onnxruntime alone.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import struct
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from . import log
from .alphabet import AnyAlphabet, alphabet_record
from .config import ConfigError
from .features import N_CONTEXT, N_INPUT, FeatureSettings
from .files import write_file_atomically
from .model import DeepSpeech

EXPORT_FORMAT_VERSION = 1
INPUT_NAMES = ["input_node", "previous_state_c", "previous_state_h"]
OUTPUT_NAMES = ["logits", "new_state_c", "new_state_h"]


@dataclass(frozen=True)
class ModelCard:
    """Coqui's model card (the --export_* fields of the same names), written beside the model."""

    author: str = "author"
    model_name: str = "model"
    model_version: str = "0.0.1"
    contact_info: str = ""
    license: str = ""
    language: str = ""
    min_stt_version: str = ""
    max_stt_version: str = ""
    description: str = ""

    def file_name(self) -> str:
        return f"{self.author}_{self.model_name}_{self.model_version}.md"

    def text(self) -> str:
        """YAML front matter in Coqui's field order, then the description."""
        fields = [
            ("author", self.author),
            ("model_name", self.model_name),
            ("model_version", self.model_version),
            ("contact_info", self.contact_info),
            ("license", self.license),
            ("language", self.language),
            ("runtime", "onnx"),
            ("min_stt_version", self.min_stt_version),
            ("max_stt_version", self.max_stt_version),
            ("acoustic_model_url", "<replace this with a direct download link to the ONNX model>"),
            ("scorer_url", "<replace this with a direct download link to the scorer, if any>"),
        ]
        front = "".join(f"{key}: {json.dumps(value, ensure_ascii=False)}\n" for key, value in fields)
        return f"---\n{front}---\n\n{self.description}\n"


@dataclass(frozen=True)
class ExportSettings:
    """Where and what to export (the --export_* flags)."""

    directory: str
    file_name: str = "output_graph"
    remove_existing: bool = False
    n_steps: int = 16
    beam_width: int = 500
    features: FeatureSettings = FeatureSettings()
    tensorflow_formats: bool = True  # --export_tflite or --export_savedmodel: asked for what needs TensorFlow
    card: ModelCard = ModelCard()


class StreamingDeepSpeech(nn.Module):
    """The trained model behind Coqui's inference interface: windows and state in, probabilities and
    state out. Dropout is off (eval mode)."""

    def __init__(self, model: DeepSpeech):
        super().__init__()
        self.model = model.eval()

    def forward(self, windows: torch.Tensor, state_c: torch.Tensor, state_h: torch.Tensor):
        logits, (h, c) = self.model.from_windows(windows, (state_h[None], state_c[None]))
        return torch.softmax(logits, dim=-1), c[0], h[0]


def coqui_alphabet_bytes(labels: list[str]) -> bytes:
    """Coqui's binary Alphabet::Serialize: uint16 count, then per label its uint16 index, uint16 byte
    length and UTF-8 bytes."""
    out = [struct.pack("<H", len(labels))]
    for i, label in enumerate(labels):
        encoded = label.encode("utf-8")
        out.append(struct.pack("<HH", i, len(encoded)) + encoded)
    return b"".join(out)


def metadata(settings: ExportSettings, alphabet: AnyAlphabet, model: DeepSpeech) -> dict[str, str]:
    features = settings.features
    meta = {
        "format": "coqui_stt_training acoustic model",
        "version": str(EXPORT_FORMAT_VERSION),
        "sample_rate": str(features.sample_rate),
        "feature_win_len": str(features.win_len_ms),
        "feature_win_step": str(features.win_step_ms),
        "n_context": str(N_CONTEXT),
        "n_input": str(N_INPUT),
        "n_hidden": str(model.n_hidden),
        "n_steps": str(settings.n_steps),
        "beam_width": str(settings.beam_width),
        "alphabet": json.dumps(alphabet_record(alphabet), ensure_ascii=False),
        "language": settings.card.language,
    }
    if not alphabet.is_bytes:
        meta["coqui_alphabet"] = base64.b64encode(coqui_alphabet_bytes(alphabet.labels)).decode("ascii")
    return meta


def onnx_bytes(model: DeepSpeech, meta: dict[str, str]) -> bytes:
    import onnx  # the onnx extra: only exports need it

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
    return proto.SerializeToString()


def export_paths(settings: ExportSettings) -> tuple[str, str]:
    """(model, model card) paths in the export directory, checked before any work: files already there are
    kept (--remove_export empties the directory first, as Coqui's flag does)."""
    directory = settings.directory
    if settings.remove_existing and os.path.isdir(directory):
        log.info(f"Removing the old export in {directory}")
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, settings.file_name + ".onnx")
    card = os.path.join(directory, settings.card.file_name())
    for existing in (path, card):
        if os.path.exists(existing):
            raise ConfigError(
                f"{existing} exists; choose another --export_dir or --export_file_name, or pass "
                "--remove_export true to replace the directory's contents"
            )
    return path, card


def export(settings: ExportSettings, model: DeepSpeech, alphabet: AnyAlphabet, paths: tuple[str, str]) -> str:
    """Write the ONNX model and the model card to `paths` (from export_paths); returns the model's path."""
    path, card = paths
    if settings.tensorflow_formats:
        log.info(
            "Exporting ONNX (TFLite, .pb and SavedModel need TensorFlow); "
            "python -m coqui_stt_training.inference runs it"
        )
    data = onnx_bytes(model, metadata(settings, alphabet, model))
    write_file_atomically(path, data)
    write_file_atomically(card, settings.card.text())
    log.info(
        f"Models exported at {settings.directory}: {os.path.basename(path)} ({len(data) / 2**20:.1f} MiB), "
        f"model card {os.path.basename(card)}"
    )
    return path
