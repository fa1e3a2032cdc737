"""TFLite in and out: our export against Coqui's own, importing Coqui's exports (.tflite int8 and float32,
.pb) as checkpoints, the round trip, and refusals. The native client's view is in test_native_client.py."""

import glob
import os
import zipfile

import numpy as np
import pytest
import torch

from coqui_stt_training import convert, evaluate, export, train
from coqui_stt_training.checkpoints.from_export import open_exported
from coqui_stt_training.checkpoints.load import load_model
from coqui_stt_training.checkpoints.store import open_checkpoint
from coqui_stt_training.exports.to_tflite import tflite_bytes
from coqui_stt_training.formats import tflite
from coqui_stt_training.model.alphabet import load_alphabet, serialize_binary
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.features import FeatureSettings, context_windows
from tests.helpers import FIXTURES, LDC, RUSSIAN
from tests.tflite_hybrid import int8_layers, int8_probabilities

MODELS = {"ldc93s1-h100-e20": "alphabet.txt", "ru-h100-drop1": "alphabet.txt"}
EXPORTS = ["output_graph.tflite", "output_graph_fp32.tflite", "output_graph.pb"]
REFERENCE = {"output_graph.tflite": "tflite", "output_graph_fp32.tflite": "tflite_fp32", "output_graph.pb": "pb"}
RU_CSV = os.path.join(RUSSIAN, "ru.csv")
RU_ALPHABET = os.path.join(RUSSIAN, "alphabet.ru")


def checkpoint_dir(model: str) -> str:
    return os.path.join(FIXTURES, model, "checkpoint")


def coqui_export(model: str, name: str) -> str:
    return os.path.join(FIXTURES, model, "export", name)


def coqui_checkpoint(model: str):
    (index,) = glob.glob(os.path.join(checkpoint_dir(model), "best_dev-*.index"))
    return open_checkpoint(index[: -len(".index")])


def run_tool(main, argv) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def our_exports(tmp_path_factory):
    """Our export of each fixture checkpoint, int8 (the default) and float32, through the command line."""
    out = {}
    for model in MODELS:
        for quantize in ("true", "false"):
            directory = str(tmp_path_factory.mktemp(f"{model}-{quantize}"))
            argv = ["--checkpoint_dir", checkpoint_dir(model), "--export_dir", directory, "--export_quantize", quantize]
            assert run_tool(export.main, argv) == 0
            out[model, quantize == "true"] = os.path.join(directory, "output_graph.tflite")
    return out


def weights(graph: tflite.Graph) -> dict[str, tflite.Tensor]:
    """Fully connected layers' weights by scope (layer_1 ... layer_6, cudnn_lstm)."""
    found = {}
    for op in graph.operators:
        if op.op == "FULLY_CONNECTED":
            tensor = graph.tensors[op.inputs[1]]
            found.setdefault(tensor.name.split("/")[0], tensor)
    return found


@pytest.mark.parametrize("model", MODELS)
def test_our_int8_export_holds_the_int8_weights_coquis_converter_wrote(model, our_exports):
    with open(our_exports[model, True], "rb") as f:
        ours = weights(tflite.read(f.read()))
    with open(coqui_export(model, "output_graph.tflite"), "rb") as f:
        theirs = weights(tflite.read(f.read()))
    assert sorted(ours) == ["cudnn_lstm", "layer_1", "layer_2", "layer_3", "layer_5", "layer_6"]
    for scope, tensor in ours.items():
        assert tensor.dtype == np.int8, scope
        assert tensor.array().tobytes() == theirs[scope].array().tobytes(), scope
        assert tensor.scale is not None and theirs[scope].scale is not None
        assert tensor.scale.tolist() == theirs[scope].scale.tolist(), scope


def test_our_export_has_every_tensor_the_native_client_looks_up(our_exports):
    with open(our_exports["ru-h100-drop1", False], "rb") as f:
        graph = tflite.read(f.read())
    shapes = {graph.tensors[i].name: graph.tensors[i].shape for i in graph.inputs}
    assert shapes == {
        "input_node": (1, 16, 19, 26),
        "previous_state_c": (1, 100),
        "previous_state_h": (1, 100),
        "input_samples": (512,),
    }
    outputs = {graph.tensors[i].name: graph.tensors[i] for i in graph.outputs}
    assert outputs["logits"].shape == (16, 35)
    assert outputs["new_state_c"].shape == outputs["new_state_h"].shape == (1, 100)
    assert outputs["mfccs"].shape == (1, 26)
    custom = [op.op for op in graph.operators if op.op in ("AudioSpectrogram", "Mfcc")]
    assert custom == ["AudioSpectrogram", "Mfcc"]
    values = {}
    for name in outputs:
        if name.startswith("metadata_"):
            producer = graph.producer(graph.index(name))
            assert producer is not None, name  # the client runs the metadata operators once to read them
            source = graph.tensors[producer.inputs[0]]
            values[name] = source.strings()[0] if source.dtype == tflite.STRING else int(source.array()[0])
    assert values["metadata_version"] == 6
    assert values["metadata_sample_rate"] == 16000
    assert (values["metadata_feature_win_len"], values["metadata_feature_win_step"]) == (32, 20)
    assert values["metadata_beam_width"] == 500
    ru = load_alphabet(os.path.join(checkpoint_dir("ru-h100-drop1"), "alphabet.txt"))
    assert values["metadata_alphabet"] == serialize_binary(ru)
    assert values["metadata_language"].startswith(b"<language the model was trained on")


def test_our_model_card_is_coquis(our_exports):
    directory = os.path.dirname(our_exports["ldc93s1-h100-e20", True])
    with open(os.path.join(directory, "author_model_0.0.1.md"), encoding="utf-8") as f:
        ours = f.read()
    with open(coqui_export("ldc93s1-h100-e20", "author_model_0.0.1.md"), encoding="utf-8") as f:
        assert ours == f.read()


@pytest.mark.parametrize("name", EXPORTS)
@pytest.mark.parametrize("model", MODELS)
def test_importing_coquis_export_gives_its_checkpoint(model, name):
    imported, original = open_exported(coqui_export(model, name)), coqui_checkpoint(model)
    assert imported.alphabet().labels == load_alphabet(os.path.join(checkpoint_dir(model), MODELS[model])).labels
    assert (imported.metadata.sample_rate, imported.metadata.beam_width) == (16000, 500)
    scales = {}
    if name == "output_graph.tflite":
        with open(coqui_export(model, name), "rb") as f:
            scales = {scope: t.scale[0] for scope, t in weights(tflite.read(f.read())).items()}
    assert len(imported.names()) == 12
    for tensor in imported.names():
        error = np.abs(imported.get(tensor) - original.get(tensor)).max()
        scope = tensor.split("/")[0]
        if scope in scales and not tensor.endswith("bias"):
            assert error <= scales[scope] * (0.5 + 1e-4), tensor  # half a quantisation step (+ float32 rounding)
        else:
            assert error == 0, tensor  # float32 stored as float32


def client_streaming(model: DeepSpeech, mfccs: np.ndarray, n_steps: int = 16) -> np.ndarray:
    """Probabilities as the native client computes them: 9 zero frames of context either side, n_steps
    windows per call with the LSTM state carried, the last call zero-padded."""
    windows = context_windows(torch.from_numpy(mfccs)[None])
    state, out = None, []
    with torch.no_grad():
        for start in range(0, windows.shape[1], n_steps):
            chunk = windows[:, start : start + n_steps]
            real = chunk.shape[1]
            chunk = torch.nn.functional.pad(chunk, (0, 0, 0, 0, 0, n_steps - real))
            logits, new_state = model.from_windows(chunk, state)
            out.append(torch.softmax(logits[:real, 0], -1))
            state = new_state
    return torch.cat(out).numpy()


def imported_model(path: str) -> DeepSpeech:
    loaded = load_model(path, open_exported(path).alphabet())
    return loaded.model


@pytest.mark.parametrize("name", ["output_graph_fp32.tflite", "output_graph.pb"])
@pytest.mark.parametrize("model", MODELS)
def test_an_imported_float_export_reproduces_tensorflows_probabilities(model, name):
    net = imported_model(coqui_export(model, name))
    with np.load(coqui_export(model, f"reference_{REFERENCE[name]}.npz")) as reference:
        for i in (0, 1):
            ours = client_streaming(net, reference[f"mfccs_{i}"])
            np.testing.assert_allclose(ours, reference[f"probs_{i}"], atol=1e-4, err_msg=f"{name} file {i}")


@pytest.mark.parametrize("model", MODELS)
def test_an_imported_int8_export_keeps_its_int8_weights_and_computes_its_probabilities(model):
    """Quantising the imported weights again gives back the file's int8 bytes and scales exactly, and TFLite's
    int8 arithmetic on them (tests/tflite_hybrid.py) reproduces what TensorFlow computed from the file."""
    path = coqui_export(model, "output_graph.tflite")
    imported = open_exported(path)
    with open(path, "rb") as f:
        stored = weights(tflite.read(f.read()))
    for scope, (q, scale, _) in int8_layers(imported).items():
        assert q.tobytes() == stored[scope].array().tobytes(), scope
        assert stored[scope].scale is not None
        assert scale == stored[scope].scale[0], scope
    with np.load(coqui_export(model, "reference_tflite.npz")) as reference:
        for i in (0, 1):
            ours = int8_probabilities(imported, reference[f"mfccs_{i}"])
            np.testing.assert_allclose(ours, reference[f"probs_{i}"], atol=1e-4, err_msg=f"file {i}")


@pytest.mark.parametrize("quantize", [False, True])
def test_round_trip_checkpoint_tflite_checkpoint(quantize, our_exports):
    original = coqui_checkpoint("ru-h100-drop1")
    imported = open_exported(our_exports["ru-h100-drop1", quantize])
    assert sorted(imported.names()) == sorted(n for n in original.names() if "/" in n and "Adam" not in n)
    for name in imported.names():
        error = np.abs(imported.get(name) - original.get(name)).max()
        if quantize and not name.endswith("bias"):
            bound = np.abs(original.get(name)).max() / 127 / 2
            assert error <= bound * (1 + 2e-4), name
        else:
            assert error == 0, name


def test_fine_tune_and_transfer_from_an_int8_tflite(tmp_path, cli):
    source = coqui_export("ldc93s1-h100-e20", "output_graph.tflite")
    save = str(tmp_path / "ru")
    argv = ["--load_checkpoint_dir", source, "--drop_source_layers", "1", "--alphabet_config_path", RU_ALPHABET,
            "--save_checkpoint_dir", save, "--train_files", RU_CSV, "--epochs", "2", "--log_level", "1",
            "--show_progressbar", "false"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 0, log
    assert f"Loading the exported model {source} (its weights; it holds no optimizer state)" in log
    assert "layer_5/weights" in log and "loaded; Adam moments: zero (an exported model has none)" in log
    assert "Learning rate from --learning_rate; global step 0; an exported model holds no optimizer state" in log
    assert os.path.isfile(os.path.join(save, "best_dev_checkpoint")) or os.path.isfile(os.path.join(save, "checkpoint"))
    # fine-tuning (same alphabet): n_hidden and the alphabet come from the model itself
    status, log = cli(
        train.main,
        ["--load_checkpoint_dir", os.path.dirname(source), "--save_checkpoint_dir", str(tmp_path / "en"),
         "--train_files", LDC, "--epochs", "1", "--show_progressbar", "false"],
    )  # fmt: skip
    assert status == 0, log
    assert f"Using the alphabet of the exported model {source}" in log
    assert "WARNING" not in log  # n_hidden 100 is the export's: no --n_hidden was given to warn about


def test_convert_an_export_into_a_checkpoint_directory(tmp_path, cli):
    source = coqui_export("ru-h100-drop1", "output_graph.pb")
    target = str(tmp_path / "ckpt")
    status, log = cli(convert.main, ["--load_checkpoint_dir", source, "--save_checkpoint_dir", target])
    assert status == 0, log
    assert sorted(os.listdir(target)) == ["alphabet.txt", "checkpoint", "flags.txt", "train-0.safetensors"]
    written, original = open_checkpoint(os.path.join(target, "train-0")), coqui_checkpoint("ru-h100-drop1")
    for name in open_exported(source).names():
        assert np.array_equal(written.get(name), original.get(name)), name
    assert not written.get(f"{name}/Adam").any()
    assert "learning_rate" not in written
    status, log = cli(evaluate.main, ["--checkpoint_dir", target, "--test_files", RU_CSV])
    assert status == 0, log
    status, log = cli(convert.main, ["--load_checkpoint_dir", source, "--save_checkpoint_dir", target])
    assert status == 1
    assert "already holds checkpoints" in log


def foreign_tflite(path: str) -> None:
    """A valid TFLite model that is not a Coqui STT one: one ADD of two inputs."""
    tensors = [tflite.Tensor(name, (4,), np.dtype(np.float32)) for name in ("a", "b", "sum")]
    graph = tflite.Graph(tensors, [tflite.Operator("ADD", [0, 1], [2])], [0, 1], [2])
    with open(path, "wb") as f:
        f.write(tflite.write(graph))


def test_foreign_damaged_and_mismatched_exports_are_refused_in_one_line(tmp_path, cli, our_exports):
    foreign = str(tmp_path / "other.tflite")
    foreign_tflite(foreign)
    with open(our_exports["ldc93s1-h100-e20", True], "rb") as f:
        data = f.read()
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(data[: len(data) // 3])
    not_a_model = tmp_path / "notes.pb"
    not_a_model.write_bytes(b"\xff" * 100)
    save = tmp_path / "out"
    cases = [
        (foreign, "it is not a Coqui STT model (its tensors lack Coqui's names)"),
        (str(truncated), "damaged or truncated TensorFlow Lite model"),
        (str(not_a_model), f"E {not_a_model}: "),
    ]
    for path, message in cases:
        status, log = cli(train.main, ["--load_checkpoint_dir", path, "--save_checkpoint_dir", str(save),
                                       "--train_files", LDC, "--epochs", "1"])  # fmt: skip
        assert status == 1, path
        assert message in log, log
        assert len(log.strip().splitlines()) <= 3, log  # a line, no traceback
        assert not save.exists()  # nothing written
    # an alphabet that does not fit the model's output layer, without --drop_source_layers
    source = coqui_export("ldc93s1-h100-e20", "output_graph.tflite")
    argv = ["--load_checkpoint_dir", source, "--alphabet_config_path", RU_ALPHABET, "--save_checkpoint_dir", str(save),
            "--train_files", RU_CSV, "--epochs", "1"]  # fmt: skip
    status, log = cli(train.main, argv)
    assert status == 1
    assert f"{source} was trained for another alphabet ({source} (metadata_alphabet): 28 labels" in log
    assert not save.exists()


def test_an_export_whose_alphabet_does_not_fit_its_output_layer_is_refused(tmp_path, our_exports):
    with open(our_exports["ldc93s1-h100-e20", False], "rb") as f:
        graph = tflite.read(f.read())
    copy = graph.tensors[graph.index("metadata_alphabet_copy")]
    copy.data = tflite.encode_strings([serialize_binary(load_alphabet(RU_ALPHABET))])
    path = tmp_path / "inconsistent.tflite"
    path.write_bytes(tflite.write(graph))
    with pytest.raises(Exception, match="its alphabet has 34 labels but its output layer 29 classes"):
        open_exported(str(path))


def test_layer_norm_models_say_they_export_to_onnx():
    model = DeepSpeech(ModelDimensions(8, 29, layer_norm=True))
    with pytest.raises(Exception, match="--layer_norm model has no TFLite export here"):
        tflite_bytes(model, load_alphabet(os.path.join(checkpoint_dir("ldc93s1-h100-e20"), "alphabet.txt")),
                     FeatureSettings())  # fmt: skip


def test_export_zip_packs_the_model_its_card_and_the_scorer(tmp_path, cli):
    scorer = os.path.join(os.path.dirname(LDC), "pruned_lm.scorer")
    directory = tmp_path / "en"
    argv = ["--checkpoint_dir", checkpoint_dir("ldc93s1-h100-e20"), "--export_dir", str(directory),
            "--export_zip", "true", "--scorer_path", scorer]  # fmt: skip
    status, log = cli(export.main, argv)
    assert status == 0, log
    with zipfile.ZipFile(tmp_path / "en.zip") as archive:
        assert sorted(archive.namelist()) == ["author_model_0.0.1.md", "output_graph.tflite", "pruned_lm.scorer"]
        assert archive.read("output_graph.tflite") == (directory / "output_graph.tflite").read_bytes()
    status, log = cli(export.main, argv)  # the zip is there now: never replaced
    assert status == 1
    assert f"{tmp_path / 'en.zip'} exists; --export_zip never replaces a file" in log
    (tmp_path / "en.zip").unlink()
    status, log = cli(export.main, argv)  # Coqui's rule: the directory must be empty
    assert status == 1
    assert f"Directory {directory} is not empty, please fix this." in log
