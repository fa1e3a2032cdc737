"""The documented commands, end to end on LDC93S1 (small model, few epochs, so it stays fast)."""

import json
import os

import pytest
from cli import run, sha256

from coqui_stt_training import evaluate, train

SMOKE = os.path.join(os.path.dirname(__file__), "..", "data", "smoke_test")
ALPHABET = os.path.join(os.path.dirname(__file__), "..", "data", "alphabet.txt")
LDC = os.path.join(SMOKE, "ldc93s1.csv")
COMMON = [
    "--alphabet_config_path",
    ALPHABET,
    "--n_hidden",
    "32",
    "--show_progressbar",
    "false",
    "--export_beam_width",
    "16",
]


def digest(directory):
    return {
        name: sha256(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if os.path.isfile(os.path.join(directory, name))
    }


def test_train_resume_and_evaluate(tmp_path, capsys):
    ckpt, report = str(tmp_path / "ckpt"), str(tmp_path / "out.json")
    status, log = run(
        train.main,
        COMMON
        + [
            "--train_files",
            LDC,
            "--dev_files",
            LDC,
            "--test_files",
            LDC,
            "--epochs",
            "12",
            "--learning_rate",
            "0.005",
            "--checkpoint_dir",
            ckpt,
            "--test_output_file",
            report,
        ],
        capsys,
    )
    assert status == 0, log
    dev_losses = [
        float(line.rsplit(" ", 1)[1]) for line in log.splitlines() if line.startswith("I Finished validating epoch")
    ]
    assert len(dev_losses) == 12 and dev_losses[-1] < 0.8 * dev_losses[0]
    assert "Test on " in log and "Best WER:" in log and "I FINISHED optimization" in log
    files = set(os.listdir(ckpt))
    assert {"flags.txt", "alphabet.txt", "checkpoint", "best_dev_checkpoint", "train-12.safetensors"} <= files
    assert json.load(open(os.path.join(ckpt, "flags.txt")))["n_hidden"] == 32
    results = json.load(open(report, encoding="utf-8"))
    assert set(results[0]) == {
        "wav_filename",
        "src",
        "res",
        "loss",
        "char_distance",
        "char_length",
        "word_distance",
        "word_length",
        "cer",
        "wer",
    }
    assert results[0]["src"] == "she had your dark suit in greasy wash water all year"

    status, log = run(
        train.main,
        COMMON + ["--train_files", LDC, "--dev_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt],
        capsys,
    )
    assert status == 0 and "Loading best validating checkpoint from" in log
    loaded_step = int(log.split("Loading best validating checkpoint from ")[1].split("\n")[0].rsplit("-", 1)[1])
    assert f"train-{loaded_step + 1}.safetensors" in os.listdir(ckpt)  # the step continues from the checkpoint

    status, log = run(
        evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "16"], capsys
    )
    assert status == 0 and "Test on " in log
    assert "n_hidden has been overriden with the checkpoint value" in log  # taken from flags.txt, as Coqui does


def test_bad_data_fails_before_touching_an_existing_checkpoint(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    assert run(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt], capsys)[0] == 0
    before = digest(ckpt)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"wav_filename,wav_filesize,transcript\n{os.path.abspath(SMOKE)}/LDC93S1.wav,1,HELLO\n")
    status, log = run(
        train.main, COMMON + ["--train_files", str(bad), "--epochs", "1", "--checkpoint_dir", ckpt], capsys
    )
    assert status == 1 and "bad.csv, row 2" in log and "missing characters are: ['E', 'H', 'L', 'O']" in log
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
def test_user_errors_are_one_line(argv, status, message, capsys):
    code, log = run(train.main, COMMON + argv, capsys)
    assert code == status and message in log
    errors = [line for line in log.splitlines() if line.startswith(("E ", "usage", "python -m"))]
    assert len([line for line in errors if message in line]) == 1


def test_evaluate_without_checkpoint_directory(tmp_path, capsys):
    status, log = run(
        evaluate.main,
        ["--checkpoint_dir", str(tmp_path / "none"), "--test_files", LDC, "--alphabet_config_path", ALPHABET],
        capsys,
    )
    assert status == 1 and "Missing checkpoint directory" in log


@pytest.mark.parametrize("folder", ["ldc93s1-h100-e20", "ldc93s1-h100-e20-cudnn"])
def test_evaluate_a_coqui_checkpoint_as_coqui_did(folder, tmp_path, capsys):
    """Coqui 1.4.0's own checkpoint through our evaluate: its per-sample loss and its beam-search transcript."""
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "coqui-1.4.0")
    report = str(tmp_path / "out.json")
    status, log = run(
        evaluate.main,
        [
            "--checkpoint_dir",
            os.path.join(fixtures, folder, "checkpoint"),
            "--test_files",
            LDC,
            "--test_output_file",
            report,
        ],
        capsys,
    )
    assert status == 0, log
    ours = json.load(open(report, encoding="utf-8"))[0]
    coquis = json.load(open(os.path.join(fixtures, "ldc93s1-h100-e20", "test_output.json"), encoding="utf-8"))[0]
    assert ours["loss"] == pytest.approx(coquis["loss"], rel=1e-3)
    assert ours["res"] == coquis["res"] and ours["cer"] == pytest.approx(coquis["cer"])


# ---- bootstrapping from a pre-trained model (spec §4, TRANSFER_LEARNING.rst) ---------------------

RUSSIAN = os.path.join(SMOKE, "russian_sample_data")
RU_CSV, RU_ALPHABET = os.path.join(RUSSIAN, "ru.csv"), os.path.join(RUSSIAN, "alphabet.ru")
COQUI_ENGLISH = os.path.join(os.path.dirname(__file__), "fixtures", "coqui-1.4.0", "ldc93s1-h100-e20", "checkpoint")
QUIET = ["--show_progressbar", "false", "--export_beam_width", "16"]


def tensors(prefix):
    from coqui_stt_training.checkpoint import open_checkpoint

    ckpt = open_checkpoint(prefix)
    return {name: ckpt.get(name) for name in ckpt.names()}


def test_coquis_transfer_flow_then_testing_the_new_model(tmp_path, capsys):
    """bin/run-ci-transfer.sh: English model, the same with separate load/save directories, Russian by
    transfer (--drop_source_layers 1), evaluate from the Russian directory. Our transfer run also tests
    its own result in the same invocation (Coqui disabled that)."""
    eng, ru = str(tmp_path / "eng"), str(tmp_path / "ru")
    english = COMMON + ["--train_files", LDC, "--dev_files", LDC, "--test_files", LDC, "--epochs", "2"]
    assert run(train.main, english + ["--checkpoint_dir", eng], capsys)[0] == 0
    status, log = run(
        train.main,
        english + ["--load_checkpoint_dir", eng, "--save_checkpoint_dir", eng, "--metrics_files", LDC],
        capsys,
    )
    assert status == 0 and "Loading best validating checkpoint from" in log
    assert "I Finished metrics for epoch 1 on " in log and "greedy WER: " in log and ", CER: " in log
    status, log = run(
        train.main,
        QUIET
        + [
            "--n_hidden",
            "32",
            "--epochs",
            "2",
            "--drop_source_layers",
            "1",
            "--alphabet_config_path",
            RU_ALPHABET,
            "--load_train",
            "last",
            "--train_files",
            RU_CSV,
            "--dev_files",
            RU_CSV,
            "--test_files",
            RU_CSV,
            "--load_checkpoint_dir",
            eng,
            "--save_checkpoint_dir",
            ru,
        ],
        capsys,
    )
    assert status == 0, log
    assert "Output layer: 29 classes in the checkpoint, 35 in this model" in log and "re-initialised: layer_6" in log
    assert f"Loading best validating checkpoint from {ru}" in log and f"Test on {RU_CSV}" in log
    status, log = run(evaluate.main, QUIET + ["--checkpoint_dir", ru, "--test_files", RU_CSV], capsys)
    assert status == 0 and f"Test on {RU_CSV}" in log


@pytest.mark.parametrize("layout", ["separate directories", "one directory"])
def test_restarted_transfer_resumes_instead_of_dropping_again(layout, tmp_path, capsys):
    if layout == "one directory":
        import shutil

        source = shutil.copytree(COQUI_ENGLISH, tmp_path / "ckpt")
        dirs = ["--checkpoint_dir", str(source)]
        save_dir = str(source)
    else:
        save_dir = str(tmp_path / "ru")
        dirs = ["--load_checkpoint_dir", COQUI_ENGLISH, "--save_checkpoint_dir", save_dir]
    command = (
        QUIET
        + dirs
        + [
            "--drop_source_layers",
            "1",
            "--alphabet_config_path",
            RU_ALPHABET,
            "--train_files",
            RU_CSV,
            "--dev_files",
            RU_CSV,
            "--epochs",
            "2",
        ]
    )
    status, log = run(train.main, command, capsys)
    assert status == 0 and "re-initialised: layer_6" in log
    checkpoint_prefix = train.checkpoint.find_checkpoint(save_dir, "best_dev")
    assert checkpoint_prefix.startswith(save_dir)
    status, log = run(train.main, command, capsys)  # the same command again, as after an interruption
    assert status == 0, log
    assert f"Resuming from {checkpoint_prefix}" in log and "--drop_source_layers 1 is not applied again" in log
    assert "Loaded 40 of 40 tensors" in log and "re-initialised" not in log


def test_frozen_source_layers_stay_as_loaded_then_train(tmp_path, capsys):
    save_dir = str(tmp_path / "ru")
    status, log = run(
        train.main,
        QUIET
        + [
            "--load_checkpoint_dir",
            COQUI_ENGLISH,
            "--save_checkpoint_dir",
            save_dir,
            "--drop_source_layers",
            "2",
            "--freeze_source_layers",
            "1",
            "--alphabet_config_path",
            RU_ALPHABET,
            "--train_files",
            RU_CSV,
            "--epochs",
            "2",
            "--max_to_keep",
            "2",
            "--learning_rate",
            "0.01",
            "--force_initialize_learning_rate",
        ],
        capsys,
    )
    assert status == 0, log
    assert "Freezing the layers loaded from the source checkpoint: cudnn_lstm, layer_1, layer_2, layer_3" in log
    assert "Unfreezing" in log
    source = tensors(train.checkpoint.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after_epoch_1, after_epoch_2 = (tensors(os.path.join(save_dir, f"train-{step}")) for step in (21, 22))
    lstm = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/kernel"
    for name in ("layer_1/weights", "layer_3/bias", lstm, "layer_2/weights/Adam"):
        assert (after_epoch_1[name] == source[name]).all(), name
        assert not (after_epoch_2[name] == source[name]).all(), name
    for name in ("layer_5/weights", "layer_6/bias"):
        assert not (after_epoch_1[name] == after_epoch_2[name]).all(), name


def test_kept_layers_learning_rate_scale_zero_keeps_them(tmp_path, capsys):
    save_dir = str(tmp_path / "ru")
    status, log = run(
        train.main,
        QUIET
        + [
            "--load_checkpoint_dir",
            COQUI_ENGLISH,
            "--save_checkpoint_dir",
            save_dir,
            "--drop_source_layers",
            "1",
            "--source_layers_lr_scale",
            "0",
            "--alphabet_config_path",
            RU_ALPHABET,
            "--train_files",
            RU_CSV,
            "--epochs",
            "1",
        ],
        capsys,
    )
    assert status == 0, log
    source = tensors(train.checkpoint.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after = tensors(os.path.join(save_dir, "train-21"))
    assert (after["layer_5/weights"] == source["layer_5/weights"]).all()
    assert not (after["layer_5/weights/Adam"] == source["layer_5/weights/Adam"]).all()  # gradients still flow


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--freeze_source_layers", "3"], "--freeze_source_layers only apply to transfer learning"),
        (["--drop_source_layers", "1", "--source_layers_lr_scale", "-1"], "--source_layers_lr_scale must be 0 or more"),
    ],
)
def test_transfer_options_are_checked(argv, message, capsys):
    code, log = run(train.main, COMMON + ["--train_files", LDC, "--checkpoint_dir", "/nonexistent"] + argv, capsys)
    assert code == 1 and f"E {message}" in log


def test_mixed_precision_fine_tunes_a_coqui_checkpoint(tmp_path, capsys):
    """Coqui could not combine --automatic_mixed_precision with a pre-trained checkpoint; autocast changes
    no parameter, so ours loads it, trains, and saves float32 tensors under the same names."""
    save_dir = str(tmp_path / "amp")
    status, log = run(
        train.main,
        QUIET
        + [
            "--automatic_mixed_precision",
            "true",
            "--load_checkpoint_dir",
            COQUI_ENGLISH,
            "--save_checkpoint_dir",
            save_dir,
            "--train_files",
            LDC,
            "--dev_files",
            LDC,
            "--epochs",
            "4",
            "--dropout_rate",
            "0.05",
        ],
        capsys,
    )
    assert status == 0, log
    dev_losses = [
        float(line.rsplit(" ", 1)[1]) for line in log.splitlines() if line.startswith("I Finished validating epoch")
    ]
    assert dev_losses[-1] < dev_losses[0] < 144.4  # below the source checkpoint's own loss, and falling
    source = tensors(train.checkpoint.find_checkpoint(COQUI_ENGLISH, "best_dev"))
    after = tensors(os.path.join(save_dir, "train-24"))
    assert set(after) >= set(source) - {"cudnn_lstm/opaque_kernel"}
    assert all(after[name].dtype == source[name].dtype for name in source)


# ---- never trust input, never lose work ---------------------------------------------------------


class Exploit:
    """Unpickling this creates a file: proof that a loader ran code from a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("layout", ["named by the state file", "a lone model.pt"])
def test_a_malicious_pickle_is_refused_without_running(layout, tmp_path, capsys):
    import pickle

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
    for main, extra in ((train.main, ["--train_files", LDC, "--epochs", "1"]), (evaluate.main, ["--test_files", LDC])):
        status, log = run(main, COMMON + extra + ["--checkpoint_dir", str(ckpt)], capsys)
        assert (
            status == 1
            and f"E {bad}: a Python pickle (PyTorch's torch.save format), not a checkpoint of ours; "
            "refusing to load it, because unpickling runs whatever code"
            in log
        ), log
    assert not marker.exists()


def test_a_checkpoint_of_another_alphabet_of_the_same_size_is_refused(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    assert run(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt], capsys)[0] == 0
    labels = open(ALPHABET, encoding="utf-8").read().replace("a\n", "@\n").replace("b\n", "a\n").replace("@\n", "b\n")
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
    status, log = run(train.main, argv + ["--train_files", LDC, "--epochs", "1"], capsys)
    assert status == 1 and message in log, log
    status, log = run(evaluate.main, argv[:-2] + ["--load_evaluate", "last", "--test_files", LDC], capsys)
    assert status == 1 and message in log, log


def test_a_non_finite_loss_skips_the_step_and_names_the_file(tmp_path, capsys):
    import numpy as np
    import soundfile

    broken = tmp_path / "nan.wav"
    wave = np.full(16000 * 3, 0.01, np.float32)
    wave[1000] = np.nan
    soundfile.write(broken, wave, 16000, subtype="FLOAT")
    good = os.path.abspath(os.path.join(SMOKE, "LDC93S1.wav"))
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(f"wav_filename,wav_filesize,transcript\n{good},1,she had your dark suit\n{broken},2,nan\n")
    ckpt = str(tmp_path / "ckpt")
    status, log = run(
        train.main, COMMON + ["--train_files", str(csv_path), "--epochs", "2", "--checkpoint_dir", ckpt], capsys
    )
    assert status == 0, log
    assert log.count(f"W The following files caused an infinite (or NaN) loss: {broken}; step skipped") == 2
    train_losses = [
        float(line.rsplit(" ", 1)[1]) for line in log.splitlines() if line.startswith("I Finished training epoch")
    ]
    assert len(train_losses) == 2 and all(np.isfinite(train_losses))
    saved = tensors(os.path.join(ckpt, "train-2"))  # two good steps; the weights stayed finite
    assert all(np.isfinite(value).all() for value in saved.values())


def test_disk_full_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    import safetensors.numpy

    ckpt, real_save, calls = str(tmp_path / "ckpt"), safetensors.numpy.save_file, []

    def full_after_one(tensors_, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            with open(path, "wb") as f:
                f.write(b"\0" * 100)  # what fitted before the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_save(tensors_, path, *args, **kwargs)

    argv = COMMON + ["--train_files", LDC, "--epochs", "3", "--checkpoint_dir", ckpt]
    with monkeypatch.context() as patch:
        patch.setattr(safetensors.numpy, "save_file", full_after_one)
        status, log = run(train.main, argv, capsys)
    assert (
        status == 1
        and (
            f"E cannot write checkpoint {ckpt}/train-2 (No space left on device); the last good one, "
            f"{ckpt}/train-1, is unchanged"
        )
        in log
    ), log
    assert list(digest(ckpt)) == ["alphabet.txt", "checkpoint", "flags.txt", "train-1.json", "train-1.safetensors"]
    status, log = run(train.main, argv, capsys)
    assert status == 0 and f"Resuming the interrupted run from {ckpt}/train-1" in log, log


def test_an_unwritable_checkpoint_directory_fails_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    ckpt = str(tmp_path / "file" / "ckpt")
    status, log = run(
        train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--save_checkpoint_dir", ckpt], capsys
    )
    assert status == 1 and f"E cannot write to the checkpoint directory {ckpt} (Not a directory)" in log, log
    assert "STARTING Optimization" not in log


def test_one_shot_infer_prints_the_checkpoints_transcript(capsys):
    from coqui_stt_training import training_graph_inference

    russian = os.path.join(os.path.dirname(COQUI_ENGLISH), "..", "ru-h100-drop1", "checkpoint")
    status, log = run(
        evaluate.main, ["--checkpoint_dir", russian, "--test_files", RU_CSV, "--export_beam_width", "64"], capsys
    )
    expected = log.split(' - res: "')[1].split('"')[0]
    wav = os.path.join(os.path.dirname(RU_CSV), "ru.wav")
    status, log = run(
        training_graph_inference.main,
        ["--checkpoint_dir", russian, "--one_shot_infer", wav, "--beam_width", "64"],
        capsys,
    )
    assert status == 0 and expected in log.splitlines() and expected.strip(), log
    status, log = run(
        training_graph_inference.main, ["--checkpoint_dir", russian, "--one_shot_infer", "nothere.wav"], capsys
    )
    assert status == 1 and "E Path specified in --one_shot_infer is not a valid file: nothere.wav" in log
    # --scorer_path is used, as in Coqui: a scorer for the other kind of model is refused
    bytes_scorer = os.path.join(os.path.dirname(__file__), "..", "data", "smoke_test", "pruned_lm.bytes.scorer")
    status, log = run(
        training_graph_inference.main,
        ["--checkpoint_dir", russian, "--one_shot_infer", wav, "--scorer_path", bytes_scorer],
        capsys,
    )
    assert status == 1 and "a UTF-8-mode scorer is for --bytes_output_mode models" in log, log
