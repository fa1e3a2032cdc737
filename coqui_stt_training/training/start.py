"""Where a training run starts: which checkpoint it loads, whether it resumes an interrupted run exactly,
what it drops (transfer learning) and which layers it keeps frozen.

Coqui's rule is simple: load --load_checkpoint_dir's checkpoint in --load_train order (best_dev, then
the last train checkpoint, then fresh weights) and drop --drop_source_layers layers. That alone would
make a restarted transfer throw away what it trained, so one rule comes first: once the save directory
holds a checkpoint of this run, the run resumes from it and drops nothing again, exactly where it
stopped if it was interrupted. The decisions are pure functions of what the directories hold (read
once, by read_save_directory), so that each case is a unit test; choose() reads, decides and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..checkpoints.from_export import exported_model_file
from ..checkpoints.layout import LAYER_SCOPES, dropped_layers
from ..checkpoints.run_state import RunState, TransferRecord
from ..checkpoints.store import CheckpointError, highest_save_serial, newest_checkpoint, read_run_state, search
from ..model.alphabet import AnyAlphabet, alphabet_record
from ..system import log
from ..system.errors import ConfigError


@dataclass(frozen=True)
class SaveDirectory:
    """What the save directory holds: its newest checkpoint, and the one --load_train's order picks there,
    each with its run state."""

    one_dir: bool  # the load and save directories are one
    newest: str | None = None  # the newest intact checkpoint
    newest_state: RunState | None = None
    picked: str | None = None
    picked_state: RunState | None = None
    highest_serial: int = 0  # of every checkpoint there, damaged ones included


@dataclass(frozen=True)
class Start:
    """The decision: the checkpoint to load and what to do with it."""

    prefix: str | None  # None: fresh weights
    state: RunState | None = None  # the prefix's run state (None for a Coqui checkpoint)
    exact: bool = False  # resume an interrupted run where it stopped: progress, generators, learning rate
    resuming: bool = False  # the run's own checkpoint: nothing is dropped again, its history is kept
    drop: int = 0  # --drop_source_layers, applied to a new transfer only


def own_checkpoint(
    save: SaveDirectory, load_train: str, drop_source_layers: int, alphabet: AnyAlphabet
) -> Start | None:
    """The save directory's checkpoint of this run, if it holds one. Its newest is resumed exactly if its
    run did not finish (--load_train auto or last). Otherwise, with separate load and save directories any
    checkpoint in the save directory is the run's own, and Coqui's choice among them applies (best_dev
    first for auto); with one directory, only one whose run state records this very transfer (the same
    target alphabet), since the directory's other checkpoints are the source's."""
    if load_train == "init":
        return None

    def of_this_run(state: RunState | None) -> bool:
        if not (save.one_dir and drop_source_layers):
            return True
        transfer = state.transfer if state else None
        return transfer is not None and transfer.alphabet == alphabet_record(alphabet)

    progress = save.newest_state.progress if save.newest_state else None
    if load_train in ("auto", "last") and progress and not progress.finished and of_this_run(save.newest_state):
        return Start(save.newest, save.newest_state, exact=True, resuming=True)
    if save.picked is None or (save.one_dir and not (drop_source_layers and of_this_run(save.picked_state))):
        return None
    return Start(save.picked, save.picked_state, resuming=True)


def source_layers(transfer: TransferRecord | None) -> set[str]:
    """The layer scopes a transfer loaded from its source (those it did not drop)."""
    return set(LAYER_SCOPES) - dropped_layers(transfer.drop_source_layers) if transfer else set()


def frozen(transfer: TransferRecord | None, epochs_done: int, freeze_source_layers: int) -> bool:
    """Whether the source layers stay fixed now: --freeze_source_layers N for the first N epochs of a
    transfer, counted over restarts (-1: the whole run)."""
    return bool(transfer) and (freeze_source_layers < 0 or epochs_done < freeze_source_layers)


# ---- reading the directories, deciding, saying so -------------------------------------------------


def read_save_directory(load_dir: str, save_dir: str, load_train: str) -> SaveDirectory:
    if not save_dir or not os.path.isdir(save_dir):
        return SaveDirectory(one_dir=False)
    one_dir = bool(load_dir) and os.path.realpath(load_dir) == os.path.realpath(save_dir)
    newest = newest_checkpoint(save_dir, intact=True)
    picked = search(save_dir, load_train, intact=True).prefix if load_train != "init" else None
    return SaveDirectory(
        one_dir,
        newest,
        read_run_state(newest) if newest else None,
        picked,
        read_run_state(picked) if picked else None,
        highest_save_serial(save_dir),
    )


def choose(
    load_dir: str, save_dir: str, load_train: str, drop_source_layers: int, epochs: int, alphabet: AnyAlphabet
) -> tuple[Start, int]:
    """The run's start, and the save serial its first checkpoint continues from (new checkpoints are
    numbered after every one already in the save directory, whichever is loaded)."""
    if load_dir and load_dir != save_dir and not os.path.isdir(load_dir) and not exported_model_file(load_dir):
        raise ConfigError(f"Missing checkpoint directory {load_dir!r} (--load_checkpoint_dir)")
    save = read_save_directory(load_dir, save_dir, load_train)
    serial = save.highest_serial
    own = own_checkpoint(save, load_train, drop_source_layers, alphabet)
    if own and own.exact:
        assert own.state is not None and own.state.progress is not None  # what made it exact
        p = own.state.progress
        position = f"batch {p.batch} of {p.batches_in_epoch}" if p.stage == "train" else f"stage {p.stage}"
        log.info(
            f"Resuming the interrupted run from {own.prefix}: epoch {p.epoch}, {position}, until --epochs {epochs}"
        )
        return own, serial
    if own:
        log.info(
            f"Resuming from {own.prefix}, this run's own checkpoint in the save directory"
            + (
                f"; --drop_source_layers {drop_source_layers} is not applied again"
                if drop_source_layers
                else "; the source checkpoint is not loaded again"
            )
        )
        return own, serial
    found = search(load_dir, load_train, exported=True, intact=True)
    found.log()
    if found.prefix is None:
        if load_train not in ("init", "auto"):
            raise CheckpointError(f"All initialization methods failed ({found.tried}): no checkpoint in {load_dir}")
        log.info("Initializing all variables.")
        if drop_source_layers:
            log.warn(f"--drop_source_layers {drop_source_layers} has no effect: no checkpoint to transfer from")
        return Start(None), serial
    return Start(found.prefix, read_run_state(found.prefix), drop=drop_source_layers), serial
