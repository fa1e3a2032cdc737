"""Bad input found before anything is written, and said as it is (issue 33): overlay sources, truncated audio,
a text file given as a graph, flags the user never gave."""

from __future__ import annotations

import os

from coqui_stt_training import convert, evaluate, train
from tests.helpers import ALPHABET, LDC, LDC_WAV

SMALL = ["--alphabet_config_path", ALPHABET, "--n_hidden", "24", "--show_progressbar", "false", "--epochs", "1"]


def test_a_missing_overlay_source_is_found_before_the_run_writes_anything(tmp_path, cli):
    ckpt = tmp_path / "ckpt"
    argv = [*SMALL, "--train_files", LDC, "--checkpoint_dir", str(ckpt)]
    status, log = cli(train.main, [*argv, "--augment", f"overlay[source={tmp_path}/missing.csv]"])
    assert status == 1, log
    (line,) = [line for line in log.splitlines() if line.startswith("E ")]
    assert line.startswith(f"E --augment overlay: source={tmp_path}/missing.csv: ") and "missing.csv" in line[60:], line
    assert not ckpt.exists()
    noise = tmp_path / "noise.csv"
    noise.write_text(f"wav_filename\n{LDC_WAV}\n{tmp_path}/gone.wav\n")
    status, log = cli(train.main, [*argv, "--augment", f"overlay[source={noise}]"])
    assert status == 1, log
    assert f"E --augment overlay: source={noise}: 1 clip(s) cannot be read:\n    {noise}, row 3: audio file not " \
           f"found: {tmp_path}/gone.wav" in log  # fmt: skip
    assert not ckpt.exists()


def test_a_truncated_wav_is_named_by_the_data_check_with_both_sizes(tmp_path, cli):
    with open(LDC_WAV, "rb") as f:
        (tmp_path / "cut.wav").write_bytes(f.read()[:2000])
    data = tmp_path / "train.csv"
    data.write_text(f"wav_filename,wav_filesize,transcript\n{LDC_WAV},1,she had\ncut.wav,2,your dark suit\n")
    status, log = cli(train.main, [*SMALL, "--train_files", str(data), "--checkpoint_dir", str(tmp_path / "ckpt")])
    assert status == 1, log
    assert "  truncated audio: 1 row(s)\n" in log
    assert f"    {data}, row 3: truncated audio {tmp_path}/cut.wav: its header promises 93594 bytes of samples, " \
           "the file holds 1956" in log  # fmt: skip
    assert not os.path.exists(tmp_path / "ckpt")


def test_a_text_file_named_pb_is_said_to_be_no_tensorflow_graph(tmp_path, cli):
    fake = tmp_path / "output_graph.pb"
    fake.write_text("these are my notes, not a model\n")
    out = tmp_path / "out"
    status, log = cli(convert.main, ["--load_checkpoint_dir", str(fake), "--save_checkpoint_dir", str(out)])
    assert status == 1, log
    assert log.splitlines()[-1].startswith(f"E {fake}: not a TensorFlow graph (a .pb export) nor a .tflite model (")
    assert not out.exists()


def test_no_warning_about_n_hidden_unless_it_was_given(tmp_path, cli):
    ckpt = str(tmp_path / "ckpt")
    assert cli(train.main, [*SMALL, "--train_files", LDC, "--checkpoint_dir", ckpt])[0] == 0
    status, log = cli(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "2"])
    assert status == 0 and "WARNING" not in log, log
    status, log = cli(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--export_beam_width", "2",
                                      "--n_hidden", "64"])  # fmt: skip
    assert status == 0 and "--n_hidden value (64) is different from value found in checkpoint (24)" in log, log
