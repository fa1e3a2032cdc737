"""Converting checkpoint directories: Coqui's TF format <-> ours, bit-exact both ways."""

import json
import os

import numpy as np
import pytest

from coqui_stt_training import convert, train
from coqui_stt_training.checkpoints.store import find_checkpoint, open_checkpoint
from coqui_stt_training.flags.config import COQUI_FLAG_COUNT
from tests.helpers import ALPHABET, FIXTURES, LDC, sha256


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


@pytest.mark.parametrize("folder", ["ldc93s1-h100-e20", "ldc93s1-h100-e20-cudnn", "ru-h100-drop1"])
def test_coqui_to_ours_and_back_gives_coquis_files_byte_for_byte(folder, tmp_path, cli):
    """Coqui 1.4.0 wrote these with TensorFlow; after a trip through safetensors our writer reproduces them."""
    coqui = os.path.join(FIXTURES, folder, "checkpoint")
    ours, back = str(tmp_path / "ours"), str(tmp_path / "back")
    status, log = cli(convert.main, ["--load_checkpoint_dir", coqui, "--save_checkpoint_dir", ours])
    assert status == 0, log
    argv = ["--load_checkpoint_dir", ours, "--save_checkpoint_dir", back, "--checkpoint_format", "tf"]
    status, log = cli(convert.main, argv)
    assert status == 0, log
    source = find_checkpoint(coqui, "best_dev")
    converted = find_checkpoint(ours, "best_dev")
    assert converted == os.path.join(ours, os.path.basename(source))
    assert os.path.isfile(converted + ".safetensors")
    again = find_checkpoint(back, "best_dev")
    for ext in (".index", ".data-00000-of-00001"):
        assert sha256(again + ext) == sha256(source + ext), ext
    assert read(os.path.join(back, "alphabet.txt"), "rb") == read(os.path.join(coqui, "alphabet.txt"), "rb")
    flags = json.loads(read(os.path.join(back, "flags.txt")))
    assert list(flags) == list(json.loads(read(os.path.join(coqui, "flags.txt"))))[:COQUI_FLAG_COUNT]


def test_our_training_checkpoint_round_trips_through_tf_bit_exact(tmp_path, cli):
    ours = str(tmp_path / "ours")
    argv = ["--alphabet_config_path", ALPHABET, "--n_hidden", "16", "--train_files", LDC, "--dev_files", LDC,
            "--epochs", "2", "--checkpoint_dir", ours, "--show_progressbar", "false"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    tf_dir, back = str(tmp_path / "tf"), str(tmp_path / "back")
    status, log = cli(
        convert.main, ["--load_checkpoint_dir", ours, "--save_checkpoint_dir", tf_dir, "--checkpoint_format", "tf"]
    )
    assert status == 0, log
    status, log = cli(convert.main, ["--load_checkpoint_dir", tf_dir, "--save_checkpoint_dir", back])
    assert status == 0, log
    for kind in ("train", "best_dev"):
        a, b = open_checkpoint(find_checkpoint(ours, kind)), open_checkpoint(find_checkpoint(back, kind))
        assert a.names() == b.names()
        for name in a.names():
            np.testing.assert_array_equal(a.get(name), b.get(name), err_msg=name)
            assert a.get(name).dtype == b.get(name).dtype
    assert os.path.isfile(find_checkpoint(tf_dir, "train") + ".index")
    run_states = [read(find_checkpoint(d, "train") + ".json") for d in (ours, back)]
    assert run_states[0] == run_states[1]


def test_convert_never_writes_over_existing_checkpoints(tmp_path, cli):
    coqui = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")
    target = tmp_path / "target"
    target.mkdir()
    (target / "checkpoint").write_text('model_checkpoint_path: "train-5"\n')
    status, log = cli(convert.main, ["--load_checkpoint_dir", coqui, "--save_checkpoint_dir", str(target)])
    assert status == 1
    assert "already holds checkpoints (checkpoint)" in log
    assert os.listdir(target) == ["checkpoint"]
