"""Export: the acoustic model as ONNX, streamable, with what a client needs to use it (spec §9).

    python -m coqui_stt_training.export --checkpoint_dir ckpt/ --export_dir model/

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

import torch
from torch import nn

from . import log
from .alphabet import alphabet_record
from .config import Config, ConfigError
from .model import N_CONTEXT, N_INPUT, DeepSpeech
from .tf_checkpoint import write_file_atomically

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
        m = self.model
        batch, steps = windows.shape[0], windows.shape[1]
        x = windows.reshape(batch, steps, (2 * N_CONTEXT + 1) * N_INPUT).transpose(0, 1)  # time-major
        x = x.reshape(steps * batch, -1)
        x = m.layer_3(m.layer_2(m.layer_1(x, m.relu_clip), m.relu_clip), m.relu_clip)
        x, (h, c) = m.lstm(x.reshape(steps, batch, m.n_hidden), (state_h[None], state_c[None]))
        x = m.layer_5(x.reshape(steps * batch, m.n_hidden), m.relu_clip)
        probs = torch.softmax(m.layer_6(x).reshape(steps, batch, m.n_classes), dim=-1)
        return probs, c[0], h[0]


def coqui_alphabet_bytes(labels: list[str]) -> bytes:
    """Coqui's binary Alphabet::Serialize (spec §5.2): uint16 count, then per label its uint16 index,
    uint16 byte length and UTF-8 bytes."""
    out = [struct.pack("<H", len(labels))]
    for i, label in enumerate(labels):
        encoded = label.encode("utf-8")
        out.append(struct.pack("<HH", i, len(encoded)) + encoded)
    return b"".join(out)


def metadata(config: Config, alphabet, model: DeepSpeech) -> dict[str, str]:
    record = alphabet_record(alphabet)
    meta = {
        "format": "coqui_stt_training acoustic model",
        "version": str(EXPORT_FORMAT_VERSION),
        "sample_rate": str(config.audio_sample_rate),
        "feature_win_len": str(config.feature_win_len),
        "feature_win_step": str(config.feature_win_step),
        "n_context": str(N_CONTEXT),
        "n_input": str(N_INPUT),
        "n_hidden": str(model.n_hidden),
        "n_steps": str(config.n_steps),
        "beam_width": str(config.export_beam_width),
        "alphabet": json.dumps(record, ensure_ascii=False),
        "language": config.export_language,
    }
    if not alphabet.is_bytes:
        meta["coqui_alphabet"] = base64.b64encode(coqui_alphabet_bytes(alphabet.labels)).decode("ascii")
    return meta


def onnx_bytes(model: DeepSpeech, meta: dict[str, str]) -> bytes:
    import onnx

    wrapper = StreamingDeepSpeech(copy.deepcopy(model).cpu())  # the caller's model stays on its device
    windows = torch.zeros(1, 16, 2 * N_CONTEXT + 1, N_INPUT)
    state = torch.zeros(1, model.n_hidden)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch's TorchScript-based exporter is deprecated but exports nn.LSTM with its state as plain
        # ONNX LSTM; its batch-size warning does not apply since the state is an input.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (windows, state, state),
            buffer,
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


def model_card(config: Config) -> str:
    """Coqui's model card: YAML front matter, then the description."""
    fields = [
        ("author", config.export_author_id),
        ("model_name", config.export_model_name),
        ("model_version", config.export_model_version),
        ("contact_info", config.export_contact_info),
        ("license", config.export_license),
        ("language", config.export_language),
        ("runtime", "onnx"),
        ("min_stt_version", config.export_min_stt_version),
        ("max_stt_version", config.export_max_stt_version),
        ("acoustic_model_url", "<replace this with a direct download link to the ONNX model>"),
        ("scorer_url", "<replace this with a direct download link to the scorer, if any>"),
    ]
    front = "".join(f"{key}: {json.dumps(value, ensure_ascii=False)}\n" for key, value in fields)
    return f"---\n{front}---\n\n{config.export_description}\n"


def export_paths(config: Config) -> tuple[str, str]:
    """(model, model card) paths in --export_dir, checked before any work: files already there are kept
    (--remove_export empties the directory first, as Coqui's flag does)."""
    directory = config.export_dir
    if config.remove_export and os.path.isdir(directory):
        log.info(f"Removing the old export in {directory}")
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, config.export_file_name + ".onnx")
    card = os.path.join(
        directory, f"{config.export_author_id}_{config.export_model_name}_{config.export_model_version}.md"
    )
    for existing in (path, card):
        if os.path.exists(existing):
            raise ConfigError(
                f"{existing} exists; choose another --export_dir or --export_file_name, or pass "
                "--remove_export true to replace the directory's contents"
            )
    return path, card


def export(config: Config, model: DeepSpeech, alphabet, paths: tuple[str, str]) -> str:
    """Write the ONNX model and the model card to `paths` (from export_paths); returns the model's path."""
    path, card = paths
    if config.export_tflite or config.export_savedmodel:
        log.info(
            "Exporting ONNX (TFLite, .pb and SavedModel need TensorFlow); "
            "python -m coqui_stt_training.inference runs it"
        )
    data = onnx_bytes(model, metadata(config, alphabet, model))
    write_file_atomically(path, data)
    write_file_atomically(card, model_card(config))
    log.info(
        f"Models exported at {config.export_dir}: {os.path.basename(path)} ({len(data) / 2**20:.1f} MiB), "
        f"model card {os.path.basename(card)}"
    )
    return path


def export_job(config: Config) -> None:
    from .train import setup_evaluation

    if not config.export_dir:
        raise ConfigError("Calling export script directly but no --export_dir specified")
    paths = export_paths(config)
    model, alphabet, _ = setup_evaluation(config, config.load_checkpoint_dir)
    export(config, model, alphabet, paths)


def main(argv: list[str] | None = None) -> None:
    from .train import run_cli

    run_cli(export_job, argv, "python -m coqui_stt_training.export")


if __name__ == "__main__":
    main()
