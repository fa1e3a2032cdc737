"""Exact resume and clean stops: an interrupted run, started again with the same command, continues the
trajectory of an uninterrupted one (same losses, same final weights, bit for bit)."""

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from coqui_stt_training import train
from coqui_stt_training.checkpoints import store
from coqui_stt_training.checkpoints.run_state import Progress, RunState, TransferRecord
from coqui_stt_training.training import trainer
from tests.helpers import ALPHABET, LDC, ROOT, repeated_csv, run, sha256, wait_for


def command(train_csv, ckpt, epochs=4):
    # Dropout, shuffled batches and a plateau every epoch: every piece of state a resume must restore.
    return [
        "--alphabet_config_path",
        ALPHABET,
        "--n_hidden",
        "24",
        "--show_progressbar",
        "false",
        "--train_files",
        train_csv,
        "--dev_files",
        LDC,
        "--epochs",
        str(epochs),
        "--checkpoint_dir",
        ckpt,
        "--dropout_rate",
        "0.3",
        "--shuffle_batches",
        "true",
        "--learning_rate",
        "0.002",
        "--reduce_lr_on_plateau",
        "true",
        "--plateau_epochs",
        "1",
        "--es_min_delta",
        "1000",
        "--max_to_keep",
        "2",
    ]


def losses(log, what):
    """{epoch: loss} from 'Finished training/validating epoch N ... - loss: X' lines."""
    return {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(rf"Finished {what} epoch (\d+)[^\n]* - loss: ([0-9.]+)", log)
    }


def final_tensors(ckpt):
    return {kind: sha256(store.find_checkpoint(ckpt, kind) + ".safetensors") for kind in ("train", "best_dev")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    csv_path, ckpt = repeated_csv(tmp), str(tmp / "ckpt")
    out = io.StringIO()  # a module-scoped fixture cannot use capsys
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        train.main(command(csv_path, ckpt))
    log = out.getvalue()
    assert "Encountered a plateau" in log
    return csv_path, log, final_tensors(ckpt)


def signal_at(monkeypatch, method, call):
    """Deliver SIGTERM to this process during the `call`-th call of Trainer.<method>: the loop's step, the
    validation of a dev set, or the report of a metrics set."""
    original, calls = getattr(trainer.Trainer, method), []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, method, wrapped)


@pytest.mark.parametrize(
    "method, call, stopped_at",
    [
        ("step", 3, "epoch 0, batch 3"),  # inside an epoch
        ("step", 10, "epoch 1, batch 5"),  # on the last batch of an epoch
        ("dev_loss", 2, "epoch 1;"),  # during validation: the epoch's checkpoint is already saved
        ("report_metrics", 3, "epoch 2;"),  # between epochs
    ],
)
def test_sigterm_saves_and_the_same_command_resumes_exactly(
    method, call, stopped_at, uninterrupted, tmp_path, monkeypatch, capsys
):
    csv_path, full_log, full_tensors = uninterrupted
    ckpt = str(tmp_path / "ckpt")
    argv = command(csv_path, ckpt)
    if method == "report_metrics":  # a metrics set, so that this method runs at the end of each epoch
        argv += ["--metrics_files", LDC]
    with monkeypatch.context() as patch:
        signal_at(patch, method, call)
        status, first = run(train.main, argv, capsys)
    assert status == 0, first
    assert f"Stopped on SIGTERM at {stopped_at}" in first
    assert "Run the same command again to resume." in first
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back
    status, second = run(train.main, argv, capsys)
    assert status == 0, second
    assert "Resuming the interrupted run from" in second
    for what in ("training", "validating"):
        assert {**losses(first, what), **losses(second, what)} == losses(full_log, what), what
    assert final_tensors(ckpt) == full_tensors


def test_a_finished_run_starts_a_new_count_of_epochs_as_coqui_does(uninterrupted, tmp_path, monkeypatch, capsys):
    csv_path, _, _ = uninterrupted
    ckpt = str(tmp_path / "ckpt")
    assert run(train.main, command(csv_path, ckpt, epochs=1), capsys)[0] == 0
    status, log = run(train.main, command(csv_path, ckpt, epochs=1), capsys)
    assert status == 0, log
    assert "Loading best validating checkpoint" in log
    assert "Resuming the interrupted" not in log
    assert set(losses(log, "training")) == {0}
    # that continuation, interrupted in turn, is resumed exactly (its checkpoints are numbered after the old ones)
    with monkeypatch.context() as patch:
        signal_at(patch, "step", 2)
        status, log = run(train.main, command(csv_path, ckpt, epochs=2), capsys)
    saved = re.search(r"checkpoint saved to (\S+)\. Run", log).group(1)
    status, log = run(train.main, command(csv_path, ckpt, epochs=2), capsys)
    assert status == 0, log
    assert f"Resuming the interrupted run from {saved}: epoch 0, batch 2 of 5" in log


@pytest.mark.slow
def test_sigterm_to_a_real_process_saves_and_exits_zero(tmp_path):
    csv_path, ckpt = repeated_csv(tmp_path, copies=40), str(tmp_path / "ckpt")
    child = subprocess.Popen(
        [sys.executable, "-m", "coqui_stt_training.train"] + command(csv_path, ckpt, epochs=100),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = wait_for(child, "STARTING Optimization")  # training runs
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    out += child.stdout.read()
    assert child.wait(timeout=60) == 0, out
    saved = re.search(r"Stopped on SIGTERM at epoch \d+(, batch \d+)?; checkpoint saved to (\S+)\. Run the same", out)
    assert saved, out
    state = store.read_run_state(saved.group(2))
    assert not state.progress.finished
    assert store.newest_checkpoint(ckpt) == saved.group(2)


def start_training(argv, kill_at=0):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "killable_train.py"), str(kill_at)] + argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def assert_loadable(ckpt):
    """Every checkpoint the state files name reads completely: all tensors and the run state."""
    for kind in store.STATE_FILES:
        prefix = store.find_checkpoint(ckpt, kind)
        if prefix:
            reader = store.open_checkpoint(prefix)
            for name in reader.names():
                assert reader.get(name).size >= 1, name
            assert store.read_run_state(prefix).progress.epoch >= 0


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_last_checkpoint(tmp_path):
    """20 runs of the same command, each killed with SIGKILL: half at a random instant of the checkpoint
    writes (including mid-file), half at a random time into training. After each, every checkpoint the
    directory names loads, and the next run resumes from the newest one."""
    csv_path, ckpt = repeated_csv(tmp_path, copies=3), str(tmp_path / "ckpt")
    argv = command(csv_path, ckpt, epochs=1000)
    rng = random.Random(20261125)
    resumed = 0
    for attempt in range(20):
        had_checkpoint = store.find_checkpoint(ckpt, "train") is not None if os.path.isdir(ckpt) else False
        if attempt % 2:
            moment = f"file-system event {rng.randint(1, 300)} of the checkpoint writes"
            child = start_training(argv, kill_at=int(moment.split()[2]))
            out = child.stdout.read()
        else:
            delay = rng.uniform(0.0, 1.5)
            moment = f"{delay:.2f} s into training"
            child = start_training(argv)
            out = wait_for(child, "STARTING Optimization")
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            out += child.stdout.read()
        assert child.wait(timeout=120) == -signal.SIGKILL, f"attempt {attempt}, killed at {moment}:\n{out}"
        assert "Traceback" not in out, out
        assert "\nE " not in out, out
        if had_checkpoint:
            assert "Resuming the interrupted run from" in out, f"attempt {attempt}, killed at {moment}:\n{out}"
            resumed += 1
        assert_loadable(ckpt)
    assert resumed >= 16
    child = start_training(argv)  # the same command once more, stopped cleanly
    out = wait_for(child, "STARTING Optimization")
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    out += child.stdout.read()
    assert child.wait(timeout=60) == 0, out
    assert "Resuming the interrupted run from" in out
    assert not [name for name in os.listdir(ckpt) if ".tmp" in name]  # a killed run's temporaries are cleared


def test_a_run_state_is_one_record_written_and_read_back_whole():
    state = RunState(
        global_step=12,
        best_dev_loss=3.5,
        epochs_done=2,
        save_serial=7,
        alphabet=["a", "b"],
        progress=Progress(epoch=2, batch=3, stage="trained", loss_sum=1.5, steps=3, batches_in_epoch=5),
        learning_rate=0.00025,
        rng=[{"torch": "AAAA"}, {"torch": "BBBB"}],
        transfer=TransferRecord("in/best_dev-9", 2, ["a", "b"], keep_shared_symbols=True),
    )
    record = json.loads(json.dumps(state.to_json()))
    assert record["format_version"] == 1
    assert "grad_scaler" not in record  # only a float16 run on CUDA has one
    assert RunState.from_json(record) == state


def test_run_states_written_by_earlier_versions_still_resume():
    """One process's generators were stored as one object, and some fields did not exist yet."""
    legacy = {"format_version": 1, "global_step": 4, "best_dev_loss": 9.0, "rng": {"torch": "AAAA"},
              "progress": {"epoch": 1, "batch": 2}, "a field from the future": True}  # fmt: skip
    state = RunState.from_json(legacy)
    assert state.rng == [{"torch": "AAAA"}]
    assert state.progress == Progress(epoch=1, batch=2)
    assert state.epochs_done == 0
    assert state.transfer is None
