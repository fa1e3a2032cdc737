"""torchrun: two CPU processes (gloo) train as one process does with the same global batch."""

import glob
import json
import os
import re
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from coqui_stt_training import train
from coqui_stt_training.checkpoints import store
from tests.helpers import ALPHABET, ROOT, SMOKE
from tests.helpers import LDC_SENTENCE as SENTENCE
from tests.test_summary import read_records


def data_set(tmp_path):
    """Eight different samples (other containers, rates and transcripts), so that a rank that trained on
    the wrong slice of a global batch would change the gradients."""
    files = [
        "LDC93S1.wav",
        "LDC93S1.flac",
        "LDC93S1.ogg",
        "LDC93S1_pcms16le_1_8000.wav",
        "LDC93S1_pcms16le_2_44100.wav",
        "LDC93S1.opus",
        "LDC93S1.wav",
        "LDC93S1.flac",
    ]
    words = SENTENCE.split()
    rows = [f"{SMOKE}/{name},{1000 + i},{' '.join(words[: 3 + i])}" for i, name in enumerate(files)]
    train_csv, dev_csv = tmp_path / "train.csv", tmp_path / "dev.csv"
    train_csv.write_text("wav_filename,wav_filesize,transcript\n" + "\n".join(rows) + "\n")
    dev_csv.write_text("wav_filename,wav_filesize,transcript\n" + "\n".join(rows[:3]) + "\n")
    return str(train_csv), str(dev_csv)


def flags(train_csv, dev_csv, ckpt, batch):
    return ["--alphabet_config_path", ALPHABET, "--n_hidden", "32", "--show_progressbar", "false",
            "--train_files", train_csv, "--dev_files", dev_csv, "--test_files", dev_csv, "--epochs", "3",
            "--train_batch_size", str(batch), "--dev_batch_size", "1", "--test_batch_size", "1",
            "--dropout_rate", "0", "--learning_rate", "0.002", "--checkpoint_dir", ckpt, "--log_level", "0",
            "--test_output_file", os.path.join(ckpt, "..", os.path.basename(ckpt) + ".json"),
            "--export_beam_width", "8"]  # fmt: skip


def step_losses(log):
    return [float(x) for x in re.findall(r"D Step \d+ - loss: ([0-9.]+)", log)]


def dev_losses(log):
    return [float(x) for x in re.findall(r"Finished validating epoch \d+ on \S+ - loss: ([0-9.]+)", log)]


def crash_lines(log):
    """What a crashed rank said (a C++ abort, a traceback's last line) first: CI shows a long log's ends."""
    said = [line for line in log.splitlines() if re.search(r"terminate|what\(\)|Fatal|Error|Abort|exitcode", line)]
    return "\n".join(said[:20])


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_same_global_batch(tmp_path, cli):
    train_csv, dev_csv = data_set(tmp_path)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    summaries = lambda d: ["--summary_dir", d + "-summaries"]
    status, single = cli(train.main, flags(train_csv, dev_csv, one, batch=4) + summaries(one))
    assert status == 0, single
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    launched = subprocess.run(
        launcher + ["-m", "coqui_stt_training.train"] + flags(train_csv, dev_csv, two, batch=2) + summaries(two),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    double = launched.stdout + launched.stderr
    assert launched.returncode == 0, crash_lines(double) + "\n" + double
    assert "Distributed training: 2 processes, global batch 4 (--train_batch_size 2 each)" in double
    assert len(step_losses(single)) == 6  # 8 samples, global batch 4, 3 epochs
    np.testing.assert_allclose(step_losses(double), step_losses(single), rtol=1e-4)
    assert len(step_losses(double)) == 6  # rank 0 speaks alone
    assert double.count("Finished training epoch") == 3
    np.testing.assert_allclose(dev_losses(double), dev_losses(single), rtol=1e-4)  # each rank validated a share
    # one checkpoint directory, written by rank 0 only, with what one process writes
    names = lambda d: sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n)))
    assert names(two) == names(one)
    a = store.open_checkpoint(store.find_checkpoint(one, "train"))
    b = store.open_checkpoint(store.find_checkpoint(two, "train"))
    for name in a.names():  # Adam's steps are 0.002 here; rounding differences move weights by ~1e-5
        np.testing.assert_allclose(b.get(name), a.get(name), rtol=1e-4, atol=1e-4, err_msg=name)
    # the test phase: each rank tested a share, rank 0 reported them all
    single_results = {r["src"]: r for r in read_json(one + ".json")}
    double_results = {r["src"]: r for r in read_json(two + ".json")}
    assert set(double_results) == set(single_results)
    assert len(single_results) == 3
    for src, r in single_results.items():
        assert double_results[src]["res"] == r["res"]
        assert abs(double_results[src]["loss"] - r["loss"]) <= 1e-4 * abs(r["loss"])
    assert double.count("Test on ") == 1
    # TensorBoard's dev curve: rank 0 writes every rank's batches (3 dev batches a epoch, 3 epochs)
    dev_events = lambda d: read_records(glob.glob(os.path.join(d + "-summaries", "dev", "events.out.tfevents.*"))[0])
    single_dev, double_dev = dev_events(one)[1:], dev_events(two)[1:]  # after the file-version record
    assert len(single_dev) == len(double_dev) == 9
    value = lambda record: struct.unpack("<f", record[-4:])[0]  # the scalar's float ends each event
    np.testing.assert_allclose([value(r) for r in double_dev], [value(r) for r in single_dev], rtol=1e-4)


def torchrun(module, argv, processes=2, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", module, *argv]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, **popen)


@pytest.mark.slow
def test_evaluate_under_torchrun_tests_a_share_on_each_rank_and_reports_once(tmp_path, cli):
    train_csv, dev_csv = data_set(tmp_path)
    ckpt = str(tmp_path / "ckpt")
    status, _ = cli(train.main, flags(train_csv, dev_csv, ckpt, batch=4) + ["--epochs", "1"])
    assert status == 0
    evaluate = ["--alphabet_config_path", ALPHABET, "--checkpoint_dir", ckpt, "--test_files", train_csv,
                "--test_batch_size", "1", "--export_beam_width", "8", "--show_progressbar", "false"]  # fmt: skip
    results = {}
    for processes in (1, 2):
        out = str(tmp_path / f"results-{processes}.json")
        done = torchrun("coqui_stt_training.evaluate", evaluate + ["--test_output_file", out], processes)
        log = done.stdout + done.stderr
        assert done.returncode == 0, crash_lines(log) + "\n" + log
        assert log.count("Test on ") == 1, log  # rank 0 reports for both
        results[processes] = sorted(read_json(out), key=lambda r: (r["wav_filename"], r["src"]))
    assert len(results[1]) == 8
    assert [(r["wav_filename"], r["src"], r["res"]) for r in results[2]] == [
        (r["wav_filename"], r["src"], r["res"]) for r in results[1]
    ]
    np.testing.assert_allclose([r["loss"] for r in results[2]], [r["loss"] for r in results[1]], rtol=1e-5)


@pytest.mark.slow
def test_a_signal_during_validation_stops_every_rank_there(tmp_path):
    """Ranks hold different numbers of dev batches, so they cannot vote per batch; they vote with the dev
    loss's all-reduce and stop before the epoch's validation is finished, as one process does."""
    train_csv, _ = data_set(tmp_path)
    dev_csv = tmp_path / "long-dev.csv"
    row = f"{SMOKE}/LDC93S1.wav,1000,{SENTENCE}\n"
    dev_csv.write_text("wav_filename,wav_filesize,transcript\n" + row * 400)
    argv = flags(train_csv, str(dev_csv), str(tmp_path / "ckpt"), batch=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "coqui_stt_training.train", *argv]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
    assert child.stdout is not None
    log = ""
    for line in child.stdout:
        log += line
        if line.startswith("I Validating epoch 0 on"):
            child.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    child.wait(timeout=120)
    assert "Stopped on SIGTERM at epoch 0" in log, log
    assert "Finished validating epoch 0" not in log, log  # stopped in the validation, not after it
    assert "forcefully" not in log, log  # torchrun did not have to kill a rank
