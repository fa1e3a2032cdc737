"""Coqui's Python API as scripts use it (initialize_globals_from_args, Config, train(), test(),
maybe_download) and --auto_input_dataset. Scripts run in their own Python process, as a user runs them."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from safetensors.numpy import load_file

from coqui_stt_training import train as train_module
from coqui_stt_training.data.auto_input import dev_test_size

from .helpers import ALPHABET, LDC, LDC_SENTENCE, repeated_csv, run, wait_for


def python(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def tensors_of(directory) -> dict[str, dict]:
    """Every checkpoint of a directory, by name, as its tensors."""
    return {
        name: load_file(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if name.endswith(".safetensors")
    }


def assert_same_checkpoints(a, b) -> None:
    left, right = tensors_of(a), tensors_of(b)
    assert left and list(left) == list(right)
    for name in left:
        assert list(left[name]) == list(right[name]), name
        for tensor in left[name]:
            assert (left[name][tensor] == right[name][tensor]).all(), f"{name}: {tensor}"


def test_train_twice_in_one_script_gives_the_checkpoints_of_two_command_lines(tmp_path, capsys):
    common = dict(alphabet_config_path=ALPHABET, train_files=[LDC], dev_files=[LDC], n_hidden=32)
    script = f"""
        from coqui_stt_training.util.config import initialize_globals_from_args, Config
        from coqui_stt_training.train import train
        initialize_globals_from_args(**{common!r}, epochs=3, save_checkpoint_dir="api/first")
        train()
        initialize_globals_from_args(**{common!r}, epochs=2, load_checkpoint_dir="api/first",
                                     save_checkpoint_dir="api/second", learning_rate=0.0005)
        train()
    """
    done = python(script, tmp_path)
    assert done.returncode == 0, done.stderr
    args = ["--alphabet_config_path", ALPHABET, "--train_files", LDC, "--dev_files", LDC, "--n_hidden", "32"]
    first, second = str(tmp_path / "cli" / "first"), str(tmp_path / "cli" / "second")
    assert run(train_module.main, [*args, "--epochs", "3", "--save_checkpoint_dir", first], capsys)[0] == 0
    status, _ = run(
        train_module.main,
        [*args, "--epochs", "2", "--load_checkpoint_dir", first, "--save_checkpoint_dir", second,
         "--learning_rate", "0.0005"],
        capsys,
    )  # fmt: skip
    assert status == 0
    assert_same_checkpoints(tmp_path / "api" / "first", first)
    assert_same_checkpoints(tmp_path / "api" / "second", second)


def test_config_assignments_apply_to_the_next_call_and_test_reports(tmp_path):
    script = f"""
        from coqui_stt_training.util.config import initialize_globals_from_args, Config
        from coqui_stt_training.train import train
        from coqui_stt_training.evaluate import test
        initialize_globals_from_args(alphabet_config_path={ALPHABET!r}, train_files=[{LDC!r}], n_hidden=32,
                                     epochs=2, checkpoint_dir="ckpt")
        Config.epochs = 3
        train()
        print("after train:", Config.epochs, Config.test_files)
        Config.test_files = [{LDC!r}]
        test()
        print("hasattr:", hasattr(Config, "no_such_flag"))
    """
    done = python(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(n for n in os.listdir(tmp_path / "ckpt") if n.endswith(".safetensors"))[-1] == "train-3.safetensors"
    assert "after train: 3 None" in done.stdout
    assert f"Test on {LDC} - WER:" in done.stdout
    assert "hasattr: False" in done.stdout


@pytest.mark.parametrize(
    "script, message",
    [
        ("initialize_globals_from_args(epoch=3)", "initialize_globals_from_args: unknown flag 'epoch' (did you mean"),
        (
            "initialize_globals_from_args(train_files='train.csv', save_checkpoint_dir='ckpt')",
            "train_files='train.csv': must be a list, e.g. train_files=['train.csv']",
        ),
        ("initialize_globals_from_args(epochs='3')", "epochs='3': must be an integer"),
        ("initialize_globals_from_args(learning_rate=-1.0)", "learning_rate=-1.0: must be in (0, inf)"),
        ("initialize_globals_from_args(load_cudnn='yes')", "load_cudnn='yes': must be True or False"),
        ("print(Config.epochs)", "Global configuration not yet initialized."),
        ("initialize_globals_from_args()\nprint(Config.epoch)", "Configuration option epoch not found in config."),
        (
            "initialize_globals_from_args(save_checkpoint_dir='ckpt')\nConfig.epochs = -1",
            "epochs=-1: must be in [0, inf)",
        ),
        (
            "initialize_globals_from_args(checkpoint_dir='ckpt')\nfrom coqui_stt_training.evaluate import test\ntest()",
            "You need to specify what files to use for evaluation via the --test_files flag.",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, script, message):
    imports = "from coqui_stt_training.util.config import initialize_globals_from_args, Config\n"
    done = python(imports + script, tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"E {message}"), done.stderr
    assert os.listdir(tmp_path) == []


def test_a_user_error_in_a_notebook_cell_is_one_line(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("from coqui_stt_training.util.config import initialize_globals_from_args"),
        nbformat.v4.new_code_cell("initialize_globals_from_args(train_files='train.csv')"),
        nbformat.v4.new_code_cell("print('next cell runs')"),
    ]
    nbformat.write(notebook, tmp_path / "bad.ipynb")
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    done = subprocess.run(
        [jupyter, "nbconvert", "--to", "notebook", "--execute", "--allow-errors", "bad.ipynb", "--output", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = executed.cells[1].outputs
    assert [(o.output_type, o.get("name"), o.get("text")) for o in outputs] == [
        ("stream", "stderr", "E train_files='train.csv': must be a list, e.g. train_files=['train.csv']\n")
    ]
    assert executed.cells[2].outputs[0].text == "next cell runs\n"


def test_maybe_download_finds_the_file_without_the_network_and_names_the_url_offline(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "there.wav").write_bytes(b"RIFF")
    script = """
        from coqui_stt_training.util.downloader import maybe_download
        print(maybe_download("there.wav", "data", "http://127.0.0.1:9/there.wav"))
        maybe_download("missing.wav", "data", "http://127.0.0.1:9/missing.wav")
    """
    done = python(script, tmp_path)
    assert 'Found archive "data/there.wav" - not downloading.\ndata/there.wav\n' in done.stdout
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "E cannot download http://127.0.0.1:9/missing.wav to data/missing.wav:"
    ), done.stderr
    assert sorted(os.listdir(tmp_path / "data")) == ["there.wav"]


def rows_of(path) -> list[tuple[str, str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["wav_filename"], r["wav_filesize"], r["transcript"]) for r in csv.DictReader(f)]


def test_auto_input_dataset_splits_100_rows_and_trains_on_them(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    source = repeated_csv(data, copies=100, name="all.csv")
    argv = ["--auto_input_dataset", source, "--n_hidden", "16", "--epochs", "1", "--checkpoint_dir"]
    status, out = run(train_module.main, [*argv, str(tmp_path / "ckpt")], capsys)
    assert status == 0, out
    train, dev, test = (rows_of(data / f"{n}.csv") for n in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (100 - 2 * dev_test_size(100), dev_test_size(100), dev_test_size(100))
    assert len(dev) >= 1
    everything = train + dev + test
    assert len(set(everything)) == 100 and sorted(everything) == sorted(rows_of(source))
    with open(data / "alphabet.txt", encoding="utf-8") as f:
        assert {line.rstrip("\n") for line in f if not line.startswith("#")} == set(LDC_SENTENCE)
    assert f"Test on {data / 'test.csv'} - WER:" in out  # trained, then tested on the split's test set
    assert os.path.exists(tmp_path / "ckpt" / "best_dev_checkpoint")
    # the same seed gives the same split: a second folder, split afresh
    again = tmp_path / "again"
    again.mkdir()
    repeated_csv(again, copies=100, name="all.csv")
    status, out = run(train_module.main, [*argv, str(tmp_path / "ckpt2"), "--auto_input_dataset",
                                          str(again / "all.csv")], capsys)  # fmt: skip
    assert status == 0, out
    assert [r[1] for r in rows_of(again / "train.csv")] == [r[1] for r in train]


def test_auto_input_dataset_keeps_what_is_there_and_refuses_explicit_sets(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    source = repeated_csv(data, copies=10, name="all.csv")
    status, out = run(train_module.main, ["--auto_input_dataset", source, "--train_files", LDC], capsys)
    assert status == 1
    assert out.strip().splitlines()[-1] == (
        "E When using --auto_input_dataset, do not specify --train_files, --dev_files, or --test_files."
    )
    assert sorted(os.listdir(data)) == ["all.csv"]
    (data / "train.csv").write_text("wav_filename,wav_filesize,transcript\n")
    status, out = run(train_module.main, ["--auto_input_dataset", source, "--checkpoint_dir", "x"], capsys)
    assert status == 1 and "exist but not all of" in out.strip().splitlines()[-1]
    assert sorted(os.listdir(data)) == ["all.csv", "train.csv"]


def test_dev_test_size_is_coquis_formula():
    # Cochran's n0 = 2.58^2 / 4 / 0.01^2 = 16641 with the finite-population correction, as Coqui computes it
    # (for a small set the correction makes each t training samples worth t - 1: 100 -> 34 + 33 + 33)
    assert [dev_test_size(n) for n in (3, 10, 100)] == [0, 3, 33]
    for n in (1000, 100_000):
        size = dev_test_size(n)
        train_size = n - 2 * size
        assert size == int(16641.0 * train_size / (16641.0 + train_size))
        assert 16641.0 * (train_size + 1) / (16641.0 + train_size + 1) * 2 + train_size + 1 > n - 1  # the largest


def test_ctrl_c_in_train_saves_and_stops_the_script(tmp_path):
    script = f"""
        from coqui_stt_training.util.config import initialize_globals_from_args
        from coqui_stt_training.train import train
        initialize_globals_from_args(alphabet_config_path={ALPHABET!r}, train_files=[{LDC!r}], n_hidden=16,
                                     epochs=100000, checkpoint_dir="ckpt", show_progressbar=False)
        train()
        print("the script went on")
    """
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(script)], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    out = wait_for(process, "now starting real training process")
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out += process.stdout.read()
    assert process.wait(timeout=120) != 0
    assert "the script went on" not in out
    assert "Stopped on SIGINT" in out and "Traceback" not in out, out[-2000:]  # said once, as on the command line
    assert any(name.endswith(".safetensors") for name in os.listdir(tmp_path / "ckpt"))
