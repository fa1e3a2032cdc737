"""What a checkpoint records beside its tensors, so that a run resumes exactly where it stopped.

Coqui saved only tensors: a restarted run began a new count of epochs, forgot its early-stopping and
plateau history, and replayed the data from the start of an epoch with fresh random numbers. Every
checkpoint here also records where the run is (epoch, batch within it, stage), those histories, the
exact learning rate and every process's random-number generators, so that a run interrupted at any
point and started again with the same command continues the very trajectory it was on. RunState is
that record; to_json and from_json are its only serialisation (the checkpoint's `<prefix>.json`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..system import log

FORMAT_VERSION = 1
AlphabetRecord = str | list[str]  # "UTF-8 bytes", or the labels in order (alphabet.alphabet_record)


@dataclass
class Progress:
    epoch: int = 0  # the run's epoch index (also the seed of its batch shuffle)
    batch: int = 0  # training batches of that epoch already done, skipped non-finite ones included
    # "train": inside the epoch's training; "trained": training done, dev sets not yet validated;
    # "validated": validation, early-stopping and plateau decisions of the epoch are done.
    stage: str = "train"
    loss_sum: float = 0.0  # of the epoch's finished steps, for its mean loss
    steps: int = 0
    batches_in_epoch: int = 0  # to notice a changed training set or batch size on resume
    epochs_without_improvement: int = 0
    finished: bool = False  # the run reached --epochs or stopped early; a new command starts a new count

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.stage, self.loss_sum, self.steps = self.epoch + 1, 0, "train", 0.0, 0

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Progress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass
class TransferRecord:
    """How a run's model came from a source checkpoint (--drop_source_layers), kept over restarts."""

    source: str  # the source checkpoint's prefix
    drop_source_layers: int
    alphabet: AlphabetRecord  # the target alphabet: recognises this transfer in a shared directory
    keep_shared_symbols: bool = False


@dataclass
class RunState:
    global_step: int = 0
    best_dev_loss: float = math.inf
    epochs_done: int = 0  # epochs since training from the source checkpoint began, over restarts
    save_serial: int = 0  # orders a directory's checkpoints, train and best_dev alike: the highest is the newest
    alphabet: AlphabetRecord | None = None
    progress: Progress | None = None
    learning_rate: float | None = None  # exactly; the checkpoint's tensor holds it rounded to float32
    rng: list[dict[str, Any]] = field(default_factory=list)  # each process's generators, in rank order
    grad_scaler: dict[str, Any] | None = None  # float16 loss scaling on CUDA
    transfer: TransferRecord | None = None
    crc32c: dict[str, int] | None = None  # of each tensor's bytes in the .safetensors file, checked when read
    dev_loss: float | None = None  # of these very weights, recorded when the epoch's validation measured it
    made_from: dict[str, Any] | None = None  # a combined checkpoint's sources (checkpoints/combine.py)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"format_version": FORMAT_VERSION, **asdict(self)}
        for optional in ("grad_scaler", "transfer", "crc32c", "dev_loss", "made_from"):
            if record[optional] is None:
                del record[optional]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunState:
        """Also reads the states of earlier versions: fields they lack take their defaults, and a
        one-process run's generators were stored as one object instead of a list of one."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        if isinstance(values.get("progress"), dict):
            values["progress"] = Progress.from_json(values["progress"])
        if isinstance(values.get("transfer"), dict):
            transfer = values["transfer"]
            values["transfer"] = TransferRecord(**{k: v for k, v in transfer.items() if k in _TRANSFER_FIELDS})
        if isinstance(values.get("rng"), dict):
            values["rng"] = [values["rng"]]
        return cls(**values)


_TRANSFER_FIELDS = {f.name for f in fields(TransferRecord)}


# ---- random-number generators -------------------------------------------------------------------


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """torch's generators (dropout draws from them); numpy's is not used in training (the batch
    shuffle has its own generator, seeded per epoch)."""
    state: dict[str, Any] = {"torch": _encode(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [_decode(s) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warn(
                "the checkpoint's CUDA random state is for another number of GPUs; dropout draws differ "
                "from the interrupted run"
            )
