"""Where a training run starts: the decisions alone, on what the directories hold (the end-to-end flows
are in test_train.py and test_run_state.py)."""

import pytest

from coqui_stt_training.checkpoints.run_state import Progress, RunState, TransferRecord
from coqui_stt_training.model.alphabet import Alphabet, alphabet_record
from coqui_stt_training.training.start import SaveDirectory, Start, frozen, own_checkpoint, source_layers

RUSSIAN = Alphabet([" ", "а", "б"])
OTHER = Alphabet([" ", "x"])


def state(finished: bool, transfer_alphabet=None) -> RunState:
    transfer = TransferRecord("in/best_dev-9", 1, alphabet_record(transfer_alphabet)) if transfer_alphabet else None
    return RunState(progress=Progress(epoch=2, finished=finished), transfer=transfer)


def test_an_empty_or_missing_save_directory_holds_nothing_of_this_run():
    assert own_checkpoint(SaveDirectory(one_dir=False), "auto", 0, RUSSIAN) is None


def test_an_interrupted_run_is_resumed_exactly_from_its_newest_checkpoint():
    unfinished = state(finished=False)
    save = SaveDirectory(False, "out/train-12", unfinished, "out/best_dev-10", state(finished=False))
    assert own_checkpoint(save, "auto", 1, RUSSIAN) == Start("out/train-12", unfinished, exact=True, resuming=True)
    assert own_checkpoint(save, "last", 1, RUSSIAN) == Start("out/train-12", unfinished, exact=True, resuming=True)


def test_a_finished_run_continues_from_coquis_choice_in_its_own_directory():
    """--load_train best asks for best_dev even of an interrupted run; a finished run starts a new count of
    epochs from the checkpoint --load_train picks (best_dev first for auto)."""
    picked = state(finished=True)
    save = SaveDirectory(False, "out/train-12", state(finished=True), "out/best_dev-10", picked)
    assert own_checkpoint(save, "auto", 1, RUSSIAN) == Start("out/best_dev-10", picked, resuming=True)
    interrupted = SaveDirectory(False, "out/train-12", state(finished=False), "out/best_dev-10", picked)
    assert own_checkpoint(interrupted, "best", 1, RUSSIAN) == Start("out/best_dev-10", picked, resuming=True)


def test_init_never_takes_the_save_directorys_checkpoints():
    save = SaveDirectory(False, "out/train-12", state(finished=False), "out/train-12", state(finished=False))
    assert own_checkpoint(save, "init", 0, RUSSIAN) is None


@pytest.mark.parametrize(
    "target, expected",
    [(RUSSIAN, True), (OTHER, False)],
    ids=["this transfer's checkpoint", "another transfer's"],
)
def test_in_one_directory_only_a_checkpoint_of_this_very_transfer_is_the_runs_own(target, expected):
    transferred = state(finished=False, transfer_alphabet=RUSSIAN)
    save = SaveDirectory(True, "ckpt/train-25", transferred, "ckpt/best_dev-24", transferred)
    start = own_checkpoint(save, "auto", 1, target)
    assert (start is not None) == expected
    if start:
        assert start.exact


def test_in_one_directory_the_source_models_own_checkpoints_are_not_the_runs():
    """A transfer into the source's own directory: its checkpoints record no transfer, so they are the
    source to drop layers from, not a run to resume."""
    source = state(finished=True)
    save = SaveDirectory(True, "ckpt/best_dev-20", source, "ckpt/best_dev-20", source)
    assert own_checkpoint(save, "auto", 1, RUSSIAN) is None
    # without --drop_source_layers one directory is simply Coqui's fine-tuning in place
    assert own_checkpoint(save, "auto", 0, RUSSIAN) is None


@pytest.mark.parametrize(
    "drop, kept",
    [
        (1, {"layer_1", "layer_2", "layer_3", "cudnn_lstm", "layer_5"}),
        (2, {"layer_1", "layer_2", "layer_3", "cudnn_lstm"}),
        (3, {"layer_1", "layer_2", "layer_3"}),
        (5, {"layer_1"}),
    ],
)
def test_the_source_layers_are_those_a_transfer_did_not_drop(drop, kept):
    assert source_layers(TransferRecord("in/best_dev-9", drop, "UTF-8 bytes")) == kept
    assert source_layers(None) == set()


def test_frozen_for_the_first_epochs_of_a_transfer_counted_over_restarts():
    transfer = TransferRecord("in/best_dev-9", 2, "UTF-8 bytes")
    assert frozen(transfer, epochs_done=0, freeze_source_layers=2)
    assert frozen(transfer, epochs_done=1, freeze_source_layers=2)
    assert not frozen(transfer, epochs_done=2, freeze_source_layers=2)
    assert frozen(transfer, epochs_done=99, freeze_source_layers=-1)  # the whole run
    assert not frozen(transfer, epochs_done=0, freeze_source_layers=0)
    assert not frozen(None, epochs_done=0, freeze_source_layers=-1)  # no transfer, nothing to freeze
