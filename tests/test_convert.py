"""Converting checkpoint directories: Coqui's TF format <-> ours, bit-exact both ways."""

import json
import os

import numpy as np
import pytest
from cli import run, sha256

from coqui_stt_training import convert
from coqui_stt_training.checkpoint import find_checkpoint, open_checkpoint
from coqui_stt_training.config import COQUI_FLAG_COUNT

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "coqui-1.4.0")


@pytest.mark.parametrize("folder", ["ldc93s1-h100-e20", "ldc93s1-h100-e20-cudnn", "ru-h100-drop1"])
def test_coqui_to_ours_and_back_gives_coquis_files_byte_for_byte(folder, tmp_path, capsys):
    """Coqui 1.4.0 wrote these with TensorFlow; after a trip through safetensors our writer reproduces them."""
    coqui = os.path.join(FIXTURES, folder, "checkpoint")
    ours, back = str(tmp_path / "ours"), str(tmp_path / "back")
    assert run(convert.main, ["--load_checkpoint_dir", coqui, "--save_checkpoint_dir", ours], capsys)[0] == 0
    status, log = run(
        convert.main,
        ["--load_checkpoint_dir", ours, "--save_checkpoint_dir", back, "--checkpoint_format", "tf"],
        capsys,
    )
    assert status == 0, log
    source = find_checkpoint(coqui, "best_dev")
    converted = find_checkpoint(ours, "best_dev")
    assert converted == os.path.join(ours, os.path.basename(source)) and os.path.isfile(converted + ".safetensors")
    again = find_checkpoint(back, "best_dev")
    for ext in (".index", ".data-00000-of-00001"):
        assert sha256(again + ext) == sha256(source + ext), ext
    for name in ("alphabet.txt",):
        assert open(os.path.join(back, name), "rb").read() == open(os.path.join(coqui, name), "rb").read()
    flags = json.load(open(os.path.join(back, "flags.txt")))
    assert list(flags) == list(json.load(open(os.path.join(coqui, "flags.txt"))))[:COQUI_FLAG_COUNT]


def test_our_training_checkpoint_round_trips_through_tf_bit_exact(tmp_path, capsys):
    from coqui_stt_training import train

    ours = str(tmp_path / "ours")
    smoke = os.path.join(os.path.dirname(__file__), "..", "data", "smoke_test", "ldc93s1.csv")
    alphabet = os.path.join(os.path.dirname(__file__), "..", "data", "alphabet.txt")
    assert (
        run(
            train.main,
            [
                "--alphabet_config_path",
                alphabet,
                "--n_hidden",
                "16",
                "--train_files",
                smoke,
                "--dev_files",
                smoke,
                "--epochs",
                "2",
                "--checkpoint_dir",
                ours,
                "--show_progressbar",
                "false",
            ],
            capsys,
        )[0]
        == 0
    )
    tf_dir, back = str(tmp_path / "tf"), str(tmp_path / "back")
    assert (
        run(
            convert.main,
            ["--load_checkpoint_dir", ours, "--save_checkpoint_dir", tf_dir, "--checkpoint_format", "tf"],
            capsys,
        )[0]
        == 0
    )
    assert run(convert.main, ["--load_checkpoint_dir", tf_dir, "--save_checkpoint_dir", back], capsys)[0] == 0
    for kind in ("train", "best_dev"):
        a, b = open_checkpoint(find_checkpoint(ours, kind)), open_checkpoint(find_checkpoint(back, kind))
        assert a.names() == b.names()
        for name in a.names():
            np.testing.assert_array_equal(a.get(name), b.get(name), err_msg=name)
            assert a.get(name).dtype == b.get(name).dtype
    assert os.path.isfile(find_checkpoint(tf_dir, "train") + ".index")
    run_state = [open(find_checkpoint(d, "train") + ".json").read() for d in (ours, back)]
    assert run_state[0] == run_state[1]


def test_convert_never_writes_over_existing_checkpoints(tmp_path, capsys):
    coqui = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")
    target = tmp_path / "target"
    target.mkdir()
    (target / "checkpoint").write_text('model_checkpoint_path: "train-5"\n')
    status, log = run(convert.main, ["--load_checkpoint_dir", coqui, "--save_checkpoint_dir", str(target)], capsys)
    assert status == 1 and "already holds checkpoints (checkpoint)" in log
    assert os.listdir(target) == ["checkpoint"]
