"""Never losing work: one test per failure class of docs/reliability.md. Each asserts the exact one-line
message a user sees and that every file that existed before is byte-identical afterwards."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from coqui_stt_training import evaluate, export, train, transcribe
from coqui_stt_training.checkpoints import store
from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.model.optimizer import TFAdam
from coqui_stt_training.system.memory import available_memory
from coqui_stt_training.training import lock, step_memory
from tests.helpers import ALPHABET, LDC, LDC_SENTENCE, LDC_WAV, ROOT, digest, repeated_csv, wait_for

SMALL = ["--alphabet_config_path", ALPHABET, "--n_hidden", "24", "--show_progressbar", "false",
         "--export_beam_width", "4"]  # fmt: skip


def trained(tmp_path, cli, epochs=3, name="ckpt") -> str:
    ckpt = str(tmp_path / name)
    status, log = cli(train.main, SMALL + ["--train_files", LDC, "--dev_files", LDC, "--epochs", str(epochs),
                                           "--checkpoint_dir", ckpt])  # fmt: skip
    assert status == 0, log
    return ckpt


def flip_bytes_in_the_middle(path: str, count: int = 16) -> None:
    with open(path, "rb+") as f:
        size = os.path.getsize(path)
        f.seek(size // 2)
        data = bytearray(f.read(count))
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in data))


def tree(directory) -> dict[str, str]:
    """Every file under a directory, by relative path, with its hash (summaries included)."""
    out = {}
    for folder, _, _ in os.walk(directory):
        for name, hashed in digest(folder).items():
            out[os.path.relpath(os.path.join(folder, name), directory)] = hashed
    return out


@contextlib.contextmanager
def small_file_system(tmp_path, size: str, read_only: bool = False):
    """A tmpfs of `size` (disk full) or mounted read-only, where the machine lets us mount (root, as in CI)."""
    mount = tmp_path / ("ro" if read_only else "full")
    mount.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                                           capture_output=True).returncode:  # fmt: skip
        pytest.skip("needs to mount a tmpfs (root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# ---- integrity --------------------------------------------------------------------------------------


def test_a_damaged_newest_checkpoint_is_passed_over_and_kept_until_replaced(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=3)
    with open(os.path.join(ckpt, "checkpoint")) as f:
        assert "train-3" in f.read()
    flip_bytes_in_the_middle(os.path.join(ckpt, "train-3.safetensors"))
    damaged = digest(ckpt)["train-3.safetensors"]
    before = digest(ckpt)

    # evaluation refuses the damaged checkpoint by name, and changes nothing
    status, log = cli(evaluate.main, SMALL + ["--checkpoint_dir", ckpt, "--test_files", LDC, "--load_evaluate", "last"])
    assert status == 1, log
    assert log.splitlines()[-1].startswith(f"E {ckpt}/train-3.safetensors: damaged: tensor '")
    assert log.splitlines()[-1].endswith(f"does not match the CRC32C checksum that {ckpt}/train-3.json recorded when "
                                         "it was written")  # fmt: skip
    assert digest(ckpt) == before

    # training resumes from the newest intact one; the damaged file stays until a new intact save replaces it
    status, log = cli(train.main, SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt,
                                           "--load_train", "last", "--max_to_keep", "10"])  # fmt: skip
    assert status == 0, log
    assert f"W Using {ckpt}/train-2, the newest intact train checkpoint; the damaged {ckpt}/train-3 is kept until a " \
           "newer save replaces it" in log  # fmt: skip
    assert f"I Loading most recent checkpoint from {ckpt}/train-2" in log
    after = digest(ckpt)
    assert after["train-3.safetensors"] != damaged  # replaced, by the intact save of the same step
    assert store.damage(f"{ckpt}/train-3") is None
    assert {k: v for k, v in after.items() if k in before and not k.startswith(("train-3.", "checkpoint"))} == {
        k: v for k, v in before.items() if not k.startswith(("train-3.", "checkpoint"))
    }


def test_a_directory_whose_every_checkpoint_is_damaged_is_not_trained_over(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1)
    for name in os.listdir(ckpt):
        if name.endswith(".safetensors"):
            flip_bytes_in_the_middle(os.path.join(ckpt, name))
    before = digest(ckpt)
    status, log = cli(train.main, SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt])
    assert status == 1, log
    assert log.splitlines()[-1] == (
        f"E {ckpt}: every checkpoint its state files list is damaged or missing (warnings above); nothing to "
        "resume from. Restore the files, or train into another --save_checkpoint_dir"
    )
    assert digest(ckpt) == before


@pytest.mark.parametrize("copies", [1, 3])
def test_weights_that_turn_nan_stop_the_run_and_are_never_saved(copies, tmp_path, cli, monkeypatch):
    ckpt = trained(tmp_path, cli, epochs=2)
    before = digest(ckpt)
    real_step = TFAdam.step

    def diverging_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        self.param_groups[0]["params"][0].data.fill_(float("nan"))
        return result

    monkeypatch.setattr(TFAdam, "step", diverging_step)
    status, log = cli(train.main, SMALL + ["--train_files", repeated_csv(tmp_path, copies), "--epochs", "3",
                                           "--checkpoint_dir", ckpt, "--skip_batch_test", "true"])  # fmt: skip
    assert status == 1, log
    if copies == 1:  # the epoch ends after the step: its save refuses the weights
        assert log.splitlines()[-1] == (
            "E the weights are no longer finite at step 3 (layer_1/weights holds NaN or infinite values): not "
            f"saving them; the last good checkpoint, {ckpt}/best_dev-2, is kept. Try a lower --learning_rate"
        )
    else:  # the next step's loss is NaN, and so are the weights: the run stops there
        assert log.splitlines()[-1] == (
            f"E the weights became NaN or infinite at step 3: stopping; the last good checkpoint, {ckpt}/best_dev-2, "
            "is kept. Try a lower --learning_rate"
        )
    assert digest(ckpt) == before


# ---- signals in every phase --------------------------------------------------------------------------


def start(argv, module="train"):
    return subprocess.Popen([sys.executable, "-m", f"coqui_stt_training.{module}"] + argv, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_a_stop_signal_while_the_data_is_checked_is_one_line_and_writes_nothing(tmp_path):
    rows = "".join(f"{LDC_WAV},{i},{LDC_SENTENCE}\n" for i in range(20000))
    (tmp_path / "big.csv").write_text("wav_filename,wav_filesize,transcript\n" + rows)
    ckpt = tmp_path / "ckpt"
    child = start(SMALL + ["--train_files", str(tmp_path / "big.csv"), "--checkpoint_dir", str(ckpt)])
    out = wait_for(child, "Checking the 20000 samples of --train_files")
    child.send_signal(signal.SIGINT)
    out += child.stdout.read()
    assert child.wait(timeout=60) == 128 + signal.SIGINT, out  # the work asked for was not done: the shell's status
    assert out.splitlines()[-1] == (
        "I Stopped on SIGINT while checking the data; nothing was written. Run the same command again to start"
    )
    assert "Traceback" not in out
    assert not ckpt.exists()


def test_a_stop_signal_in_the_dummy_run_is_one_line(tmp_path):
    ckpt = tmp_path / "ckpt"
    child = start(["--alphabet_config_path", ALPHABET, "--n_hidden", "2048", "--show_progressbar", "false",
                   "--train_files", repeated_csv(tmp_path, 8), "--train_batch_size", "8", "--epochs", "1",
                   "--checkpoint_dir", str(ckpt)])  # fmt: skip
    out = wait_for(child, "Performing dummy training")  # a forward and backward pass of seconds at this size
    child.send_signal(signal.SIGTERM)
    out += child.stdout.read()
    assert child.wait(timeout=120) == 128 + signal.SIGTERM, out
    assert out.splitlines()[-1] == (
        "I Stopped on SIGTERM before the first training step; no checkpoint was written. Run the same command again"
    )
    assert sorted(os.listdir(ckpt)) == ["alphabet.txt", "flags.txt", "summaries"]  # no checkpoint, no lock


def test_sighup_stops_training_like_sigterm_with_a_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    child = start(SMALL + ["--train_files", repeated_csv(tmp_path, 3), "--epochs", "100000", "--checkpoint_dir",
                           str(ckpt)])  # fmt: skip
    out = wait_for(child, "STARTING Optimization")
    time.sleep(1.0)
    child.send_signal(signal.SIGHUP)  # the terminal or ssh session closed
    out += child.stdout.read()
    assert child.wait(timeout=60) == 0, out
    last = out.splitlines()[-1]
    assert last.startswith("I Stopped on SIGHUP at epoch ") and last.endswith(". Run the same command again to resume.")
    assert store.find_checkpoint(str(ckpt), "train") is not None
    assert not (ckpt / lock.LOCK_NAME).exists()


def test_a_second_signal_stops_at_once_with_one_line_and_the_shells_status(tmp_path):
    ckpt = tmp_path / "ckpt"
    child = start(["--alphabet_config_path", ALPHABET, "--n_hidden", "2048", "--show_progressbar", "false",
                   "--train_files", repeated_csv(tmp_path, 8), "--train_batch_size", "8", "--epochs", "1000",
                   "--checkpoint_dir", str(ckpt), "--skip_batch_test", "true"])  # fmt: skip
    # Into the first step (a second or more at this size; its batch's features take a few ms): a signal
    # before it would end the run at once, with nothing to save, before a second one could arrive.
    out = wait_for(child, "Training epoch 0...")
    time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    # Python runs a handler between bytecodes, so two signals inside one long matrix product would be one
    # call: the second goes once the first is acknowledged, still inside the step (a second or more).
    out += wait_for(child, "Received SIGINT")
    child.send_signal(signal.SIGINT)
    out += child.stdout.read()
    assert child.wait(timeout=60) == 128 + signal.SIGINT, out
    assert out.splitlines()[-1] == (
        "E Stopped on a second SIGINT during training; stopped at once, without saving; earlier checkpoints are kept"
    )
    assert "Traceback" not in out


def test_a_stop_signal_in_the_test_phase_says_the_training_is_kept(tmp_path):
    ckpt = tmp_path / "ckpt"
    tests = repeated_csv(tmp_path, 400, name="test.csv")
    child = start(SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", str(ckpt),
                           "--test_files", tests, "--export_beam_width", "1024"])  # fmt: skip
    out = wait_for(child, "Testing model on")
    child.send_signal(signal.SIGTERM)
    out += child.stdout.read()
    assert child.wait(timeout=60) == 128 + signal.SIGTERM, out
    assert out.splitlines()[-1] == (
        f"I Stopped on SIGTERM while testing or exporting; the training had finished and its checkpoints are in "
        f"{ckpt}; python -m coqui_stt_training.evaluate (or .export) with the same flags does the rest"
    )
    assert store.damage(store.find_checkpoint(str(ckpt), "train")) is None


def test_a_stop_signal_while_data_workers_start_leaves_nothing_half_built(monkeypatch):
    """The signal arrives inside torch's worker start-up (as in the test phase's first batch): it is held
    until the iterator is whole, then stops the run, and no clean-up fails with a traceback of its own."""
    from torch.utils.data import dataloader

    from coqui_stt_training.data.samples import Sample
    from coqui_stt_training.feeding import batches
    from coqui_stt_training.model.features import FeatureSettings
    from coqui_stt_training.system import signals

    started = dataloader._BaseDataLoaderIter.__init__

    def signalled_mid_start(self, loader):
        started(self, loader)
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(dataloader._BaseDataLoaderIter, "__init__", signalled_mid_start)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    samples = [Sample(LDC_WAV, LDC_WAV, LDC_SENTENCE, 93638, "row", labels=[1])] * batches.MIN_BATCHES_FOR_WORKERS
    settings = batches.LoaderSettings(features=FeatureSettings(), data_workers=1)
    with signals.stop_on_signals(), pytest.raises(signals.Stopped):
        for _ in batches.data_loader(samples, 1, settings, train=False):
            pass
    gc.collect()
    assert unraisable == []


# ---- one line at every write -------------------------------------------------------------------------


def test_disk_full_at_the_first_save_is_one_line(tmp_path, cli):
    with small_file_system(tmp_path, "24k") as full:
        status, log = cli(train.main, SMALL + ["--train_files", LDC, "--epochs", "1",
                                               "--checkpoint_dir", str(full / "ckpt")])  # fmt: skip
        assert status == 1, log
        assert log.splitlines()[-1] == (
            f"E cannot write checkpoint {full}/ckpt/train-1 (No space left on device); no earlier checkpoint"
        )
        assert not [n for n in os.listdir(full / "ckpt") if ".tmp-" in n]  # no half-written file left


def test_disk_full_during_export_and_transcription_is_one_line(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1)
    before = tree(ckpt)
    with small_file_system(tmp_path, "20k") as full:
        status, log = cli(export.main, ["--checkpoint_dir", ckpt, "--export_dir", str(full / "model")])
        assert status == 1, log
        assert log.splitlines()[-1] == f"E {full}/model/output_graph.tflite: No space left on device"
        (full / "filler").write_bytes(b"\0" * (os.statvfs(full).f_bavail * os.statvfs(full).f_frsize))
        shutil.copy(LDC_WAV, tmp_path / "speech.wav")
        status, log = cli(transcribe.main, ["--checkpoint_dir", ckpt, "--src", str(tmp_path / "speech.wav"),
                                            "--dst", str(full / "speech.tlog")])  # fmt: skip
        assert status == 1, log
        assert f"E cannot write .tlog files in {full} (No space left on device)" in log
    assert tree(ckpt) == before


@pytest.mark.parametrize("what", ["checkpoint_dir", "summary_dir", "feature_cache", "test_output_file",
                                  "export_dir", "tlog"])  # fmt: skip
def test_a_read_only_destination_fails_before_any_work_in_one_line(what, tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1, name="model")
    before = tree(ckpt)
    with small_file_system(tmp_path, "1m", read_only=True) as ro:
        base = SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", str(tmp_path / "run")]
        main, argv, expected = {
            "checkpoint_dir": (train.main, SMALL + ["--train_files", LDC, "--checkpoint_dir", str(ro / "c")],
                               f"E cannot write to the checkpoint directory {ro}/c (Read-only file system)"),
            "summary_dir": (train.main, base + ["--summary_dir", str(ro / "s")],
                            f"E --summary_dir {ro}/s: cannot write there (Read-only file system)"),
            "feature_cache": (train.main, base + ["--feature_cache", str(ro / "f")],
                              f"E --feature_cache {ro}/f: cannot write there (Read-only file system)"),
            "test_output_file": (train.main, base + ["--test_files", LDC, "--test_output_file", str(ro / "t.json")],
                                 f"E --test_output_file {ro}/t.json: cannot write there (Read-only file system)"),
            "export_dir": (export.main, ["--checkpoint_dir", ckpt, "--export_dir", str(ro / "e")],
                           f"E {ro}/e: Read-only file system"),
            "tlog": (transcribe.main, ["--checkpoint_dir", ckpt, "--src", LDC_WAV, "--dst", str(ro / "x.tlog")],
                     f"E cannot write .tlog files in {ro} (Read-only file system)"),
        }[what]  # fmt: skip
        status, log = cli(main, argv)
        assert status == 1, log
        assert log.splitlines()[-1] == expected
        assert "STARTING Optimization" not in log
    assert tree(ckpt) == before
    assert not [name for _, _, names in os.walk(tmp_path / "run") for name in names if "train-" in name]


def test_a_feature_cache_that_names_a_file_is_one_line(tmp_path, cli):
    (tmp_path / "cache").write_text("my notes\n")
    status, log = cli(train.main, SMALL + ["--train_files", LDC, "--checkpoint_dir", str(tmp_path / "c"),
                                           "--feature_cache", str(tmp_path / "cache")])  # fmt: skip
    assert status == 1, log
    assert log.splitlines()[-1] == f"E --feature_cache {tmp_path}/cache: a file, not a directory"
    assert (tmp_path / "cache").read_text() == "my notes\n"


def test_a_scorer_of_random_bytes_is_one_line(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1)
    (tmp_path / "random.scorer").write_bytes(np.random.default_rng(0).bytes(5000))
    status, log = cli(evaluate.main, SMALL + ["--checkpoint_dir", ckpt, "--test_files", LDC,
                                              "--scorer_path", str(tmp_path / "random.scorer")])  # fmt: skip
    assert status == 1, log
    last = log.splitlines()[-1]
    assert last.startswith(f"E {tmp_path}/random.scorer: KenLM cannot read it: neither a Coqui scorer package nor "
                           "a KenLM model (")  # fmt: skip
    assert "Traceback" not in log


# ---- batch jobs survive bad items --------------------------------------------------------------------


def test_transcribe_skips_bad_files_finishes_the_rest_and_exits_1_with_a_count(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1, name="model")
    folder = tmp_path / "audio"
    folder.mkdir()
    with open(LDC_WAV, "rb") as f:
        wav = f.read()
    for i in range(4):
        (folder / f"good{i}.wav").write_bytes(wav)
    (folder / "cut.wav").write_bytes(wav[:30000])  # a copy that stopped: its header promises more than it holds
    soundfile.write(folder / "tiny.wav", np.zeros(272, np.int16), 16000)  # shorter than one feature window
    (folder / "notes.wav").write_text("not audio\n")
    before = tree(folder)
    status, log = cli(transcribe.main, ["--checkpoint_dir", ckpt, "--src", str(folder), "--beam_width", "4"])
    assert status == 1, log
    assert (
        f"E {folder}/tiny.wav is too short to transcribe: 17 ms, less than one feature window (32 ms); skipped" in log
    )
    assert f"E unreadable audio {folder}/notes.wav (Error opening '{folder}/notes.wav': Format not recognised.); " \
           "skipped" in log  # fmt: skip
    assert f"E truncated audio {folder}/cut.wav: its header promises 93594 bytes of samples, the file holds " \
           "29956; skipped" in log  # fmt: skip
    assert log.splitlines()[-1] == "E 3 of 7 file(s) skipped (reasons above); 4 .tlog file(s) written"
    assert sorted(n for n in os.listdir(folder) if n.endswith(".tlog")) == [
        "good0.tlog", "good1.tlog", "good2.tlog", "good3.tlog"]  # fmt: skip
    assert {k: v for k, v in tree(folder).items() if not k.endswith(".tlog")} == before


# ---- bounded memory ----------------------------------------------------------------------------------


def test_an_utterance_over_the_memory_limit_is_refused_by_name_before_training(tmp_path, cli):
    speech = load_audio(LDC_WAV, 16000)
    soundfile.write(tmp_path / "long.wav", np.tile(speech, 40), 16000, subtype="PCM_16")  # 2 minutes
    text = " ".join([LDC_SENTENCE] * 40)
    (tmp_path / "long.csv").write_text(f"wav_filename,wav_filesize,transcript\nlong.wav,1,{text}\n")
    ckpt = tmp_path / "ckpt"
    status, log = cli(train.main, ["--alphabet_config_path", ALPHABET, "--n_hidden", "2048", "--train_files",
                                   str(tmp_path / "long.csv"), "--checkpoint_dir", str(ckpt),
                                   "--max_batch_memory", "1G"])  # fmt: skip
    assert status == 1, log
    assert log.splitlines()[-2:] == [
        "E 1 sample(s) of --train_files too long for --max_batch_memory 1.0 GiB at --n_hidden 2048 (split them into "
        "shorter utterances, or raise the limit):",
        f"    {tmp_path}/long.csv, row 2: {tmp_path}/long.wav (117 s) needs about 1.8 GiB for one training step",
    ]
    assert not ckpt.exists()
    # the same file fits the default limit, and a batch of them is refused with the batch size that fits
    shutil.copy(tmp_path / "long.wav", tmp_path / "long2.wav")
    (tmp_path / "two.csv").write_text(f"wav_filename,wav_filesize,transcript\nlong.wav,1,{text}\nlong2.wav,2,{text}\n")
    status, log = cli(train.main, ["--alphabet_config_path", ALPHABET, "--n_hidden", "2048", "--train_files",
                                   str(tmp_path / "two.csv"), "--checkpoint_dir", str(ckpt), "--train_batch_size",
                                   "2", "--max_batch_memory", "2560M"])  # fmt: skip
    assert status == 1, log
    assert log.splitlines()[-1] == (
        "E a batch of --train_files needs about 3.1 GiB for one training step, over --max_batch_memory 2.5 GiB "
        f"(--train_batch_size 2, its longest sample {tmp_path}/long.wav, 117 s): about --train_batch_size 1 fits"
    )
    assert not ckpt.exists()


def test_without_the_flag_the_bound_is_what_this_process_may_use(tmp_path, monkeypatch, cli):
    """--max_batch_memory left out: 80% of the memory available now (a container's limit included), not a
    constant that a small machine cannot hold."""
    speech = load_audio(LDC_WAV, 16000)
    soundfile.write(tmp_path / "long.wav", np.tile(speech, 40), 16000, subtype="PCM_16")
    text = " ".join([LDC_SENTENCE] * 40)
    (tmp_path / "long.csv").write_text(f"wav_filename,wav_filesize,transcript\nlong.wav,1,{text}\n")
    monkeypatch.setattr(step_memory, "available_memory", lambda: 2 << 30)  # a 2 GiB container
    argv = ["--alphabet_config_path", ALPHABET, "--n_hidden", "2048", "--train_files", str(tmp_path / "long.csv"),
            "--checkpoint_dir", str(tmp_path / "ckpt"), "--epochs", "0", "--skip_batch_test", "true"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 1, log
    assert "E 1 sample(s) of --train_files too long for 1.6 GiB, 80% of the 2.0 GiB available to this process " \
           "(--max_batch_memory) at --n_hidden 2048" in log  # fmt: skip
    status, log = cli(train.main, [*argv, "--max_batch_memory", "3G"])  # the flag still decides when given
    assert status == 0, log


def test_the_memory_available_is_the_smaller_of_the_machines_and_the_cgroups(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       25000000 kB\nMemAvailable:    8388608 kB\n")  # 8 GiB
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(f"{4 << 30}\n")
    (v2 / "memory.current").write_text(f"{1 << 30}\n")
    assert available_memory(str(v2), str(meminfo)) == 3 << 30  # the cgroup's 4 GiB, 1 GiB of it in use
    (v2 / "memory.max").write_text("max\n")
    assert available_memory(str(v2), str(meminfo)) == 8 << 30
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2 << 30}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{1 << 29}\n")
    assert available_memory(str(v1.parent), str(meminfo)) == (2 << 30) - (1 << 29)
    assert available_memory(str(tmp_path / "none"), str(tmp_path / "none")) is None


# ---- one writer per checkpoint directory --------------------------------------------------------------


def test_a_second_training_run_on_the_same_directory_is_refused(tmp_path, cli):
    ckpt = tmp_path / "ckpt"
    child = start(SMALL + ["--train_files", repeated_csv(tmp_path, 3), "--epochs", "100000", "--checkpoint_dir",
                           str(ckpt)])  # fmt: skip
    try:
        wait_for(child, "Finished training epoch 1")  # so epoch 0's checkpoint is there for the reader
        child.send_signal(signal.SIGSTOP)  # frozen, the run still holds its lock, and its files stay still
        before = tree(ckpt)
        holder = json.loads((ckpt / lock.LOCK_NAME).read_text())
        assert holder["pid"] == child.pid
        status, log = cli(train.main, SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", str(ckpt)])
        assert status == 1, log
        assert log.splitlines()[-1] == (
            f"E {ckpt} is in use by another training run (process {child.pid} on {holder['host']}, since "
            f"{holder['since']}): two runs would overwrite each other's checkpoints. Wait for it to end, or if it is "
            f"gone, delete {ckpt}/train.lock"
        )
        # readers are not blocked
        status, log = cli(evaluate.main, SMALL + ["--checkpoint_dir", str(ckpt), "--test_files", LDC])
        assert status == 0, log
        assert tree(ckpt) == before  # neither the refused run nor the reader changed a thing
    finally:
        child.kill()
        child.wait()
    # the killed run's lock is stale: the next run takes it over and resumes
    status, log = cli(train.main, SMALL + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", str(ckpt)])
    assert status == 0, log
    assert f"W Taking over {ckpt}/train.lock: its process {child.pid} on {holder['host']} is gone (it crashed or " \
           "was killed)" in log  # fmt: skip
    assert not (ckpt / lock.LOCK_NAME).exists()


# ---- the surprises -------------------------------------------------------------------------------------


def test_an_alphabet_with_a_byte_order_mark_reads_as_without(tmp_path, cli):
    with open(ALPHABET, "rb") as f:
        (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + f.read())
    from coqui_stt_training.model.alphabet import load_alphabet

    assert load_alphabet(str(tmp_path / "bom.txt")).labels == load_alphabet(ALPHABET).labels


def test_a_missing_run_state_is_named(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=2)
    os.remove(os.path.join(ckpt, "best_dev-2.json"))
    before = digest(ckpt)
    status, log = cli(evaluate.main, SMALL + ["--checkpoint_dir", ckpt, "--test_files", LDC])
    assert status == 0, log
    assert (
        log.count(
            f"W {ckpt}/best_dev-2.json is missing: the data of {ckpt}/best_dev-2.safetensors cannot be "
            "checked, and its run state (position in the run, histories, exact learning rate) is lost"
        )
        == 1
    )
    assert digest(ckpt) == before


def test_spaces_around_transcripts_are_removed_with_a_count(tmp_path, cli):
    (tmp_path / "spaced.csv").write_text(
        f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1, {LDC_SENTENCE} \n{LDC_WAV},2,{LDC_SENTENCE}\n"
        f"{LDC_WAV},3,she  had your dark suit\n"
    )
    status, log = cli(train.main, SMALL + ["--train_files", str(tmp_path / "spaced.csv"), "--epochs", "1",
                                           "--checkpoint_dir", str(tmp_path / "c")])  # fmt: skip
    assert status == 0, log
    assert (f"W --train_files: 2 transcript(s) had leading, trailing or repeated spaces, removed (first: "
            f"{tmp_path}/spaced.csv, row 2)") in log  # fmt: skip


def test_a_transcript_in_the_other_unicode_form_gets_the_hint(tmp_path, cli):
    (tmp_path / "alphabet.txt").write_text("".join(c + "\n" for c in " abcdefghijklmnopqrstuvwxyzé'"), "utf-8")
    (tmp_path / "nfd.csv").write_text(f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1,cafe\u0301\n", "utf-8")
    status, log = cli(train.main, ["--alphabet_config_path", str(tmp_path / "alphabet.txt"), "--train_files",
                                   str(tmp_path / "nfd.csv"), "--checkpoint_dir", str(tmp_path / "c")])  # fmt: skip
    assert status == 1, log
    assert log.splitlines()[-1].endswith(
        "Check that your alphabet contains all characters in the corpus. Its Unicode NFC form fits the alphabet: "
        "normalise the transcripts to NFC."
    )


def test_a_multi_code_point_label_is_warned_about_once_with_the_right_hint(tmp_path, cli):
    (tmp_path / "alphabet.txt").write_text(
        "".join(c + "\n" for c in [" ", *"abcdefghijklmnopqrstuvwxyz'", "e\u0301", "ch"]), "utf-8"
    )
    status, log = cli(train.main, ["--alphabet_config_path", str(tmp_path / "alphabet.txt"), "--n_hidden", "24",
                                   "--train_files", LDC, "--test_files", LDC, "--epochs", "1",
                                   "--export_beam_width", "4", "--checkpoint_dir", str(tmp_path / "c")])  # fmt: skip
    assert status == 0, log
    alphabet = tmp_path / "alphabet.txt"
    decomposed, composed = "e\u0301", "\u00e9"
    assert log.count(f"W {alphabet}: label 28 {decomposed!r} is 2 code points; transcripts are matched one code "
                     f"point at a time, so it can never match (it is {composed!r} in Unicode NFD: normalise the "
                     "alphabet (and the transcripts) to NFC)") == 1  # fmt: skip
    assert (
        log.count(
            f"W {alphabet}: label 29 'ch' is 2 code points; transcripts are matched one code point at a "
            "time, so it can never match (split it into its code points, or use --bytes_output_mode)"
        )
        == 1
    )


def test_every_file_a_run_writes_has_the_same_mode(tmp_path, cli):
    ckpt = trained(tmp_path, cli, epochs=1)
    umask = os.umask(0)
    os.umask(umask)
    modes = {name: stat.S_IMODE(os.stat(os.path.join(ckpt, name)).st_mode) for name in os.listdir(ckpt)
             if os.path.isfile(os.path.join(ckpt, name))}  # fmt: skip
    assert set(modes.values()) == {0o666 & ~umask}, modes
