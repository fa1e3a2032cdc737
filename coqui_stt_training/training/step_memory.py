"""What one training step needs in memory, known from the batch's lengths before training starts.

A step keeps every layer's activations for the backward pass: memory grows linearly with the frames of
the batch's longest utterance times the batch size (CTC adds a little: model/loss.py keeps it linear too). A
recording of an hour would need more than any machine has, and the run would die at the step that
meets it, hours in. So before the first step every training batch is estimated, and an utterance or a
batch over --max_batch_memory is refused by name with what it needs (an utterance alone over it is a
bad row like any other, which --skip_invalid_samples leaves out). The per-frame figure is measured
(benchmarks/step_memory.py prints estimate against measurement) and errs high.
"""

from __future__ import annotations

import torch

from ..data.samples import DataError, Sample
from ..model.features import N_CONTEXT, N_INPUT
from ..model.loss import ctc_bytes
from ..system import log
from ..system.memory import available_memory

GIB = 1 << 30
WINDOW = (2 * N_CONTEXT + 1) * N_INPUT
USABLE_SHARE = 0.8  # of the free memory: the model, the optimiser, the data workers and the rest need some
FALLBACK_BOUND = 12 * GIB  # where nothing says what is free


def memory_bound(flag: int, device: torch.device) -> tuple[int, str]:
    """The bound training batches are checked against, and how to name it: --max_batch_memory if given, else
    USABLE_SHARE of what this process may use now (a constant would let a container's or a small GPU's run die
    at the step that meets a long batch, or refuse what a large machine holds)."""
    if flag:
        return flag, f"--max_batch_memory {flag / GIB:.1f} GiB"
    if device.type == "cuda":
        free, where = torch.cuda.mem_get_info(device)[0], f"free on {device}"
    else:
        free, where = available_memory() or 0, "available to this process"
    if not free:
        return FALLBACK_BOUND, f"--max_batch_memory {FALLBACK_BOUND / GIB:.1f} GiB"
    bound = int(free * USABLE_SHARE)
    return bound, f"{bound / GIB:.1f} GiB, {USABLE_SHARE:.0%} of the {free / GIB:.1f} GiB {where} (--max_batch_memory)"


def parameter_count(n_hidden: int, n_classes: int) -> int:
    """Weights and biases of the model: three dense layers, the LSTM (its TF kernel [2H, 4H]), layer 5, output."""
    dense = (WINDOW + 1) * n_hidden + 2 * (n_hidden + 1) * n_hidden
    lstm = (2 * n_hidden + 1) * 4 * n_hidden
    return dense + lstm + (n_hidden + 1) * n_hidden + (n_hidden + 1) * n_classes


def activation_bytes_per_frame(n_hidden: int, n_classes: int) -> int:
    """float32 values one frame of one utterance keeps for the backward pass: the layers' outputs, their
    masks and the LSTM's gates and states (measured: 24-32 per hidden unit), its input window, the logits."""
    return 4 * (28 * n_hidden + 4 * WINDOW + 8 * n_classes)


def step_bytes(n_hidden: int, n_classes: int, frames: list[int], labels: list[int]) -> int:
    """Memory one training step of this batch needs beyond the weights and Adam moments: gradients and
    the optimiser's temporaries (three times the weights), activations (the batch is padded to its
    longest utterance) and CTC's tables."""
    fixed = 3 * 4 * parameter_count(n_hidden, n_classes)
    activations = len(frames) * max(frames, default=0) * activation_bytes_per_frame(n_hidden, n_classes)
    return fixed + activations + sum(ctc_bytes(t, n, n_classes) for t, n in zip(frames, labels))


def fit_training_batches(
    samples: list[Sample],
    batch_size: int,
    n_hidden: int,
    n_classes: int,
    limit: int,
    skip_invalid: bool,
    kind: str = "train",
    limit_name: str = "",
) -> list[Sample]:
    """The training samples, checked against --max_batch_memory: alone (a DataError naming each one over
    it, or with `skip_invalid` a warning and the rest), then in batches of `batch_size` as the data set's
    order forms them (a DataError naming the largest and the batch size that fits). `kind`: train or rehearsal,
    and `limit_name` (memory_bound's), for messages."""
    limit_name = limit_name or f"--max_batch_memory {limit / GIB:.1f} GiB"

    def need(group: list[Sample]) -> int:
        return step_bytes(n_hidden, n_classes, [s.frames for s in group], [len(s.labels or []) for s in group])

    too_long = [s for s in samples if need([s]) > limit]
    if too_long:
        lines = [
            f"    {s.where}: {s.audio_path} ({s.duration:.0f} s) needs about {need([s]) / GIB:.1f} GiB for one "
            "training step" for s in too_long[:10]
        ] + ([f"    ... and {len(too_long) - 10} more"] if len(too_long) > 10 else [])  # fmt: skip
        head = (
            f"{len(too_long)} sample(s) of --{kind}_files too long for {limit_name} at "
            f"--n_hidden {n_hidden} (split them into shorter utterances, or raise the limit)"
        )
        if not skip_invalid or len(too_long) == len(samples):
            raise DataError(head + ":\n" + "\n".join(lines))
        log.warn(head + "; left out (--skip_invalid_samples):\n" + "\n".join(lines))
        kept = {id(s) for s in too_long}
        samples = [s for s in samples if id(s) not in kept]
    largest, worst = 0, []
    for start in range(0, len(samples) - batch_size + 1, batch_size):
        batch = samples[start : start + batch_size]
        if (needed := need(batch)) > largest:
            largest, worst = needed, batch
    if largest > limit:
        longest = max(worst, key=lambda s: s.frames)
        fits = max(1, next(b for b in range(batch_size, 0, -1) if need(_longest(worst, b)) <= limit))
        raise DataError(
            f"a batch of --{kind}_files needs about {largest / GIB:.1f} GiB for one training step, over "
            f"{limit_name} (--train_batch_size {batch_size}, its longest sample "
            f"{longest.audio_path}, {longest.duration:.0f} s): about --train_batch_size {fits} fits"
        )
    return samples


def _longest(batch: list[Sample], size: int) -> list[Sample]:
    return sorted(batch, key=lambda s: s.frames)[-size:]
