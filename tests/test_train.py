"""The documented commands, end to end on LDC93S1 (small model, few epochs, so it stays fast)."""

import errno
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile

from coqui_stt_training import evaluate, train, training_graph_inference
from coqui_stt_training.checkpoints import store
from coqui_stt_training.system import atomic_files
from coqui_stt_training.training import trainer
from tests.helpers import ALPHABET, FIXTURES, LDC, LDC_SENTENCE, LDC_WAV, RUSSIAN, SMOKE, digest

COMMON = ["--alphabet_config_path", ALPHABET, "--n_hidden", "32", "--show_progressbar", "false",
          "--export_beam_width", "16"]  # fmt: skip
RU_CSV, RU_ALPHABET = os.path.join(RUSSIAN, "ru.csv"), os.path.join(RUSSIAN, "alphabet.ru")
COQUI_ENGLISH = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")
COQUI_RUSSIAN = os.path.join(FIXTURES, "ru-h100-drop1", "checkpoint")
QUIET = ["--show_progressbar", "false", "--export_beam_width", "16"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def logged_losses(log, what):
    """The losses of 'I Finished <what> epoch N ... - loss: X' lines, in order."""
    return [float(line.rsplit(" ", 1)[1]) for line in log.splitlines() if line.startswith(f"I Finished {what} epoch")]


def tensors(prefix):
    ckpt = store.open_checkpoint(prefix)
    return {name: ckpt.get(name) for name in ckpt.names()}


def test_train_resume_and_evaluate(tmp_path, cli):
    ckpt, report = str(tmp_path / "ckpt"), str(tmp_path / "out.json")
    argv = COMMON + ["--train_files", LDC, "--dev_files", LDC, "--test_files", LDC, "--epochs", "12",
                     "--learning_rate", "0.005", "--checkpoint_dir", ckpt, "--test_output_file", report]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    dev_losses = logged_losses(log, "validating")
    assert len(dev_losses) == 12
    assert dev_losses[-1] < 0.8 * dev_losses[0]
    assert "Test on " in log
    assert "Best WER:" in log
    assert "I FINISHED optimization" in log
    files = set(os.listdir(ckpt))
    assert {"flags.txt", "alphabet.txt", "checkpoint", "best_dev_checkpoint", "train-12.safetensors"} <= files
    assert read_json(os.path.join(ckpt, "flags.txt"))["n_hidden"] == 32
    results = read_json(report)
    assert set(results[0]) == {"wav_filename", "src", "res", "loss", "char_distance", "char_length", "word_distance",
                               "word_length", "cer", "wer"}  # fmt: skip
    assert results[0]["src"] == LDC_SENTENCE

    status, log = cli(train.main, COMMON + ["--train_files", LDC, "--dev_files", LDC, "--epochs", "1",
                                            "--checkpoint_dir", ckpt])  # fmt: skip
    assert status == 0, log
    assert "Loading best validating checkpoint from" in log
    loaded_step = int(log.split("Loading best validating checkpoint from ")[1].split("\n")[0].rsplit("-", 1)[1])
    assert f"train-{loaded_step + 1}.safetensors" in os.listdir(ckpt)  # the step continues from the checkpoint

    status, log = cli(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "16"])
    assert status == 0, log
    assert "Test on " in log
    assert "WARNING" not in log  # n_hidden 32 taken from flags.txt, as Coqui does; no --n_hidden given to warn about


def test_bad_data_fails_before_touching_an_existing_checkpoint(tmp_path, cli):
    ckpt = str(tmp_path / "ckpt")
    status, log = cli(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt])
    assert status == 0, log
    before = digest(ckpt)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1,HELLO\n")
    status, log = cli(train.main, COMMON + ["--train_files", str(bad), "--epochs", "1", "--checkpoint_dir", ckpt])
    assert status == 1
    assert "bad.csv, row 2" in log
    assert "missing characters are: ['E', 'H', 'L', 'O']" in log
    assert digest(ckpt) == before


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["--no_such_flag", "1"], 2, "unrecognized arguments: --no_such_flag"),
        (["--load_train", "sometimes"], 2, "invalid choice: 'sometimes'"),
        (
            ["--train_files", LDC, "--checkpoint_dir", "/nonexistent/ckpt", "--load_train", "best"],
            1,
            "All initialization methods failed",
        ),
    ],
)
def test_user_errors_are_one_line(argv, status, message, cli):
    code, log = cli(train.main, COMMON + argv)
    assert code == status
    errors = [line for line in log.splitlines() if line.startswith(("E ", "usage", "python -m"))]
    assert len([line for line in errors if message in line]) == 1


def test_evaluate_without_checkpoint_directory(tmp_path, cli):
    argv = ["--checkpoint_dir", str(tmp_path / "none"), "--test_files", LDC, "--alphabet_config_path", ALPHABET]
    status, log = cli(evaluate.main, argv)
    assert status == 1
    assert "Missing checkpoint directory" in log


@pytest.mark.parametrize("folder", ["ldc93s1-h100-e20", "ldc93s1-h100-e20-cudnn"])
def test_evaluate_a_coqui_checkpoint_as_coqui_did(folder, tmp_path, cli):
    """Coqui 1.4.0's own checkpoint through our evaluate: its per-sample loss and its beam-search transcript."""
    report = str(tmp_path / "out.json")
    argv = ["--checkpoint_dir", os.path.join(FIXTURES, folder, "checkpoint"), "--test_files", LDC,
            "--test_output_file", report]  # fmt: skip
    status, log = cli(evaluate.main, argv)
    assert status == 0, log
    ours = read_json(report)[0]
    coquis = read_json(os.path.join(FIXTURES, "ldc93s1-h100-e20", "test_output.json"))[0]
    assert ours["loss"] == pytest.approx(coquis["loss"], rel=1e-3)
    assert ours["res"] == coquis["res"]
    assert ours["cer"] == pytest.approx(coquis["cer"])


# ---- bootstrapping from a pre-trained model (Coqui's TRANSFER_LEARNING.rst) ----------------------


def test_coquis_transfer_flow_then_testing_the_new_model(tmp_path, cli):
    """bin/run-ci-transfer.sh: English model, the same with separate load/save directories, Russian by
    transfer (--drop_source_layers 1), evaluate from the Russian directory. Our transfer run also tests
    its own result in the same invocation (Coqui disabled that)."""
    eng, ru = str(tmp_path / "eng"), str(tmp_path / "ru")
    english = COMMON + ["--train_files", LDC, "--dev_files", LDC, "--test_files", LDC, "--epochs", "2"]
    status, log = cli(train.main, english + ["--checkpoint_dir", eng])
    assert status == 0, log
    status, log = cli(train.main, english + ["--load_checkpoint_dir", eng, "--save_checkpoint_dir", eng,
                                             "--metrics_files", LDC])  # fmt: skip
    assert status == 0, log
    assert "Loading best validating checkpoint from" in log
    assert "I Finished metrics for epoch 1 on " in log
    assert "greedy WER: " in log
    assert ", CER: " in log
    russian = QUIET + ["--n_hidden", "32", "--epochs", "2", "--drop_source_layers", "1", "--alphabet_config_path",
                       RU_ALPHABET, "--load_train", "last", "--train_files", RU_CSV, "--dev_files", RU_CSV,
                       "--test_files", RU_CSV, "--load_checkpoint_dir", eng, "--save_checkpoint_dir", ru]  # fmt: skip
    status, log = cli(train.main, russian)
    assert status == 0, log
    assert "Output layer: 29 classes in the checkpoint, 35 in this model" in log
    assert "re-initialised: layer_6" in log
    assert f"Loading best validating checkpoint from {ru}" in log
    assert f"Test on {RU_CSV}" in log
    status, log = cli(evaluate.main, QUIET + ["--checkpoint_dir", ru, "--test_files", RU_CSV])
    assert status == 0, log
    assert f"Test on {RU_CSV}" in log


@pytest.mark.parametrize("layout", ["separate directories", "one directory"])
def test_restarted_transfer_resumes_instead_of_dropping_again(layout, tmp_path, cli):
    if layout == "one directory":
        save_dir = str(shutil.copytree(COQUI_ENGLISH, tmp_path / "ckpt"))
        dirs = ["--checkpoint_dir", save_dir]
    else:
        save_dir = str(tmp_path / "ru")
        dirs = ["--load_checkpoint_dir", COQUI_ENGLISH, "--save_checkpoint_dir", save_dir]
    command = QUIET + dirs + ["--drop_source_layers", "1", "--alphabet_config_path", RU_ALPHABET, "--train_files",
                              RU_CSV, "--dev_files", RU_CSV, "--epochs", "2"]  # fmt: skip
    status, log = cli(train.main, command)
    assert status == 0, log
    assert "re-initialised: layer_6" in log
    checkpoint_prefix = store.find_checkpoint(save_dir, "best_dev")
    assert checkpoint_prefix.startswith(save_dir)
    status, log = cli(train.main, command)  # the same command again, as after an interruption
    assert status == 0, log
    assert f"Resuming from {checkpoint_prefix}" in log
    assert "--drop_source_layers 1 is not applied again" in log
    assert "Loaded 40 of 40 tensors" in log
    assert "re-initialised" not in log


def test_frozen_source_layers_stay_as_loaded_then_train(tmp_path, cli):
    save_dir = str(tmp_path / "ru")
    argv = QUIET + ["--load_checkpoint_dir", COQUI_ENGLISH, "--save_checkpoint_dir", save_dir, "--drop_source_layers",
                    "2", "--freeze_source_layers", "1", "--alphabet_config_path", RU_ALPHABET, "--train_files",
                    RU_CSV, "--epochs", "2", "--max_to_keep", "2", "--learning_rate", "0.01",
                    "--force_initialize_learning_rate"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    assert "Freezing the layers loaded from the source checkpoint: cudnn_lstm, layer_1, layer_2, layer_3" in log
    assert "Unfreezing" in log
    source = tensors(store.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after_epoch_1, after_epoch_2 = (tensors(os.path.join(save_dir, f"train-{step}")) for step in (21, 22))
    lstm = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/kernel"
    for name in ("layer_1/weights", "layer_3/bias", lstm, "layer_2/weights/Adam"):
        assert (after_epoch_1[name] == source[name]).all(), name
        assert not (after_epoch_2[name] == source[name]).all(), name
    for name in ("layer_5/weights", "layer_6/bias"):
        assert not (after_epoch_1[name] == after_epoch_2[name]).all(), name


def test_kept_layers_learning_rate_scale_zero_keeps_them(tmp_path, cli):
    save_dir = str(tmp_path / "ru")
    argv = QUIET + ["--load_checkpoint_dir", COQUI_ENGLISH, "--save_checkpoint_dir", save_dir, "--drop_source_layers",
                    "1", "--source_layers_lr_scale", "0", "--alphabet_config_path", RU_ALPHABET, "--train_files",
                    RU_CSV, "--epochs", "1"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    source = tensors(store.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after = tensors(os.path.join(save_dir, "train-21"))
    assert (after["layer_5/weights"] == source["layer_5/weights"]).all()
    assert not (after["layer_5/weights/Adam"] == source["layer_5/weights/Adam"]).all()  # gradients still flow


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--freeze_source_layers", "3"], "--freeze_source_layers only apply to transfer learning"),
        (
            ["--drop_source_layers", "1", "--source_layers_lr_scale", "-1"],
            "--source_layers_lr_scale -1.0: must be in [0, inf)",
        ),
    ],
)
def test_transfer_options_are_checked(argv, message, cli):
    code, log = cli(train.main, COMMON + ["--train_files", LDC, "--checkpoint_dir", "/nonexistent"] + argv)
    assert code == 1
    assert f"E {message}" in log


def test_mixed_precision_fine_tunes_a_coqui_checkpoint(tmp_path, cli, monkeypatch):
    """Coqui could not combine --automatic_mixed_precision with a pre-trained checkpoint; autocast changes
    no parameter, so ours loads it, trains, and saves float32 tensors under the same names. (bfloat16 is
    forced here, so that the path runs on any CPU: this model is small enough for software bfloat16.)"""
    monkeypatch.setattr(trainer, "cpu_has_bfloat16_units", lambda: True)
    save_dir = str(tmp_path / "amp")
    argv = QUIET + ["--automatic_mixed_precision", "true", "--load_checkpoint_dir", COQUI_ENGLISH,
                    "--save_checkpoint_dir", save_dir, "--train_files", LDC, "--dev_files", LDC, "--epochs", "4",
                    "--dropout_rate", "0.05"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    dev_losses = logged_losses(log, "validating")
    assert dev_losses[0] < 144.4  # below the source checkpoint's own loss,
    assert dev_losses[-1] < dev_losses[0]  # and falling
    source = tensors(store.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after = tensors(os.path.join(save_dir, "train-24"))
    assert set(after) >= set(source) - {"cudnn_lstm/opaque_kernel"}
    for name in source:
        assert after[name].dtype == source[name].dtype, name


def test_mixed_precision_on_a_cpu_without_bfloat16_units_says_so_and_trains_in_float32(tmp_path, cli, monkeypatch):
    """Software bfloat16 is 50x slower than float32 or worse: without the units the flag is a trap, so the
    run says so in one line and trains exactly as without the flag."""
    monkeypatch.setattr(trainer, "cpu_has_bfloat16_units", lambda: False)
    runs = {}
    for amp in ("true", "false"):
        save_dir = str(tmp_path / amp)
        argv = QUIET + ["--automatic_mixed_precision", amp, "--load_checkpoint_dir", COQUI_ENGLISH,
                        "--save_checkpoint_dir", save_dir, "--train_files", LDC, "--epochs", "2"]  # fmt: skip
        status, runs[amp] = cli(train.main, argv)
        assert status == 0, runs[amp]
    warning = [line for line in runs["true"].splitlines() if "bfloat16" in line]
    assert warning == [
        "W --automatic_mixed_precision: this CPU has no bfloat16 matrix units (AVX512_BF16 or AMX), and bfloat16 "
        "there is 50x slower than float32 or worse (docs/benchmarks.md): training in float32"
    ]
    assert "bfloat16" not in runs["false"]
    assert logged_losses(runs["true"], "training") == logged_losses(runs["false"], "training")
    amp, plain = (tensors(store.find_checkpoint(str(tmp_path / d), "train")) for d in ("true", "false"))
    assert amp.keys() == plain.keys()
    assert all(np.array_equal(amp[name], plain[name]) for name in plain)


# ---- never trust input, never lose work ---------------------------------------------------------


class Exploit:
    """Unpickling this creates a file: proof that a loader ran code from a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("layout", ["named by the state file", "a lone model.pt"])
def test_a_malicious_pickle_is_refused_without_running(layout, tmp_path, cli):
    ckpt, marker = tmp_path / "ckpt", tmp_path / "pwned"
    ckpt.mkdir()
    payload = pickle.dumps(Exploit(str(marker)), protocol=4)
    if layout == "a lone model.pt":
        (ckpt / "model.pt").write_bytes(payload)
        bad = ckpt / "model.pt"
    else:
        (ckpt / "best_dev-1.safetensors").write_bytes(payload)
        (ckpt / "best_dev_checkpoint").write_text('model_checkpoint_path: "best_dev-1"\n')
        bad = ckpt / "best_dev-1.safetensors"
    message = (f"E {bad}: a Python pickle (PyTorch's torch.save format), not a checkpoint of ours; refusing to load "
               "it, because unpickling runs whatever code")  # fmt: skip
    for main, extra in ((train.main, ["--train_files", LDC, "--epochs", "1"]), (evaluate.main, ["--test_files", LDC])):
        status, log = cli(main, COMMON + extra + ["--checkpoint_dir", str(ckpt)])
        assert status == 1, log
        assert message in log
    assert not marker.exists()


def test_a_checkpoint_of_another_alphabet_of_the_same_size_is_refused(tmp_path, cli):
    ckpt = str(tmp_path / "ckpt")
    status, log = cli(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt])
    assert status == 0, log
    with open(ALPHABET, encoding="utf-8") as f:
        labels = f.read().replace("a\n", "@\n").replace("b\n", "a\n").replace("@\n", "b\n")
    swapped = tmp_path / "swapped.txt"
    swapped.write_text(labels, encoding="utf-8")
    message = (
        f"E {ckpt}/train-1 was trained for another alphabet ({ckpt}/train-1.json: 28 labels; this run: "
        "28 labels; label 1 is 'a' there and 'b' here). Use the checkpoint's alphabet to fine-tune, or "
        "--drop_source_layers 1 to transfer to a new one"
    )
    argv = [
        "--n_hidden",
        "32",
        "--alphabet_config_path",
        str(swapped),
        "--checkpoint_dir",
        ckpt,
        "--load_train",
        "last",
    ]
    status, log = cli(train.main, argv + ["--train_files", LDC, "--epochs", "1"])
    assert status == 1, log
    assert message in log
    status, log = cli(evaluate.main, argv[:-2] + ["--load_evaluate", "last", "--test_files", LDC])
    assert status == 1, log
    assert message in log


def test_a_non_finite_loss_skips_the_step_and_names_the_file(tmp_path, cli):
    broken = tmp_path / "nan.wav"
    wave = np.full(16000 * 3, 0.01, np.float32)
    wave[1000] = np.nan
    soundfile.write(broken, wave, 16000, subtype="FLOAT")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1,she had your dark suit\n{broken},2,nan\n")
    ckpt = str(tmp_path / "ckpt")
    status, log = cli(train.main, COMMON + ["--train_files", str(csv_path), "--epochs", "2", "--checkpoint_dir", ckpt])
    assert status == 0, log
    assert log.count(f"W The following files caused an infinite (or NaN) loss: {broken}; step skipped") == 2
    train_losses = logged_losses(log, "training")
    assert len(train_losses) == 2
    assert np.isfinite(train_losses).all()
    saved = tensors(os.path.join(ckpt, "train-2"))  # two good steps; the weights stayed finite
    for name, value in saved.items():
        assert np.isfinite(value).all(), name


def test_disk_full_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, cli):
    ckpt, real_write, calls = str(tmp_path / "ckpt"), atomic_files._write_bytes, []

    def full_after_one(path, chunks):
        if ".safetensors" in path:
            calls.append(path)
        if len(calls) > 1:
            with open(path, "wb") as f:
                f.write(b"\0" * 100)  # what fitted before the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_write(path, chunks)

    argv = COMMON + ["--train_files", LDC, "--epochs", "3", "--checkpoint_dir", ckpt]
    with monkeypatch.context() as patch:
        patch.setattr(atomic_files, "_write_bytes", full_after_one)
        status, log = cli(train.main, argv)
    assert status == 1, log
    assert (
        f"E cannot write checkpoint {ckpt}/train-2 (No space left on device); the last good one, "
        f"{ckpt}/train-1, is unchanged" in log
    )
    assert list(digest(ckpt)) == ["alphabet.txt", "checkpoint", "flags.txt", "train-1.json", "train-1.safetensors"]
    status, log = cli(train.main, argv)
    assert status == 0, log
    assert f"Resuming the interrupted run from {ckpt}/train-1" in log


def test_an_unwritable_checkpoint_directory_fails_before_training(tmp_path, cli):
    (tmp_path / "file").write_text("in the way")
    ckpt = str(tmp_path / "file" / "ckpt")
    status, log = cli(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--save_checkpoint_dir", ckpt])
    assert status == 1, log
    assert f"E cannot write to the checkpoint directory {ckpt} (Not a directory)" in log
    assert "STARTING Optimization" not in log


def test_one_shot_infer_prints_the_checkpoints_transcript(cli):
    argv = ["--checkpoint_dir", COQUI_RUSSIAN, "--test_files", RU_CSV, "--export_beam_width", "64"]
    status, log = cli(evaluate.main, argv)
    assert status == 0, log
    expected = log.split(' - res: "')[1].split('"')[0]
    assert expected.strip()
    wav = os.path.join(RUSSIAN, "ru.wav")
    status, log = cli(training_graph_inference.main, ["--checkpoint_dir", COQUI_RUSSIAN, "--one_shot_infer", wav,
                                                      "--beam_width", "64"])  # fmt: skip
    assert status == 0, log
    assert expected in log.splitlines()
    status, log = cli(training_graph_inference.main, ["--checkpoint_dir", COQUI_RUSSIAN, "--one_shot_infer",
                                                      "nothere.wav"])  # fmt: skip
    assert status == 1
    assert "E Path specified in --one_shot_infer is not a valid file: nothere.wav" in log
    # --scorer_path is used, as in Coqui: a scorer for the other kind of model is refused
    bytes_scorer = os.path.join(SMOKE, "pruned_lm.bytes.scorer")
    status, log = cli(training_graph_inference.main, ["--checkpoint_dir", COQUI_RUSSIAN, "--one_shot_infer", wav,
                                                      "--scorer_path", bytes_scorer])  # fmt: skip
    assert status == 1, log
    assert "a UTF-8-mode scorer is for --bytes_output_mode models" in log


def test_disk_full_at_a_best_dev_save_names_the_intact_train_checkpoint(tmp_path, monkeypatch, cli):
    ckpt, real_write = str(tmp_path / "ckpt"), atomic_files._write_bytes

    def full_for_best_dev(path, chunks):
        if os.path.basename(path).startswith("best_dev"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_write(path, chunks)

    argv = COMMON + ["--train_files", LDC, "--dev_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt]
    with monkeypatch.context() as patch:
        patch.setattr(atomic_files, "_write_bytes", full_for_best_dev)
        status, log = cli(train.main, argv)
    assert status == 1, log
    step = store.read_run_state(store.find_checkpoint(ckpt, "train")).global_step
    assert log.splitlines()[-1] == (
        f"E cannot write checkpoint {ckpt}/best_dev-{step} (No space left on device); the last good one, "
        f"{ckpt}/train-{step}, is unchanged"
    )
