import dataclasses
import json
import os
import re

import pytest
import torch

from coqui_stt_training import convert, evaluate, export, lm_optimize, train, training_graph_inference, transcribe
from coqui_stt_training.flags.cli import given_flags
from coqui_stt_training.flags.config import (
    COQUI_FLAG_COUNT,
    TRAIN_FLAGS,
    Config,
    parse_size,
)
from coqui_stt_training.flags.options import parse_hot_words
from coqui_stt_training.flags.prepare import prepare
from coqui_stt_training.system.errors import ConfigError, UnsupportedFlagError
from coqui_stt_training.system.intervals import in_interval
from tests.helpers import ALPHABET, FIXTURES


def test_defaults_match_coqui_flags_txt():
    # The fixture's flags.txt was written by Coqui 1.4.0 itself: same 96 names, same order.
    with open(os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint", "flags.txt")) as f:
        coqui = json.load(f)
    ours = json.loads(Config().to_json())
    assert list(ours)[: len(coqui)] == list(coqui)
    assert len(coqui) == COQUI_FLAG_COUNT
    assert list(ours)[len(coqui) :] == [
        "keep_shared_symbols",
        "freeze_source_layers",
        "source_layers_lr_scale",
        "rehearsal_files",
        "rehearsal_fraction",
        "rehearsal_augment",
        "skip_invalid_samples",
        "max_batch_memory",
        "data_workers",
        "hot_words",
        "src",
        "dst",
        "recursive",
        "force",
        "vad_aggressiveness",
        "batch_size",
        "outlier_duration_ms",
        "outlier_batch_size",
        "checkpoint_format",
        "export_onnx",
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
    assert c.show_progressbar is False
    assert c.epochs == 3
    assert c.scorer_path == ""  # unambiguous prefix
    assert Config.from_args(["--train_files", "a.csv,b.csv"]).train_files == ["a.csv,b.csv"]  # commas not split


def test_bare_boolean_means_true():
    c = Config.from_args(["--train_cudnn", "--epochs", "2"])
    assert c.train_cudnn is True
    assert c.epochs == 2
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
def test_bad_flags_are_one_line_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_finalize_derives_coqui_values(tmp_path):
    c = Config.from_args(["--checkpoint_dir", str(tmp_path), "--dropout_rate", "0.2", "--dropout_rate3", "0.1"])
    c.finalize()
    assert c.load_checkpoint_dir == c.save_checkpoint_dir == str(tmp_path)
    assert (c.dropout_rate2, c.dropout_rate3, c.dropout_rate6) == (0.2, 0.1, 0.2)
    assert c.summary_dir == str(tmp_path / "summaries")


def test_n_hidden_comes_from_source_flags_txt(tmp_path, capsys):
    (tmp_path / "flags.txt").write_text(json.dumps({"n_hidden": 100}))
    c = prepare(Config.from_args(["--load_checkpoint_dir", str(tmp_path)]))
    assert c.n_hidden == 100
    assert "is different from value found in checkpoint (100)" in capsys.readouterr().err  # (any flag may be given)
    # Coqui's warning is for an --n_hidden the user gave; otherwise the checkpoint's is simply taken
    argv = ["--load_checkpoint_dir", str(tmp_path)]
    assert prepare(Config.from_args(argv), given_flags(argv)).n_hidden == 100
    assert "n_hidden" not in capsys.readouterr().err
    argv += ["--n_hid", "2048"]  # (abbreviated, as argparse allows)
    assert prepare(Config.from_args(argv), given_flags(argv)).n_hidden == 100
    assert "--n_hidden value (2048) is different from value found in checkpoint (100)" in capsys.readouterr().err
    # DeepSpeech 0.x wrote absl flag files, which Coqui ignored; they say n_hidden as well
    (tmp_path / "flags.txt").write_text("--alphabet_config_path=data/alphabet.txt\n--n_hidden=50\n")
    assert prepare(Config.from_args(["--load_checkpoint_dir", str(tmp_path)])).n_hidden == 50
    # anything else is named and ignored, so --n_hidden stands
    (tmp_path / "flags.txt").write_bytes(b"\x00garbage{")
    assert prepare(Config.from_args(["--load_checkpoint_dir", str(tmp_path)])).n_hidden == 2048
    assert (
        f"W {tmp_path}/flags.txt: neither Coqui's JSON flags nor a DeepSpeech flag file; ignored, so --n_hidden "
        "is not taken from it" in capsys.readouterr().err
    )


def test_bytes_output_mode_comes_from_source_flags_txt_unless_an_alphabet_is_given(tmp_path, capsys):
    (tmp_path / "flags.txt").write_text(json.dumps({"n_hidden": 2048, "bytes_output_mode": True}))
    assert prepare(Config.from_args(["--load_checkpoint_dir", str(tmp_path)])).bytes_output_mode
    assert "trained with --bytes_output_mode" in capsys.readouterr().out
    # a new alphabet, or a transfer that drops the output layer, means the user chose another output
    for flags in (["--alphabet_config_path", ALPHABET], ["--drop_source_layers", "1"]):
        assert not prepare(Config.from_args(["--load_checkpoint_dir", str(tmp_path)] + flags)).bytes_output_mode


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_cudnn", "true", "--load_cudnn", "true"], "--load_cudnn was also specified"),
        (["--bytes_output_mode", "true", "--alphabet_config_path", "a.txt"], "--alphabet_config_path *and*"),
        (["--audio_sample_rate", "22050"], "must be an integer value"),
    ],
)
def test_finalize_refuses_contradictions(argv, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        Config.from_args(argv).finalize()


def test_hot_words_are_coquis_word_boost_list():
    assert parse_hot_words("friday:5.5,sunday:-2,:)face:1") == (("friday", 5.5), ("sunday", -2.0), (":)face", 1.0))
    assert parse_hot_words("") == ()
    malformed = "is not word:boost"
    for bad, problem in (("friday", malformed), ("friday:x", malformed), (":3", malformed), ("a:nan", malformed),
                         ("a:1,a:2", "'a' is given twice")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"--hot_words '{re.escape(bad)}': .*{problem}"):
            prepare(Config.from_args(["--hot_words", bad]))


NUMERIC_FLAGS = [f for f in dataclasses.fields(Config) if f.type in ("int", "float")]


def test_every_numeric_flag_states_its_valid_range_and_its_default_lies_in_it():
    assert len(NUMERIC_FLAGS) == 56
    for f in NUMERIC_FLAGS:
        assert "valid" in f.metadata, f.name
        assert in_interval(f.default, f.metadata["valid"]), f.name
    help_text = Config.parser().format_help()
    assert "valid: (0, inf)" in help_text and "valid: [0, 1)" in help_text


def just_outside(f) -> list[str]:
    """Values on the wrong side of each finite bound of a flag's range (and NaN for a float)."""
    opening, low, high, closing = re.fullmatch(r"([\[(])(\S+), (\S+)([\])])", f.metadata["valid"]).groups()
    step = 1 if f.type == "int" else 1e-6
    values = []
    if low != "-inf":
        values.append(float(low) - step if opening == "[" else float(low))
    if high != "inf":
        values.append(float(high) + step if closing == "]" else float(high))
    as_text = [str(int(v)) if f.type == "int" else repr(v) for v in values]
    return as_text + (["nan"] if f.type == "float" else [])


@pytest.mark.parametrize("flag", NUMERIC_FLAGS, ids=lambda f: f.name)
def test_a_numeric_flag_outside_its_range_is_one_line_naming_flag_value_and_range(flag, tmp_path, capsys):
    for text in just_outside(flag):
        if flag.metadata.get("size") and text.startswith("-"):  # a size's parser refuses the sign itself
            with pytest.raises(SystemExit):
                Config.from_args([f"--{flag.name}={text}"])
            assert "invalid size: '-1'" in capsys.readouterr().err
            continue
        with pytest.raises(ConfigError) as error:
            prepare(Config.from_args([f"--{flag.name}={text}", "--checkpoint_dir", str(tmp_path / "never")]))
        value = getattr(Config.from_args([f"--{flag.name}={text}"]), flag.name)
        what = "a finite number" if text == "nan" else f"in {flag.metadata['valid']}"
        assert str(error.value) == f"--{flag.name} {value}: must be {what}"
    assert not (tmp_path / "never").exists()


def test_read_buffer_sizes():
    assert parse_size("1MB") == 1 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("7") == 7


def test_finalize_reads_no_file_and_sets_nothing_outside_the_config(tmp_path):
    (tmp_path / "flags.txt").write_text(json.dumps({"n_hidden": 100}))
    c = Config.from_args(["--load_checkpoint_dir", str(tmp_path), "--intra_op_parallelism_threads", "1"])
    threads = torch.get_num_threads()
    c.finalize()
    assert c.n_hidden == 2048  # flags.txt is prepare()'s to read
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--vocab_file", "vocab.txt"], "--vocab_file"),
        (["--export_savedmodel", "true"], "--export_savedmodel"),
    ],
)
def test_flags_for_what_is_not_built_are_refused(argv, flag):
    with pytest.raises(UnsupportedFlagError, match=f"^{flag}: not supported yet"):
        prepare(Config.from_args(argv))


@pytest.mark.parametrize(
    "main, shown, hidden",
    [
        (
            train.main,
            ["--train_files", "--keep_shared_symbols", "--export_dir", "--scorer_path"],
            ["--src", "--checkpoint_format"],
        ),
        (
            evaluate.main,
            ["--test_files", "--scorer_path", "--test_output_file"],
            ["--epochs", "--src", "--keep_shared_symbols"],
        ),
        (export.main, ["--export_dir", "--export_language"], ["--epochs", "--test_files"]),
        (transcribe.main, ["--src", "--dst", "--vad_aggressiveness"], ["--epochs", "--checkpoint_format"]),
        (convert.main, ["--checkpoint_format", "--save_checkpoint_dir"], ["--epochs", "--scorer_path"]),
        (lm_optimize.main, ["--n_trials", "--lm_alpha_max"], ["--epochs", "--src"]),
        (training_graph_inference.main, ["--one_shot_infer", "--beam_width"], ["--epochs", "--test_files"]),
    ],
)
def test_each_tool_lists_the_flags_it_uses(main, shown, hidden, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in shown:
        assert f"{flag} " in text, flag
    for flag in hidden:
        assert f"{flag} " not in text, flag


def test_coquis_flags_are_accepted_by_every_tool_and_ours_only_where_used(capsys):
    assert Config.from_args(["--epochs", "3"], uses=frozenset({"test_files"})).epochs == 3  # hidden, accepted
    with pytest.raises(SystemExit):
        Config.from_args(["--src", "a.wav"], uses=TRAIN_FLAGS)  # transcribe's flag: train does not take it
    assert "unrecognized arguments: --src" in capsys.readouterr().err
