"""Coqui's checkpoint layout: every tensor under its TensorFlow variable name and in TensorFlow's layout
(docs/compatibility.md, "Checkpoints"), and the rules of --drop_source_layers, which work on those names.

Dense layers are `layer_N/weights` [in, out] and `layer_N/bias`; the LSTM is one kernel
`cudnn_lstm/.../kernel` [in + H, 4H] and one bias [4H], gate blocks in TF's order i, c, f, o; the Adam
moments of each variable are `<name>/Adam` and `<name>/Adam_1`; then `beta1_power`, `beta2_power`,
`global_step` and `learning_rate`. Checkpoints in either file format, and exports, use these names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..model.deepspeech import DeepSpeech, ModelDimensions
from ..model.optimizer import TFAdam
from ..system import log

LSTM_SCOPE = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
LAYER_SCOPES = ("layer_1", "layer_2", "layer_3", "cudnn_lstm", "layer_5", "layer_6")
# --drop_source_layers N re-initialises every variable whose name contains one of the last N of these
# (Coqui's substring rule; N = 5 also matches beta2_power, a quirk we keep).
DROPPABLE = ["2", "3", "lstm", "5", "6"]


@dataclass
class Variable:
    """One TF variable, made of one or more torch tensors: `to_tf` joins them into TF's layout,
    `load_tf(targets, value)` copies a TF-layout value into them in place (no full-size temporary:
    a release model's LSTM kernel is 128 MiB). The same conversion serves the parameters and their
    Adam moments."""

    name: str
    params: list[torch.Tensor]
    shape: tuple[int, ...]  # in TF's layout
    to_tf: Callable[[list[torch.Tensor]], torch.Tensor]
    load_tf: Callable[[list[torch.Tensor], torch.Tensor], None]


# torch orders an LSTM's gate blocks i, f, g, o; TF's kernel and bias i, c(=g), f, o.
GATES_FROM_TF = (0, 2, 1, 3)  # torch block k holds TF block GATES_FROM_TF[k], and the other way round


def _swap_middle_gates(x: torch.Tensor, dim: int) -> torch.Tensor:
    blocks = x.chunk(4, dim)
    return torch.cat([blocks[k] for k in GATES_FROM_TF], dim)


def _load_same(targets, value) -> None:
    targets[0].copy_(value)


def _load_lstm_kernel(targets, value) -> None:
    """TF kernel [in + H, 4H] (rows: input then recurrent) into torch weight_ih [4H, in], weight_hh [4H, H]."""
    weight_ih, weight_hh = targets
    n_in, hidden = weight_ih.shape[1], weight_ih.shape[0] // 4
    for k, tf_block in enumerate(GATES_FROM_TF):
        columns = value[:, tf_block * hidden : (tf_block + 1) * hidden]
        weight_ih[k * hidden : (k + 1) * hidden].copy_(columns[:n_in].t())
        weight_hh[k * hidden : (k + 1) * hidden].copy_(columns[n_in:].t())


def _load_lstm_bias(targets, value) -> None:
    hidden = value.shape[0] // 4
    for k, tf_block in enumerate(GATES_FROM_TF):
        targets[0][k * hidden : (k + 1) * hidden].copy_(value[tf_block * hidden : (tf_block + 1) * hidden])


def variables(model: DeepSpeech) -> list[Variable]:
    out = []
    for n in (1, 2, 3, 5, 6):
        layer = getattr(model, f"layer_{n}")
        tensors = [("weights", layer.weights), ("bias", layer.bias)]
        if layer.LayerNorm is not None:
            tensors += [("LayerNorm/beta", layer.LayerNorm.beta), ("LayerNorm/gamma", layer.LayerNorm.gamma)]
        out += [Variable(f"layer_{n}/{name}", [t], tuple(t.shape), lambda ts: ts[0], _load_same) for name, t in tensors]
    lstm, n_in, hidden = model.lstm_weights, model.lstm.input_size, model.lstm.hidden_size
    out.append(
        Variable(
            f"{LSTM_SCOPE}/kernel",
            [lstm.weight_ih, lstm.weight_hh],
            (n_in + hidden, 4 * hidden),
            lambda ts: _swap_middle_gates(torch.cat(ts, 1), 0).t(),
            _load_lstm_kernel,
        )
    )
    out.append(
        Variable(
            f"{LSTM_SCOPE}/bias",
            [lstm.bias_ih],
            (4 * hidden,),
            lambda ts: _swap_middle_gates(ts[0], 0),
            _load_lstm_bias,
        )
    )
    # Variables are listed in the order the layers sit in the graph (order matters for the load report).
    order = {f"layer_{n}": i for i, n in enumerate((1, 2, 3, 0, 5, 6))}
    return sorted(out, key=lambda v: order.get(v.name.split("/")[0], 3))


def to_tensors(model: DeepSpeech, optimizer: TFAdam, global_step: int) -> dict[str, np.ndarray]:
    """Everything Coqui's checkpoint holds, as numpy arrays in TF layout."""
    tensors = {}
    with torch.no_grad():
        for var in variables(model):
            tensors[var.name] = var.to_tf(var.params)
            moments = [optimizer.slots(p) for p in var.params]
            tensors[f"{var.name}/Adam"] = var.to_tf([m for m, _ in moments])
            tensors[f"{var.name}/Adam_1"] = var.to_tf([v for _, v in moments])
    arrays = {k: np.ascontiguousarray(v.detach().cpu().float().numpy()) for k, v in tensors.items()}
    arrays["beta1_power"] = np.array(optimizer.beta1_power.item(), dtype=np.float32)
    arrays["beta2_power"] = np.array(optimizer.beta2_power.item(), dtype=np.float32)
    arrays["global_step"] = np.array(global_step, dtype=np.int64)
    arrays["learning_rate"] = np.array(optimizer.lr, dtype=np.float32)
    return arrays


class TensorReader(Protocol):
    """A checkpoint opened for reading, in either file format: tensors by name, read when asked for."""

    def __contains__(self, name: str) -> bool: ...
    def names(self) -> list[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> np.dtype: ...
    def get(self, name: str) -> np.ndarray: ...


def dimensions(reader: TensorReader) -> ModelDimensions | None:
    """The model a checkpoint holds, from its own tensors: n_hidden from layer 1's bias, the classes from
    the output layer's, layer normalisation from whether its variables are there. None if it holds no
    DeepSpeech model."""
    if "layer_1/bias" not in reader or "layer_6/bias" not in reader:
        return None
    layer_norm = "layer_1/LayerNorm/gamma" in reader
    return ModelDimensions(reader.shape("layer_1/bias")[0], reader.shape("layer_6/bias")[0], layer_norm)


def dropped_substrings(drop_source_layers: int, warn: bool = True) -> list[str]:
    if drop_source_layers >= 6 and warn:
        log.warn(
            "The checkpoint only has 6 layers, but you are trying to drop all of them or more than all of them. "
            "Continuing and dropping only 5 layers."
        )
    drop_source_layers = min(drop_source_layers, 5)
    return DROPPABLE[-drop_source_layers:] if drop_source_layers > 0 else []


def dropped_layers(drop_source_layers: int) -> set[str]:
    """Layer scopes that --drop_source_layers N re-initialises (the substring rule applied to scope names)."""
    dropped = dropped_substrings(drop_source_layers, warn=False)
    return {scope for scope in LAYER_SCOPES if any(s in scope for s in dropped)}
