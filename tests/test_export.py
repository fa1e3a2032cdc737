"""ONNX export: Coqui's streaming interface, the same probabilities as the checkpoint, inference without torch."""

import base64
import json
import os
import struct
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from cli import run

from coqui_stt_training import evaluate, export
from coqui_stt_training.audio import load_audio
from coqui_stt_training.config import Config
from coqui_stt_training.features import mfcc
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.train import setup_evaluation

ROOT = os.path.join(os.path.dirname(__file__), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "coqui-1.4.0")
ENGLISH = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")
RUSSIAN = os.path.join(FIXTURES, "ru-h100-drop1", "checkpoint")
SMOKE = os.path.join(ROOT, "data", "smoke_test")
RU_WAV = os.path.join(SMOKE, "russian_sample_data", "ru.wav")
RU_CSV = os.path.join(SMOKE, "russian_sample_data", "ru.csv")


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("export"))
    run_export(["--checkpoint_dir", ENGLISH, "--export_dir", directory])
    return os.path.join(directory, "output_graph.onnx")


def run_export(argv):
    try:
        export.main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_the_model_keeps_coquis_interface_and_says_what_it_needs(english):
    proto = onnx.load(english)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    outputs = [o.name for o in proto.graph.output]
    assert inputs == {
        "input_node": ["batch", "steps", 19, 26],
        "previous_state_c": ["batch", 100],
        "previous_state_h": ["batch", 100],
    }
    assert outputs == ["logits", "new_state_c", "new_state_h"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert (meta["sample_rate"], meta["feature_win_len"], meta["feature_win_step"], meta["n_steps"]) == (
        "16000",
        "32",
        "20",
        "16",
    )
    labels = json.loads(meta["alphabet"])
    assert labels[0] == " " and labels[1:27] == list("abcdefghijklmnopqrstuvwxyz") and len(labels) == 28
    packed = base64.b64decode(meta["coqui_alphabet"])  # Coqui's Alphabet::Serialize, as its graphs embed it
    assert struct.unpack_from("<H", packed)[0] == 28 and packed[2:7] == struct.pack("<HH", 0, 1) + b" "
    card = os.path.join(os.path.dirname(english), "author_model_0.0.1.md")
    assert open(card).read().startswith('---\nauthor: "author"\nmodel_name: "model"\nmodel_version: "0.0.1"\n')


def test_onnx_gives_the_checkpoints_probabilities_whole_or_streamed(english):
    config = Config(checkpoint_dir=ENGLISH).finalize()
    model, _, _ = setup_evaluation(config, ENGLISH)
    samples = load_audio(os.path.join(SMOKE, "LDC93S1.wav"), 16000)
    features, _ = mfcc(torch.from_numpy(samples), None, 16000)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(features[None]), -1)[:, 0].numpy()  # [T, C]
    onnx_model = OnnxModel(english)
    whole = onnx_model.probabilities(features.numpy(), n_steps=0)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    for n_steps in (16, 7, 1):  # 16 frames at a time as Coqui's clients feed it, and odd chunkings
        streamed = onnx_model.probabilities(features.numpy(), n_steps=n_steps)
        assert streamed.shape == whole.shape == (145, 29)
        np.testing.assert_allclose(streamed, whole, atol=1e-4, err_msg=f"n_steps {n_steps}")


def test_inference_without_torch_transcribes_as_the_checkpoint_does(tmp_path, capsys):
    directory = str(tmp_path / "ru")
    assert run_export(["--checkpoint_dir", RUSSIAN, "--export_dir", directory]) == 0
    status, log = run(evaluate.main, ["--checkpoint_dir", RUSSIAN, "--test_files", RU_CSV], capsys)
    expected = log.split(' - res: "')[1].split('"')[0]
    assert status == 0 and expected.strip() and not expected.isascii()  # a real Cyrillic transcript
    script = (
        "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
        "from coqui_stt_training.inference import main\n"
        f"main(['--model', {os.path.join(directory, 'output_graph.onnx')!r}, '--audio', {RU_WAV!r}])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{RU_WAV}: {expected}\n"


def test_an_existing_export_is_never_overwritten(tmp_path, capsys):
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "output_graph.onnx").write_bytes(b"the user's own file")
    argv = ["--checkpoint_dir", ENGLISH, "--export_dir", str(directory)]
    status, log = run(export.main, argv, capsys)
    assert (
        status == 1
        and (
            f"E {directory}/output_graph.onnx exists; choose another --export_dir or "
            "--export_file_name, or pass --remove_export true"
        )
        in log
    )
    assert "Loading" not in log  # refused before any work
    assert (directory / "output_graph.onnx").read_bytes() == b"the user's own file"
    assert run_export(argv + ["--remove_export", "true"]) == 0
    onnx.checker.check_model(onnx.load(str(directory / "output_graph.onnx")))


def test_inference_names_a_file_it_cannot_use(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coqui_stt_training.inference",
            "--model",
            str(bad),
            "--audio",
            os.path.join(SMOKE, "LDC93S1.wav"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.startswith(f"E {bad}: cannot load the model (")


def test_training_with_export_dir_exports_its_result(tmp_path, capsys):
    from coqui_stt_training import train

    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "model")
    status, log = run(
        train.main,
        [
            "--alphabet_config_path",
            os.path.join(ROOT, "data", "alphabet.txt"),
            "--n_hidden",
            "24",
            "--show_progressbar",
            "false",
            "--epochs",
            "1",
            "--train_files",
            os.path.join(SMOKE, "ldc93s1.csv"),
            "--checkpoint_dir",
            ckpt,
            "--export_dir",
            out,
        ],
        capsys,
    )
    assert status == 0 and f"Models exported at {out}: output_graph.onnx" in log, log
    assert OnnxModel(os.path.join(out, "output_graph.onnx")).n_hidden == 24
