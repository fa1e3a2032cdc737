"""The documented commands, end to end on LDC93S1 (small model, few epochs, so it stays fast)."""

import hashlib
import json
import os

import pytest

from coqui_stt_training import evaluate, train

SMOKE = os.path.join(os.path.dirname(__file__), "..", "data", "smoke_test")
ALPHABET = os.path.join(os.path.dirname(__file__), "..", "data", "alphabet.txt")
LDC = os.path.join(SMOKE, "ldc93s1.csv")
COMMON = ["--alphabet_config_path", ALPHABET, "--n_hidden", "32", "--show_progressbar", "false",
          "--export_beam_width", "16"]


def run(main, argv, capsys):
    """Run an entry point; return (exit status, stdout + stderr)."""
    try:
        main(argv)
        status = 0
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out + out.err


def digest(directory):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, name))}


def test_train_resume_and_evaluate(tmp_path, capsys):
    ckpt, report = str(tmp_path / "ckpt"), str(tmp_path / "out.json")
    status, log = run(train.main, COMMON + ["--train_files", LDC, "--dev_files", LDC, "--test_files", LDC,
                                            "--epochs", "12", "--learning_rate", "0.005", "--checkpoint_dir", ckpt,
                                            "--test_output_file", report], capsys)
    assert status == 0, log
    dev_losses = [float(line.rsplit(" ", 1)[1]) for line in log.splitlines()
                  if line.startswith("I Finished validating epoch")]
    assert len(dev_losses) == 12 and dev_losses[-1] < 0.8 * dev_losses[0]
    assert "Test on " in log and "Best WER:" in log and "I FINISHED optimization" in log
    files = set(os.listdir(ckpt))
    assert {"flags.txt", "alphabet.txt", "checkpoint", "best_dev_checkpoint", "train-12.safetensors"} <= files
    assert json.load(open(os.path.join(ckpt, "flags.txt")))["n_hidden"] == 32
    results = json.load(open(report, encoding="utf-8"))
    assert set(results[0]) == {"wav_filename", "src", "res", "loss", "char_distance", "char_length",
                               "word_distance", "word_length", "cer", "wer"}
    assert results[0]["src"] == "she had your dark suit in greasy wash water all year"

    status, log = run(train.main, COMMON + ["--train_files", LDC, "--dev_files", LDC, "--epochs", "1",
                                            "--checkpoint_dir", ckpt], capsys)
    assert status == 0 and "Loading best validating checkpoint from" in log
    loaded_step = int(log.split("Loading best validating checkpoint from ")[1].split("\n")[0].rsplit("-", 1)[1])
    assert f"train-{loaded_step + 1}.safetensors" in os.listdir(ckpt)  # the step continues from the checkpoint

    status, log = run(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "16"],
                      capsys)
    assert status == 0 and "Test on " in log
    assert "n_hidden has been overriden with the checkpoint value" in log  # taken from flags.txt, as Coqui does


def test_bad_data_fails_before_touching_an_existing_checkpoint(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    assert run(train.main, COMMON + ["--train_files", LDC, "--epochs", "1", "--checkpoint_dir", ckpt], capsys)[0] == 0
    before = digest(ckpt)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"wav_filename,wav_filesize,transcript\n{os.path.abspath(SMOKE)}/LDC93S1.wav,1,HELLO\n")
    status, log = run(train.main, COMMON + ["--train_files", str(bad), "--epochs", "1", "--checkpoint_dir", ckpt],
                      capsys)
    assert status == 1 and "bad.csv, row 2" in log and "missing characters are: ['E', 'H', 'L', 'O']" in log
    assert digest(ckpt) == before


@pytest.mark.parametrize("argv, status, message", [
    (["--no_such_flag", "1"], 2, "unrecognized arguments: --no_such_flag"),
    (["--load_train", "sometimes"], 2, "invalid choice: 'sometimes'"),
    (["--train_files", LDC, "--checkpoint_dir", "/nonexistent/ckpt", "--load_train", "best"], 1,
     "All initialization methods failed"),
])
def test_user_errors_are_one_line(argv, status, message, capsys):
    code, log = run(train.main, COMMON + argv, capsys)
    assert code == status and message in log
    errors = [line for line in log.splitlines() if line.startswith(("E ", "usage", "python -m"))]
    assert len([line for line in errors if message in line]) == 1


def test_evaluate_without_checkpoint_directory(tmp_path, capsys):
    status, log = run(evaluate.main, ["--checkpoint_dir", str(tmp_path / "none"), "--test_files", LDC,
                                      "--alphabet_config_path", ALPHABET], capsys)
    assert status == 1 and "Missing checkpoint directory" in log


@pytest.mark.parametrize("folder", ["ldc93s1-h100-e20", "ldc93s1-h100-e20-cudnn"])
def test_evaluate_a_coqui_checkpoint_as_coqui_did(folder, tmp_path, capsys):
    """Coqui 1.4.0's own checkpoint through our evaluate: its per-sample loss and its beam-search transcript."""
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures", "coqui-1.4.0")
    report = str(tmp_path / "out.json")
    status, log = run(evaluate.main, ["--checkpoint_dir", os.path.join(fixtures, folder, "checkpoint"),
                                      "--test_files", LDC, "--test_output_file", report], capsys)
    assert status == 0, log
    ours = json.load(open(report, encoding="utf-8"))[0]
    coquis = json.load(open(os.path.join(fixtures, "ldc93s1-h100-e20", "test_output.json"), encoding="utf-8"))[0]
    assert ours["loss"] == pytest.approx(coquis["loss"], rel=1e-3)
    assert ours["res"] == coquis["res"] and ours["cer"] == pytest.approx(coquis["cer"])
