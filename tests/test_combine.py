"""checkpoints/combine.py on tensors whose averages and mixtures are known, and the combine command over it on
real runs: what it writes evaluates and exports, and what it reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from coqui_stt_training import combine, evaluate, export
from coqui_stt_training.checkpoints import store
from coqui_stt_training.checkpoints.combine import average, interpolate, is_weight, kept_train_checkpoints
from coqui_stt_training.checkpoints.layout import LSTM_SCOPE
from coqui_stt_training.checkpoints.load import shared_output_columns
from tests.helpers import ALPHABET, LDC, digest, repeated_csv


def checkpoint(value: float, classes: int = 3, step: int = 0) -> dict[str, np.ndarray]:
    return {
        "layer_1/weights": np.full((2, 4), value, np.float32),
        "layer_1/weights/Adam": np.full((2, 4), 10 * value, np.float32),
        "layer_6/weights": np.arange(4 * classes, dtype=np.float32).reshape(4, classes) * value,
        "layer_6/bias": np.arange(classes, dtype=np.float32) * value,
        "global_step": np.array(step, np.int64),
        "learning_rate": np.array(0.001, np.float32),
    }


def test_weights_and_state_are_told_apart():
    assert is_weight("layer_1/weights") and is_weight(f"{LSTM_SCOPE}/bias")
    assert not any(is_weight(n) for n in ("layer_1/weights/Adam", "layer_1/weights/Adam_1", "global_step",
                                          "beta1_power", "beta2_power", "learning_rate"))  # fmt: skip


def test_averaging_gives_each_weights_mean_and_the_first_checkpoints_state():
    out = average([checkpoint(1.0, step=30), checkpoint(2.0, step=20), checkpoint(6.0, step=10)])
    np.testing.assert_array_equal(out["layer_1/weights"], np.full((2, 4), 3.0, np.float32))
    np.testing.assert_array_equal(out["layer_6/bias"], np.arange(3, dtype=np.float32) * 3.0)
    assert out["layer_1/weights"].dtype == np.float32
    np.testing.assert_array_equal(out["layer_1/weights/Adam"], np.full((2, 4), 10.0, np.float32))  # the first's
    assert int(out["global_step"]) == 30
    # float32 values whose float32 running sum would round: the mean is taken in float64
    big = [{"w": np.array([np.float32(2**24)], np.float32)}, {"w": np.array([np.float32(1.0)], np.float32)}]
    assert average(big)["w"][0] == np.float32((2**24 + 1) / 2)


def test_averaging_refuses_checkpoints_of_different_models():
    with pytest.raises(ValueError, match=r"layer_6/weights: of shape \[4, 5\] in checkpoint 2, \[4, 3\] in the first"):
        average([checkpoint(1.0), checkpoint(1.0, classes=5)])
    with pytest.raises(ValueError, match="no checkpoints"):
        average([])


def test_interpolation_mixes_shared_layers_and_the_output_layer_by_symbol():
    fine, source = checkpoint(2.0, classes=4, step=7), checkpoint(6.0, classes=3)
    # target alphabet [a, x, b] + blank; source [a, b] + blank: x is new
    columns = shared_output_columns(["a", "b"], ["a", "x", "b"])
    assert columns == [0, None, 1, 2]
    out = interpolate(fine, source, 0.25, columns)
    np.testing.assert_array_equal(out["layer_1/weights"], np.full((2, 4), 3.0, np.float32))  # 0.75*2 + 0.25*6
    expected = fine["layer_6/weights"].astype(np.float64)
    for c, s in enumerate(columns):
        if s is not None:
            expected[:, c] = 0.75 * expected[:, c] + 0.25 * source["layer_6/weights"][:, s]
    np.testing.assert_allclose(out["layer_6/weights"], expected)
    np.testing.assert_array_equal(out["layer_6/bias"][1], fine["layer_6/bias"][1])  # x: the source has none
    assert out["layer_6/bias"][3] == pytest.approx(0.75 * 3 * 2.0 + 0.25 * 2 * 6.0)  # blank with blank
    assert int(out["global_step"]) == 7 and out["layer_1/weights/Adam"][0, 0] == 20.0
    same = interpolate(fine, source, 0.0, columns)
    assert all(np.array_equal(same[n], fine[n]) for n in fine)
    with pytest.raises(ValueError, match=r"interpolation weight 1.5: must be in \[0, 1\]"):
        interpolate(fine, source, 1.5, columns)
    with pytest.raises(ValueError, match="4 classes, but 3 output columns"):
        interpolate(fine, source, 0.5, columns[:3])


# ---- the command: python -m coqui_stt_training.combine ------------------------------------------------------------


def small_run(directory, extra: list[str] = (), epochs: int = 3) -> list[str]:
    return ["--n_hidden", "24", "--show_progressbar", "false", "--train_files", repeated_csv(directory),
            "--dev_files", LDC, "--epochs", str(epochs), "--max_to_keep", str(epochs), "--checkpoint_secs", "0",
            "--learning_rate", "0.002", "--dropout_rate", "0.2", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An English run (Coqui's alphabet) of three epochs, and its transfer to that alphabet plus 'é'."""
    tmp = tmp_path_factory.mktemp("combine")
    english, transfer = str(tmp / "en"), str(tmp / "transfer")
    extended = tmp / "alphabet.txt"
    with open(ALPHABET, encoding="utf-8") as f:
        extended.write_text(f.read() + "é\n", encoding="utf-8")
    commands = [
        small_run(tmp, ["--alphabet_config_path", ALPHABET, "--checkpoint_dir", english]),
        small_run(tmp, ["--alphabet_config_path", str(extended), "--load_checkpoint_dir", english,
                        "--save_checkpoint_dir", transfer, "--drop_source_layers", "1", "--keep_shared_symbols",
                        "true", "--random_seed", "7"], epochs=2),
    ]  # fmt: skip
    for argv in commands:
        done = subprocess.run([sys.executable, "-m", "coqui_stt_training.train", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return english, transfer


def weights_of(prefix: str) -> dict[str, np.ndarray]:
    reader = store.open_checkpoint(prefix)
    return {name: reader.get(name) for name in reader.names()}


def test_each_epochs_checkpoint_records_its_dev_loss(runs):
    english, _ = runs
    kept = kept_train_checkpoints(english)
    assert len(kept) == 3
    states = [store.read_run_state(p) for p in kept]
    assert all(s is not None and s.dev_loss is not None for s in states)
    best = store.read_run_state(store.find_checkpoint(english, "best_dev"))
    assert best is not None and best.best_dev_loss == min(s.dev_loss for s in states if s and s.dev_loss)


@pytest.mark.parametrize("how", ["--average_last", "--average_best"])
def test_averaging_writes_a_checkpoint_that_evaluates_and_exports(how, runs, tmp_path, cli):
    english, _ = runs
    out = str(tmp_path / "averaged")
    status, log = cli(combine.main, ["--checkpoint_dir", english, how, "2", "--output_dir", out])
    assert status == 0, log
    if how == "--average_last":
        chosen = kept_train_checkpoints(english)[::-1][:2]
    else:
        losses = {p: store.read_run_state(p).dev_loss for p in kept_train_checkpoints(english)}
        chosen = sorted(losses, key=losses.__getitem__)[:2]
    written = store.find_checkpoint(out, "best_dev")
    result, sources = weights_of(written), [weights_of(p) for p in chosen]
    for name in ("layer_1/weights", f"{LSTM_SCOPE}/kernel", "layer_6/bias"):
        np.testing.assert_allclose(result[name], (sources[0][name] + sources[1][name]) / 2, rtol=1e-6, err_msg=name)
    assert store.read_run_state(written).made_from == {"average": chosen}
    assert sorted(os.listdir(out)) == sorted(["alphabet.txt", "flags.txt", "best_dev_checkpoint",
                                              os.path.basename(written) + ".json",
                                              os.path.basename(written) + ".safetensors"])  # fmt: skip
    status, log = cli(evaluate.main, ["--checkpoint_dir", out, "--test_files", LDC, "--export_beam_width", "8"])
    assert status == 0 and "Test on" in log, log
    status, log = cli(export.main, ["--checkpoint_dir", out, "--export_dir", str(tmp_path / "export")])
    assert status == 0 and os.path.isfile(tmp_path / "export" / "output_graph.tflite"), log


def test_interpolation_with_the_source_of_a_transfer_mixes_the_shared_symbols_columns(runs, tmp_path, cli):
    english, transfer = runs
    out = str(tmp_path / "mixed")
    argv = ["--checkpoint_dir", transfer, "--interpolate_with", english, "--interpolate_weight", "0.25"]
    status, log = cli(combine.main, [*argv, "--output_dir", out])
    assert status == 0, log
    fine = weights_of(store.find_checkpoint(transfer, "best_dev"))
    source = weights_of(store.find_checkpoint(english, "best_dev"))
    mixed = weights_of(store.find_checkpoint(out, "best_dev"))
    mix = lambda a, b: 0.75 * a + 0.25 * b
    np.testing.assert_allclose(mixed["layer_2/weights"], mix(fine["layer_2/weights"], source["layer_2/weights"]), 1e-5)
    # output classes: Coqui's 28 labels as in the source, then 'é' (new: kept as fine-tuned), then the blank
    bias, source_bias = fine["layer_6/bias"], source["layer_6/bias"]
    assert bias.shape == (30,) and source_bias.shape == (29,)
    np.testing.assert_allclose(mixed["layer_6/bias"][:28], mix(bias[:28], source_bias[:28]), rtol=1e-5)
    assert mixed["layer_6/bias"][28] == bias[28]
    assert mixed["layer_6/bias"][29] == pytest.approx(mix(bias[29], source_bias[28]))
    np.testing.assert_array_equal(mixed["layer_1/weights/Adam"], fine["layer_1/weights/Adam"])
    # the same command again: the directory holds a checkpoint now, and is left as it is
    before = digest(out)
    status, log = cli(combine.main, [*argv, "--output_dir", out])
    assert status == 1 and "holds checkpoints already: give a new directory" in log, log
    assert digest(out) == before


def test_a_sweep_reports_each_weight_and_writes_nothing(runs, tmp_path, cli):
    english, transfer = runs
    report = ["--report_files", LDC, "--test_batch_size", "1"]
    status, log = cli(combine.main, ["--checkpoint_dir", transfer, *report])
    assert status == 0, log
    (own,) = re.findall(r"^Checkpoint \S+ on \S+: (greedy WER [0-9.]+, CER [0-9.]+)$", log, re.M)
    status, log = cli(combine.main, ["--checkpoint_dir", transfer, "--interpolate_with", english,
                                     "--interpolate_sweep", "0", "0.5", "1", *report])  # fmt: skip
    assert status == 0, log
    found = dict(re.findall(r"^Interpolation weight (\S+) on \S+: (greedy WER [0-9.]+, CER [0-9.]+)$", log, re.M))
    assert list(found) == ["0", "0.5", "1"] and found["0"] == own  # weight 0: the fine-tuned model itself
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--average_last", "5", "--output_dir", "{out}"], "keeps 3 train checkpoint(s), fewer than the 5 to average"),
        (["--average_last", "2", "--average_best", "2", "--output_dir", "{out}"], "choose one way of combining"),
        (["--average_last", "2"], "--output_dir is needed"),
        (["--interpolate_with", "{en}", "--interpolate_weight", "1.5", "--output_dir", "{out}"],
         "interpolation weight 1.5: must be in [0, 1]"),
        (["--interpolate_with", "{en}", "--output_dir", "{out}"], "needs either --interpolate_weight"),
        ([], "nothing to do"),
    ],
)  # fmt: skip
def test_combining_mistakes_are_one_line_and_write_nothing(argv, message, runs, tmp_path, cli):
    english, _ = runs
    argv = [a.replace("{en}", english).replace("{out}", str(tmp_path / "out")) for a in argv]
    status, log = cli(combine.main, ["--checkpoint_dir", english, *argv])
    assert status == 1 and message in log, log
    assert not os.path.exists(tmp_path / "out")


def test_a_checkpoint_read_with_another_alphabet_is_refused_in_one_line(runs, tmp_path, cli):
    english, transfer = runs
    other = os.path.join(transfer, "alphabet.txt")  # Coqui's English and 'é'
    status, log = cli(
        combine.main, ["--checkpoint_dir", english, "--alphabet_config_path", other, "--report_files", LDC]
    )
    assert status == 1 and "was trained for another alphabet" in log.splitlines()[-1], log
