"""Checkpoints combined into one, to keep what a source model knew (issue 32): the average of a run's
checkpoints (ESPnet's n-best average, icefall's averaged model) and the interpolation of a fine-tuned model with
its source (WiSE-FT: a weighted average of the two, tensor by tensor).

Both work on tensors under Coqui's names (checkpoints/layout.py); the command over them is
python -m coqui_stt_training.combine. Only the model's weights are combined; the
Adam moments, beta powers, step and learning rate are the first checkpoint's (the newest, or the fine-tuned
one), so a run can go on from the result as from any checkpoint. Arithmetic is in float64, stored back in each
weight's own dtype.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..formats.tf_state_file import read_state_file_all
from . import store
from .run_state import RunState

BOOKKEEPING = frozenset({"beta1_power", "beta2_power", "global_step", "learning_rate"})
OUTPUT_LAYER = ("layer_6/weights", "layer_6/bias")  # [n_hidden, classes] and [classes]: a column per class


def is_weight(name: str) -> bool:
    """A model weight, not optimiser state or bookkeeping."""
    return name not in BOOKKEEPING and not name.endswith(("/Adam", "/Adam_1"))


def average(checkpoints: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each weight's mean over the checkpoints; the rest from the first. They must hold the same weights in
    the same shapes (checkpoints of one run)."""
    if not checkpoints:
        raise ValueError("no checkpoints to average")
    first = checkpoints[0]
    out = dict(first)
    for name, value in first.items():
        if not is_weight(name):
            continue
        total = np.zeros(value.shape, np.float64)
        for i, checkpoint in enumerate(checkpoints):
            other = checkpoint.get(name)
            if other is None or other.shape != value.shape:
                found = "missing" if other is None else f"of shape {list(other.shape)}"
                raise ValueError(f"{name}: {found} in checkpoint {i + 1}, {list(value.shape)} in the first")
            total += other
        out[name] = (total / len(checkpoints)).astype(value.dtype)
    return out


def interpolate(
    fine_tuned: Mapping[str, np.ndarray],
    source: Mapping[str, np.ndarray],
    weight: float,
    output_columns: Sequence[int | None],
) -> dict[str, np.ndarray]:
    """(1 - weight) x fine-tuned + weight x source, for each weight both have in the same shape; the output
    layer class by class: class c of the fine-tuned model with the source's class output_columns[c] (its symbol,
    checkpoints.load.shared_output_columns), a class whose symbol the source lacks (None) as fine-tuned. The rest
    (and weights only the fine-tuned model has, or of another shape) from the fine-tuned model. Weight 0 gives
    the fine-tuned model, 1 the source wherever the two overlap."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weight {weight}: must be in [0, 1]")
    out = dict(fine_tuned)
    for name, value in fine_tuned.items():
        other = source.get(name)
        if not is_weight(name) or other is None:
            continue
        if name in OUTPUT_LAYER:
            classes = value.shape[-1]
            if len(output_columns) != classes:
                raise ValueError(f"{name}: {classes} classes, but {len(output_columns)} output columns given")
            mixed = value.astype(np.float64)
            for c, s in enumerate(output_columns):
                if s is not None:
                    mixed[..., c] = (1.0 - weight) * mixed[..., c] + weight * other[..., s]
            out[name] = mixed.astype(value.dtype)
        elif other.shape == value.shape:
            out[name] = ((1.0 - weight) * value.astype(np.float64) + weight * other).astype(value.dtype)
    return out


# ---- which checkpoints, read and written ------------------------------------------------------------


class InMemoryCheckpoint:
    """Tensors in memory as a checkpoint reader (layout.TensorReader), so that load_into can load a combination
    that was never written."""

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self.tensors = tensors

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def dtype(self, name: str) -> np.dtype:
        return self.tensors[name].dtype

    def get(self, name: str) -> np.ndarray:
        return self.tensors[name]


def read_tensors(prefix: str) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint (or an exported model's weights), verified against its recorded checksums."""
    store.verify(prefix)
    reader = store.open_checkpoint(prefix)
    return {name: reader.get(name) for name in reader.names()}


def kept_train_checkpoints(directory: str) -> list[str]:
    """The `train` checkpoints the directory keeps (--max_to_keep of them), oldest first."""
    listed = read_state_file_all(os.path.join(directory, store.STATE_FILES["train"]))
    return [prefix for prefix in listed if os.path.isfile(prefix + ".safetensors") or os.path.isfile(prefix + ".index")]


def last_checkpoints(directory: str, n: int) -> list[str]:
    """The n newest `train` checkpoints, newest first."""
    kept = kept_train_checkpoints(directory)
    if len(kept) < n:
        raise store.CheckpointError(
            f"{directory} keeps {len(kept)} train checkpoint(s), fewer than the {n} to average (a run keeps "
            "--max_to_keep of them: train with --max_to_keep N or more)"
        )
    return kept[::-1][:n]


def best_checkpoints(directory: str, n: int) -> list[str]:
    """The n kept `train` checkpoints with the lowest dev loss (recorded when their epoch was validated), best
    first."""
    losses = {}
    for prefix in kept_train_checkpoints(directory):
        state = store.read_run_state(prefix)
        if state and state.dev_loss is not None:
            losses[prefix] = state.dev_loss
    if len(losses) < n:
        raise store.CheckpointError(
            f"{directory} keeps {len(losses)} train checkpoint(s) with a recorded dev loss, fewer than the {n} to "
            "average (each epoch's checkpoint records it when --dev_files validates it; a run keeps --max_to_keep)"
        )
    return sorted(losses, key=losses.__getitem__)[:n]


def write_combined(directory: str, tensors: dict[str, np.ndarray], like: str, made_from: dict[str, Any]) -> str:
    """The combination as `best_dev-<step>` in a directory that holds no checkpoint yet, so that evaluate, export,
    transcribe and a further run load it as they load any; its run state is `like`'s (alphabet, transfer) without
    what would make a run resume it, plus where it came from."""
    require_new_directory(directory)
    source = store.read_run_state(like) or RunState()
    state = RunState(alphabet=source.alphabet, transfer=source.transfer, made_from=made_from, save_serial=1)
    return store.save(directory, "best_dev", tensors, state, 1)


def require_new_directory(directory: str) -> None:
    """A combination is never written over a run's checkpoints (nor beside them, where it would become the
    directory's best_dev)."""
    if os.path.exists(directory) and any(
        name in store.STATE_FILES.values() or name.endswith((".safetensors", ".index"))
        for name in os.listdir(directory)
    ):
        raise store.CheckpointError(f"{directory} holds checkpoints already: give a new directory for the result")
