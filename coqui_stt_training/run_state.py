"""What a training run must remember to resume exactly, and how it stops cleanly on a signal.

Coqui saved only tensors: a restarted run began a new count of epochs, forgot its early-stopping and
plateau history, and replayed the data from the start of an epoch with fresh random numbers. Every
checkpoint here also records where the run is (epoch, batch within it, stage), those histories, the
exact learning rate and the random-number generators, so that a run interrupted at any point and
started again with the same command continues the very trajectory it was on.
"""

from __future__ import annotations

import base64
import signal
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from . import log


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
    def from_json(cls, record: dict) -> Progress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})

    def to_json(self) -> dict:
        return asdict(self)


# ---- random-number generators -------------------------------------------------------------------


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy())


def rng_state() -> dict:
    """torch's generators (dropout draws from them); numpy's is not used in training (the batch
    shuffle has its own generator, seeded per epoch)."""
    state = {"torch": _encode(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_encode(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
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


# ---- stopping on a signal -----------------------------------------------------------------------


class Interrupted(Exception):
    """Raised out of the training loop once a stop signal has been honoured; args: (signal name, prefix)."""


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (cluster pre-emption) ask the run to stop at the next safe point: the
    current step finishes, a checkpoint is saved and the process exits 0. A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, number, frame) -> None:
        name = signal.Signals(number).name
        if self.received:
            log.warn(f"Received {name} again: stopping now, without saving")
            self.__exit__()
            signal.raise_signal(number)
            return
        self.received = name
        log.info(
            f"Received {name}: finishing the current step, then saving a checkpoint and stopping "
            f"(send {name} again to stop at once, without saving)"
        )
