"""Coqui's own notebooks (tests/fixtures/coqui-notebooks/), executed as a user executes them: with
`jupyter nbconvert --to notebook --execute`, unmodified but for the cells that install packages, after
the files their download cells ask for have been placed (nothing can be downloaded here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import nbformat
import numpy as np

from coqui_stt_training import convert, train
from coqui_stt_training.formats.tf_bundle import TFCheckpointReader, write_tf_checkpoint

from .helpers import ALPHABET, LDC, RUSSIAN, SMOKE

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "fixtures", "coqui-notebooks")
JUPYTER = os.path.join(os.path.dirname(sys.executable), "jupyter")
INSTALL_LINE = re.compile(r"^\s*!\s*(pip|apt-get)\s+install\b")


def execute(name: str, folder) -> list[tuple[str, str]]:
    """Run notebook `name` in `folder` with nbconvert; every code cell's source and text output, in order."""
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    notebook.cells = [cell for cell in notebook.cells if not _installs_only(cell)]
    nbformat.write(notebook, os.path.join(folder, name))
    done = subprocess.run(
        [JUPYTER, "nbconvert", "--to", "notebook", "--execute", name, "--output", "executed.ipynb",
         "--ExecutePreprocessor.timeout=600"],
        cwd=folder, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(os.path.join(folder, "executed.ipynb"), as_version=4)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    return [(cell.source, "".join(_text(o) for o in cell.outputs)) for cell in code]


def output_of(cells: list[tuple[str, str]], call: str) -> str:
    """The output of the first cell whose source ends with `call` (e.g. "train()")."""
    return next(output for source, output in cells if source.rstrip().endswith(call))


def _installs_only(cell) -> bool:
    """A cell of `! pip install` / `! apt-get install` lines (and comments): the package is installed."""
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return cell.cell_type == "code" and bool(lines) and all(INSTALL_LINE.match(line) for line in lines)


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join(output.traceback)
    return output.get("data", {}).get("text/plain", "")


def report_wer(text: str, test_csv: str) -> float:
    match = re.search(rf"Test on {re.escape(test_csv)} - WER: ([0-9.]+), CER: ([0-9.]+), loss: ([0-9.]+)", text)
    assert match, text[-2000:]
    return float(match.group(1))


def test_install_cells_are_the_only_cells_skipped():
    notebook = nbformat.read(os.path.join(NOTEBOOKS, "train_with_common_voice.ipynb"), as_version=4)
    skipped = [cell.source for cell in notebook.cells if _installs_only(cell)]
    assert len(skipped) == 1 and "pip install coqui_stt_training" in skipped[0] and "apt-get install" in skipped[0]
    assert not any(_installs_only(cell) for cell in notebook.cells if "ls serbian" in cell.source)


def test_train_your_first_coqui_stt_model(tmp_path):
    english = tmp_path / "english"
    english.mkdir()
    for name in ("LDC93S1.wav", "LDC93S1.txt"):
        shutil.copy(os.path.join(SMOKE, name), english / name)
    shutil.copy(ALPHABET, english / "alphabet.txt")
    cells = execute("train_your_first_coqui_STT_model.ipynb", tmp_path)
    assert 'Found archive "english/LDC93S1.wav" - not downloading.' in output_of(cells, "download_sample_data()")
    assert '"n_hidden": 200' in output_of(cells, "print(Config.to_json())")
    assert "FINISHED optimization" in output_of(cells, "train()")
    # 100 epochs on one sentence, as in the notebook: it has learnt it; the report is the last cell's output
    assert cells[-1][0].endswith("test()")
    assert report_wer(cells[-1][1], "english/ldc93s1.csv") < 0.5
    assert "Best WER" in cells[-1][1]
    assert os.path.exists(tmp_path / "ckpt_dir" / "best_dev_checkpoint")


def make_cudnn_english_checkpoint(tmp_path, target: str) -> None:
    """A small English model saved as Coqui saves one trained with --train_cudnn (TensorFlow format, the
    CuDNN LSTM's opaque kernel and its Adam slots beside the canonical weights, whose slots are absent),
    standing in for Coqui's yes/no release model."""
    trained, as_tf = str(tmp_path / "h64"), str(tmp_path / "h64-tf")
    args = ["--n_hidden", "64", "--epochs", "3", "--train_files", LDC, "--alphabet_config_path", ALPHABET]
    train.main([*args, "--checkpoint_dir", trained, "--log_level", "2"])  # a failure exits: the test errs
    convert.main(["--load_checkpoint_dir", trained, "--save_checkpoint_dir", as_tf, "--checkpoint_format", "tf"])
    reader = TFCheckpointReader(os.path.join(as_tf, "train-3"))
    lstm = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/"
    tensors = {n: reader.get(n) for n in reader.names() if not (n.startswith(lstm) and "/Adam" in n)}
    rng = np.random.default_rng(0)
    opaque = 4 * 64 * 64 * 2 + 8 * 64
    for name in ("", "/Adam", "/Adam_1"):
        tensors[f"cudnn_lstm/opaque_kernel{name}"] = rng.standard_normal(opaque).astype(np.float32)
    os.makedirs(target)
    write_tf_checkpoint(os.path.join(target, "best_dev-3"), tensors)
    for state in ("checkpoint", "best_dev_checkpoint"):
        with open(os.path.join(target, state), "w") as f:
            f.write('model_checkpoint_path: "best_dev-3"\nall_model_checkpoint_paths: "best_dev-3"\n')
    for name in ("flags.txt", "alphabet.txt"):
        shutil.copy(os.path.join(trained, name), os.path.join(target, name))


def test_easy_transfer_learning(tmp_path):
    make_cudnn_english_checkpoint(tmp_path, str(tmp_path / "english" / "coqui-yesno-checkpoints"))
    russian = tmp_path / "russian"
    russian.mkdir()
    for name, placed in (("ru.wav", "ru.wav"), ("ru.csv", "ru.csv"), ("alphabet.ru", "alphabet.txt")):
        shutil.copy(os.path.join(RUSSIAN, name), russian / placed)
    cells = execute("easy_transfer_learning.ipynb", tmp_path)
    extracted = output_of(cells, "download_pretrained_model()")
    assert 'Found "english/coqui-yesno-checkpoints" - not extracting.' in extracted
    assert '"drop_source_layers": 1' in output_of(cells, "print(Config.to_json())")
    trained = output_of(cells, "train()")
    assert "FINISHED optimization" in trained
    assert "english/coqui-yesno-checkpoints" in trained  # bootstrapped from it
    assert cells[-1][0].endswith("test()")
    assert report_wer(cells[-1][1], "russian/ru.csv") <= 1.0
    assert "Best WER" in cells[-1][1]
    assert os.path.exists(tmp_path / "russian" / "checkpoints" / "best_dev_checkpoint")


def test_train_with_common_voice(tmp_path):
    data = tmp_path / "serbian" / "sr-data"
    data.mkdir(parents=True)
    with open(os.path.join(SMOKE, "ldc93s1.csv")) as f:
        sentence = f.read().splitlines()[1].split(",")[2]

    def write(subset: str, files: list[str]) -> None:
        rows = [f"{os.path.join(SMOKE, f)},{os.path.getsize(os.path.join(SMOKE, f))},{sentence}" for f in files]
        (data / f"{subset}.csv").write_text("wav_filename,wav_filesize,transcript\n" + "\n".join(rows) + "\n")

    write("train", ["LDC93S1.wav", "LDC93S1.flac", "LDC93S1.ogg"])
    write("dev", ["LDC93S1.opus"])
    write("test", ["LDC93S1.wav"])
    cells = execute("train_with_common_voice.ipynb", tmp_path)
    assert "Found data - not extracting." in output_of(cells, "download_preformatted_data()")
    assert "train.csv" in output_of(cells, "*.csv")  # the notebook's own `! ls` and `! wc -l`
    assert "FINISHED optimization" in output_of(cells, "train()")
    assert cells[-1][0].endswith("test()")
    report_wer(cells[-1][1], "serbian/sr-data/test.csv")
    # no alphabet was given: as in Coqui, one made from the three sets' transcripts is saved with the model
    with open(tmp_path / "serbian" / "checkpoints" / "alphabet.txt") as f:
        assert set(f.read()) >= set(sentence)
