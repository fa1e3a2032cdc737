"""ONNX export (--export_tflite false): Coqui's streaming interface, the same probabilities as the checkpoint,
inference without torch."""

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

from coqui_stt_training import evaluate, export, inference, train
from coqui_stt_training.checkpoints.load import load_model
from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings, mfcc
from tests.helpers import ALPHABET, FIXTURES, LDC, LDC_WAV, ROOT, RUSSIAN, run

ENGLISH = os.path.join(FIXTURES, "ldc93s1-h100-e20", "checkpoint")
RUSSIAN_MODEL = os.path.join(FIXTURES, "ru-h100-drop1", "checkpoint")
RU_WAV = os.path.join(RUSSIAN, "ru.wav")
RU_CSV = os.path.join(RUSSIAN, "ru.csv")


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("export"))
    argv = ["--checkpoint_dir", ENGLISH, "--export_dir", directory, "--export_tflite", "false", "--export_quantize",
            "false"]  # fmt: skip
    assert run_export(argv) == 0
    return os.path.join(directory, "output_graph.onnx")


def test_int8_onnx_has_an_int8_lstm_and_the_probabilities_of_float32(english, tmp_path):
    """--export_quantize (true by default, as for Coqui's TFLite) gives the ONNX model an int8 LSTM and int8
    hidden dense layers; the output layer stays float32."""
    directory = str(tmp_path / "int8")
    assert run_export(["--checkpoint_dir", ENGLISH, "--export_dir", directory, "--export_tflite", "false"]) == 0
    int8 = os.path.join(directory, "output_graph.onnx")
    ops = {n.op_type for n in onnx.load(int8).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    integer = sorted(n.name for n in onnx.load(int8).graph.node if n.op_type == "MatMulInteger")
    assert integer == [f"/layer_{n}/Gemm_MatMul_quant" for n in (1, 2, 3, 5)]
    assert os.path.getsize(int8) < 0.4 * os.path.getsize(english)  # (0.29 here, 0.25 at n_hidden 2048)
    quantized, plain = OnnxModel(int8), OnnxModel(english)
    assert (quantized.n_hidden, quantized.features, quantized.alphabet.labels) == (
        plain.n_hidden, plain.features, plain.alphabet.labels
    )  # fmt: skip
    features = mfcc(load_audio(LDC_WAV, 16000), FeatureSettings())
    difference = np.abs(quantized.probabilities(features) - plain.probabilities(features))
    assert 0 < difference.max() < 5e-3  # as Coqui's own int8 TFLite export of it (4.1e-3; a trained model's
    # transcripts are checked in test_scorer.py, whose LDC93S1 export is int8; real speech in docs/benchmarks.md)


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
    settings = (meta["sample_rate"], meta["feature_win_len"], meta["feature_win_step"], meta["n_steps"])
    assert settings == ("16000", "32", "20", "16")
    labels = json.loads(meta["alphabet"])
    assert labels[0] == " "
    assert labels[1:27] == list("abcdefghijklmnopqrstuvwxyz")
    assert len(labels) == 28
    packed = base64.b64decode(meta["coqui_alphabet"])  # Coqui's Alphabet::Serialize, as its graphs embed it
    assert struct.unpack_from("<H", packed)[0] == 28
    assert packed[2:7] == struct.pack("<HH", 0, 1) + b" "
    with open(os.path.join(os.path.dirname(english), "author_model_0.0.1.md")) as f:
        card = f.read()
    assert card.startswith("---\nauthor: author\nmodel_name: model\nmodel_version: 0.0.1\n")
    assert "\nruntime: onnx\n" in card


def test_onnx_gives_the_checkpoints_probabilities_whole_or_streamed(english):
    loaded = load_model(ENGLISH, load_alphabet(os.path.join(ENGLISH, "alphabet.txt")))
    features = mfcc(load_audio(LDC_WAV, 16000), FeatureSettings())
    with torch.no_grad():
        expected = torch.softmax(loaded.model(torch.from_numpy(features)[None]), -1)[:, 0].numpy()  # [T, C]
    onnx_model = OnnxModel(english)
    whole = onnx_model.probabilities(features, n_steps=0)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    for n_steps in (16, 7, 1):  # 16 frames at a time as Coqui's clients feed it, and odd chunkings
        streamed = onnx_model.probabilities(features, n_steps=n_steps)
        assert streamed.shape == (145, 29)
        np.testing.assert_allclose(streamed, whole, atol=1e-4, err_msg=f"n_steps {n_steps}")


def test_inference_without_torch_transcribes_as_the_checkpoint_does(tmp_path, cli):
    directory = str(tmp_path / "ru")
    argv = ["--checkpoint_dir", RUSSIAN_MODEL, "--export_dir", directory, "--export_onnx", "true",
            "--export_quantize", "false"]  # the checkpoint's own arithmetic: float32  # fmt: skip
    assert run_export(argv) == 0
    status, log = cli(evaluate.main, ["--checkpoint_dir", RUSSIAN_MODEL, "--test_files", RU_CSV])
    assert status == 0, log
    expected = log.split(' - res: "')[1].split('"')[0]
    assert expected.strip()
    assert not expected.isascii()  # a real Cyrillic transcript
    # a subprocess is the point here: a fresh interpreter in which any import of torch fails
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from coqui_stt_training.inference import main\n"
        f"main(['--model', {os.path.join(directory, 'output_graph.onnx')!r}, '--audio', {RU_WAV!r}])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{RU_WAV}: {expected}\n"


def test_an_existing_export_is_never_overwritten(tmp_path, cli):
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "output_graph.onnx").write_bytes(b"the user's own file")
    argv = ["--checkpoint_dir", ENGLISH, "--export_dir", str(directory), "--export_tflite", "false"]
    status, log = cli(export.main, argv)
    assert status == 1
    message = f"E {directory}/output_graph.onnx exists; choose another --export_dir or --export_file_name, or pass "
    assert message + "--remove_export true" in log
    assert "Loading" not in log  # refused before any work
    assert (directory / "output_graph.onnx").read_bytes() == b"the user's own file"
    assert run_export(argv + ["--remove_export", "true"]) == 0
    onnx.checker.check_model(onnx.load(str(directory / "output_graph.onnx")))


def test_inference_names_a_file_it_cannot_use(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit) as stopped:
        inference.main(["--model", str(bad), "--audio", LDC_WAV])
    assert str(stopped.value.code).startswith(f"E {bad}: cannot load the model (")  # printed; exit status 1


def test_training_with_export_dir_exports_its_result(tmp_path, capsys):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "model")
    argv = ["--alphabet_config_path", ALPHABET, "--n_hidden", "24", "--show_progressbar", "false", "--epochs", "1",
            "--train_files", LDC, "--checkpoint_dir", ckpt, "--export_dir", out, "--export_onnx", "true"]  # fmt: skip
    status, log = run(train.main, argv, capsys)
    assert status == 0, log
    assert f"Exported {out}/output_graph.tflite (int8 weights, " in log
    assert f"Exported {out}/output_graph.onnx (int8 weights, for onnxruntime, " in log
    assert OnnxModel(os.path.join(out, "output_graph.onnx")).n_hidden == 24
