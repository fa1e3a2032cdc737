"""Checkpoints combined into one, to keep what a source model knew (issue 32): the average of a run's
checkpoints (ESPnet's n-best average, icefall's averaged model) and the interpolation of a fine-tuned model with
its source (WiSE-FT: a weighted average of the two, tensor by tensor).

Both work on tensors under Coqui's names (checkpoints/layout.py). Only the model's weights are combined; the
Adam moments, beta powers, step and learning rate are the first checkpoint's (the newest, or the fine-tuned
one), so a run can go on from the result as from any checkpoint. Arithmetic is in float64, stored back in each
weight's own dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

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
