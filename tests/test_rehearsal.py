"""Rehearsal (--rehearsal_files, --rehearsal_fraction): each epoch's draw, reproducible and fresh; rehearsal rows
checked as any data set's; exact resume; no augmentation of them unless asked; every kind of source and runner."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from coqui_stt_training import data_set_tool, train
from coqui_stt_training.data.samples import Sample, load_data_set
from coqui_stt_training.feeding.augment import parse_augmentations
from coqui_stt_training.feeding.augment_batch import augment_features
from coqui_stt_training.feeding.batches import Collate
from coqui_stt_training.feeding.rehearsal import TrainingSet
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings
from tests.helpers import ALPHABET, LDC, ROOT, SMOKE, repeated_csv
from tests.test_distributed import crash_lines, step_losses
from tests.test_run_state import command, final_tensors, losses, signal_at

ENGLISH_PROMPTS = os.path.join(ROOT, "data", "asterisk_en", "prompts.csv")  # six 8 kHz utterances


def samples(n: int, name: str) -> list[Sample]:
    files = [f"{name}{i}.wav" for i in range(n)]
    return [Sample(f, f, "a", 0, f"{name}.csv, row {i + 2}", duration=i) for i, f in enumerate(files)]


def test_each_epoch_draws_its_share_afresh_and_reproducibly():
    training = TrainingSet(samples(40, "target"), samples(100, "source"), 0.2)
    assert training.drawn_per_epoch == 10 and len(training) == 50  # 10 of 50: a fifth of the epoch
    first, rehearsed = training.epoch(4568, 0)
    assert training.epoch(4568, 0) == (first, rehearsed)  # a resumed run, every rank and worker: the same epoch
    assert len(first) == 50 and len(rehearsed) == 10
    assert all((first[i].wav_filename.startswith("source")) == (i in rehearsed) for i in range(50))
    assert [s.duration for s in first] == sorted(s.duration for s in first)  # size order, as a data set's
    drawn = [first[i].wav_filename for i in sorted(rehearsed)]
    assert len(set(drawn)) == 10  # no repeats while the rehearsal set is large enough
    draws = {tuple(s.wav_filename for s in training.epoch(seed, epoch)[0]) for seed in (1, 2) for epoch in range(5)}
    assert len(draws) == 10  # fresh each epoch, and another seed draws another sequence
    assert sorted(s.wav_filename for s in first if s.wav_filename.startswith("target")) == sorted(
        s.wav_filename for s in training.target
    )  # every target sample, every epoch


def test_a_small_rehearsal_set_is_drawn_evenly_and_no_rehearsal_is_the_plain_set():
    training = TrainingSet(samples(8, "target"), samples(3, "source"), 0.5)
    epoch, rehearsed = training.epoch(1, 0)
    counts = np.unique([epoch[i].wav_filename for i in rehearsed], return_counts=True)[1]
    assert training.drawn_per_epoch == 8 and sorted(counts) == [2, 3, 3]
    plain = TrainingSet(samples(8, "target"))
    assert plain.epoch(1, 0) == (plain.target, frozenset()) and len(plain) == 8
    assert plain.longest(2) == plain.target[-2:]
    assert [s.wav_filename for s in training.longest(2)] == ["target6.wav", "target7.wav"]


def test_rehearsal_samples_are_not_augmented_unless_asked():
    settings = FeatureSettings()
    loaded = load_data_set([LDC, LDC], load_alphabet(ALPHABET), settings, "train")
    augmentations = tuple(parse_augmentations(["volume[p=1,dbfs=-30]", "add[p=1,stddev=2]"]))
    clean = Collate(loaded, settings)((0, [0, 1])).features
    batch = Collate(loaded, settings, None, augmentations, (1, 0, 1, 1), plain=frozenset({1}))((0, [0, 1]))
    assert batch.utterances is not None and batch.seeds is not None and batch.seeds[1] is None
    features, _ = augment_features(
        batch.utterances, batch.seeds, 0.0, list(augmentations), settings, torch.device("cpu")
    )
    assert torch.equal(features[1], clean[1])  # the rehearsal sample: as it is
    assert not torch.allclose(features[0], clean[0], atol=0.1)  # the target sample: augmented


def rehearsal(fraction: str = "0.5") -> list[str]:
    return ["--rehearsal_files", ENGLISH_PROMPTS, "--rehearsal_fraction", fraction]


def test_a_rehearsal_row_that_does_not_fit_the_alphabet_is_refused_by_file_and_row(tmp_path, cli):
    bad = tmp_path / "source.csv"
    bad.write_text(f"wav_filename,wav_filesize,transcript\n{SMOKE}/LDC93S1.wav,1,fine\n{SMOKE}/LDC93S1.wav,2,café\n")
    ckpt = tmp_path / "ckpt"
    argv = command(repeated_csv(tmp_path), str(ckpt), epochs=1)
    status, out = cli(train.main, [*argv, "--rehearsal_files", str(bad), "--rehearsal_fraction", "0.2"])
    assert status == 1, out
    assert "1 invalid sample(s) in --rehearsal_files" in out
    assert f"{bad}, row 3: Alphabet cannot encode transcript" in out and "'é'" in out
    assert not ckpt.exists()  # refused before anything was written
    status, out = cli(train.main, [*argv, "--rehearsal_files", str(bad)])
    assert status == 1 and "--rehearsal_files and --rehearsal_fraction go together" in out, out
    status, out = cli(train.main, [*argv, *rehearsal("1")])
    assert status != 0 and "--rehearsal_fraction 1.0: must be in [0, 1)" in out, out


@pytest.fixture(scope="module")
def uninterrupted_rehearsal(tmp_path_factory):
    """A run with rehearsal and augmentation, shuffled batches, dropout and plateaus (test_run_state's command)."""
    tmp = tmp_path_factory.mktemp("uninterrupted_rehearsal")
    csv_path, ckpt = repeated_csv(tmp), str(tmp / "ckpt")
    argv = [*command(csv_path, ckpt), *rehearsal(), "--augment", "add[p=0.5,stddev=0.5]", "--data_workers", "2"]
    done = subprocess.run([sys.executable, "-m", "coqui_stt_training.train", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return csv_path, done.stdout + done.stderr, final_tensors(ckpt)


def test_rehearsal_changes_the_run_and_says_what_each_epoch_holds(uninterrupted_rehearsal, tmp_path, cli):
    csv_path, log, _ = uninterrupted_rehearsal
    assert "Rehearsal: each epoch trains on the 5 samples of --train_files and 5 drawn afresh from the 6" in log
    status, plain = cli(train.main, [*command(csv_path, str(tmp_path / "plain")), "--augment", "add[p=0.5,stddev=0.5]"])
    assert status == 0, plain
    assert losses(plain, "training") != losses(log, "training")


def test_sigterm_mid_epoch_resumes_a_rehearsal_run_exactly(uninterrupted_rehearsal, tmp_path, monkeypatch, cli):
    csv_path, full_log, full_tensors = uninterrupted_rehearsal
    ckpt = str(tmp_path / "ckpt")
    argv = [*command(csv_path, ckpt), *rehearsal(), "--augment", "add[p=0.5,stddev=0.5]", "--data_workers", "0"]
    with monkeypatch.context() as patch:
        signal_at(patch, "step", 14)  # epoch 1, inside its draw of rehearsal samples
        status, first = cli(train.main, argv)
    assert status == 0 and "Stopped on SIGTERM at epoch 1, batch 4" in first, first[-2000:]
    status, second = cli(train.main, argv)
    assert status == 0 and "Resuming the interrupted run from" in second, second[-2000:]
    for what in ("training", "validating"):  # (and two data workers then, none now: the same batches)
        assert {**losses(first, what), **losses(second, what)} == losses(full_log, what), what
    assert final_tensors(ckpt) == full_tensors


def test_the_feature_cache_serves_rehearsal_samples_without_changing_the_run(uninterrupted_rehearsal, tmp_path, cli):
    csv_path, full_log, full_tensors = uninterrupted_rehearsal
    ckpt, cache = str(tmp_path / "ckpt"), tmp_path / "cache"
    argv = [*command(csv_path, ckpt), *rehearsal(), "--augment", "add[p=0.5,stddev=0.5]", "--feature_cache", str(cache)]
    status, log = cli(train.main, argv)
    assert status == 0, log
    assert losses(log, "training") == losses(full_log, "training") and final_tensors(ckpt) == full_tensors
    cached = [name for _, _, names in os.walk(cache) for name in names]
    assert len(cached) >= 1 + 6  # LDC93S1 and the six English prompts


@pytest.mark.parametrize("source, rows", [("a WebDataset shard", 3), ("an SDB", 1)])
def test_rehearsal_draws_from_webdataset_and_sdb_sources_too(source, rows, tmp_path, cli):
    path = os.path.join(SMOKE, "ldc93s1_wds.tar")
    if source == "an SDB":  # written from the CSV by Coqui's data_set_tool
        path = str(tmp_path / "ldc.sdb")
        assert cli(data_set_tool.main, ["--sources", LDC, "--target", path])[0] == 0
    argv = command(repeated_csv(tmp_path), str(tmp_path / "ckpt"), epochs=1)
    status, out = cli(train.main, [*argv, "--rehearsal_files", path, "--rehearsal_fraction", "0.5"])
    assert status == 0, out
    assert f"and 5 drawn afresh from the {rows} of --rehearsal_files" in out


@pytest.mark.slow
def test_two_processes_each_train_their_share_of_the_rehearsal_draw(tmp_path, cli):
    """torchrun: every rank draws the same epoch and trains its slice of each global batch, so two processes at
    batch 2 follow one process at batch 4."""
    csv_path = repeated_csv(tmp_path, copies=8)
    flags = lambda ckpt, batch: [
        "--alphabet_config_path", ALPHABET, "--n_hidden", "32", "--show_progressbar", "false", "--train_files",
        csv_path, *rehearsal("0.5"), "--epochs", "2", "--train_batch_size", str(batch), "--dropout_rate", "0",
        "--learning_rate", "0.002", "--checkpoint_dir", str(tmp_path / ckpt), "--log_level", "0"]  # fmt: skip
    status, single = cli(train.main, flags("one", 4))
    assert status == 0, single
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*launcher, "-m", "coqui_stt_training.train", *flags("two", 2)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    double = done.stdout + done.stderr
    assert done.returncode == 0, crash_lines(double) + "\n" + double
    assert len(step_losses(single)) == 8  # (8 + 8 drawn) / 4 per step, two epochs
    np.testing.assert_allclose(step_losses(double), step_losses(single), rtol=1e-4)
