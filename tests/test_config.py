import json
import subprocess
import sys

import pytest

from coqui_stt_training.config import COQUI_FLAG_COUNT, Config, ConfigError, parse_size


def test_defaults_match_coqui_flags_txt():
    # The fixture's flags.txt was written by Coqui 1.4.0 itself: same 96 names, same order.
    with open("tests/fixtures/coqui-1.4.0/ldc93s1-h100-e20/checkpoint/flags.txt") as f:
        coqui = json.load(f)
    ours = json.loads(Config().to_json())
    assert list(ours)[: len(coqui)] == list(coqui)
    assert len(coqui) == COQUI_FLAG_COUNT
    assert list(ours)[len(coqui) :] == [
        "keep_shared_symbols",
        "freeze_source_layers",
        "source_layers_lr_scale",
        "skip_invalid_samples",
        "data_workers",
        "src",
        "dst",
        "recursive",
        "force",
        "vad_aggressiveness",
        "batch_size",
        "outlier_duration_ms",
        "outlier_batch_size",
        "checkpoint_format",
    ]
    changed_by_that_run = {
        "train_files",
        "dev_files",
        "test_files",
        "epochs",
        "dropout_rate2",
        "dropout_rate3",
        "dropout_rate6",
        "checkpoint_dir",
        "load_checkpoint_dir",
        "save_checkpoint_dir",
        "max_to_keep",
        "show_progressbar",
        "summary_dir",
        "test_output_file",
        "n_hidden",
        "alphabet_config_path",
    }
    for name, value in coqui.items():
        if name not in changed_by_that_run:
            assert ours[name] == value, name


def test_coqpit_syntax():
    c = Config.from_args(
        [
            "--train_files",
            "a.csv",
            "b.csv",
            "--show_progressbar",
            "false",
            "--epochs",
            "3",
            "--scorer",
            "",
            "--dev_files",
        ]
    )
    assert c.train_files == ["a.csv", "b.csv"]  # space-separated
    assert c.dev_files == []  # flag with no values
    assert c.test_files is None  # flag absent
    assert c.show_progressbar is False and c.epochs == 3
    assert c.scorer_path == ""  # unambiguous prefix
    assert Config.from_args(["--train_files", "a.csv,b.csv"]).train_files == ["a.csv,b.csv"]  # commas not split


def test_bare_boolean_means_true():
    c = Config.from_args(["--train_cudnn", "--epochs", "2"])
    assert c.train_cudnn is True and c.epochs == 2
    assert Config.from_args(["--train_cudnn=false"]).train_cudnn is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_cudnn", "True"], "invalid parse_bool value: 'True'"),
        (["--checkpoint", "x"], "ambiguous option: --checkpoint"),
        (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag"),
        (["--load_train", "newest"], "invalid choice: 'newest'"),
        (["--epochs", "many"], "invalid int value: 'many'"),
    ],
)
def test_bad_flags_are_one_line_argparse_errors(argv, message):
    proc = subprocess.run([sys.executable, "-m", "coqui_stt_training.train", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_finalize_derives_coqui_values(tmp_path):
    c = Config.from_args(["--checkpoint_dir", str(tmp_path), "--dropout_rate", "0.2", "--dropout_rate3", "0.1"])
    c.finalize()
    assert c.load_checkpoint_dir == c.save_checkpoint_dir == str(tmp_path)
    assert (c.dropout_rate2, c.dropout_rate3, c.dropout_rate6) == (0.2, 0.1, 0.2)
    assert c.summary_dir == str(tmp_path / "summaries")


def test_n_hidden_comes_from_source_flags_txt(tmp_path, capsys):
    (tmp_path / "flags.txt").write_text(json.dumps({"n_hidden": 100}))
    c = Config.from_args(["--load_checkpoint_dir", str(tmp_path)]).finalize()
    assert c.n_hidden == 100
    assert "is different from value found in checkpoint (100)" in capsys.readouterr().err
    (tmp_path / "flags.txt").write_text("--n_hidden=50\n")  # pre-JSON flags files are ignored
    assert Config.from_args(["--load_checkpoint_dir", str(tmp_path)]).finalize().n_hidden == 2048


def test_bytes_output_mode_comes_from_source_flags_txt_unless_an_alphabet_is_given(tmp_path, capsys):
    (tmp_path / "flags.txt").write_text(json.dumps({"n_hidden": 2048, "bytes_output_mode": True}))
    assert Config.from_args(["--load_checkpoint_dir", str(tmp_path)]).finalize().bytes_output_mode
    assert "trained with --bytes_output_mode" in capsys.readouterr().out
    # a new alphabet, or a transfer that drops the output layer, means the user chose another output
    for flags in (["--alphabet_config_path", "data/alphabet.txt"], ["--drop_source_layers", "1"]):
        assert not Config.from_args(["--load_checkpoint_dir", str(tmp_path)] + flags).finalize().bytes_output_mode


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_cudnn", "true", "--load_cudnn", "true"], "--load_cudnn was also specified"),
        (["--bytes_output_mode", "true", "--alphabet_config_path", "a.txt"], "--alphabet_config_path *and*"),
        (["--audio_sample_rate", "22050"], "must be an integer value"),
        (["--train_batch_size", "0"], "at least 1"),
    ],
)
def test_finalize_refuses_contradictions(argv, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        Config.from_args(argv).finalize()


def test_read_buffer_sizes():
    assert parse_size("1MB") == 1 << 20 and parse_size("512k") == 512 << 10 and parse_size("7") == 7
