"""coqui_stt_training.client against Coqui's native client (`stt` 1.4.0, tests/native_client): the same
transcripts, metadata, streaming and intermediate decodes on Coqui's own exports, with and without a scorer
and with hot words; and the probabilities of its runtimes against TensorFlow's and libstt's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from coqui_stt_training.checkpoints.from_export import open_exported
from coqui_stt_training.client import Model
from coqui_stt_training.decoding.streaming import ClientStream
from coqui_stt_training.model.features import context_windows
from coqui_stt_training.model.numpy_runtime import NumpyDeepSpeech
from tests import native_client
from tests.helpers import ROOT

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "coqui-1.4.0")
LDC_WAV = os.path.join(ROOT, "data", "smoke_test", "LDC93S1.wav")
RU_WAV = os.path.join(ROOT, "data", "smoke_test", "russian_sample_data", "ru.wav")
SCORER = os.path.join(ROOT, "data", "smoke_test", "pruned_lm.scorer")
MODELS = ["ldc93s1-h100-e20", "ru-h100-drop1"]


def read_wav(path: str) -> np.ndarray:
    with wave.open(path) as f:
        return np.frombuffer(f.readframes(f.getnframes()), np.int16)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("export, reference", [("output_graph_fp32.tflite", "reference_tflite_fp32.npz"),
                                               ("output_graph.pb", "reference_pb.npz")])  # fmt: skip
def test_the_numpy_runtime_computes_what_tensorflow_computes(model, export, reference):
    folder = os.path.join(FIXTURES, model, "export")
    network = NumpyDeepSpeech(open_exported(os.path.join(folder, export)).get)
    with np.load(os.path.join(folder, reference)) as expected:
        for i in range(2):
            windows = context_windows(expected[f"mfccs_{i}"][None])[0]
            state, probs = network.zero_state(), []
            for start in range(0, len(windows), 16):
                out, state = network.step(windows[start : start + 16], state)
                probs.append(out)
            np.testing.assert_allclose(np.concatenate(probs), expected[f"probs_{i}"], atol=1e-6)


@pytest.fixture(scope="module")
def client():
    return native_client.client_python()  # built once and cached, or the module skips with the reason


def ours(model_path: str, job: dict) -> list[dict]:
    """run_api.py's job, through our client."""
    model = Model(model_path)
    if job["beam_width"]:
        model.setBeamWidth(job["beam_width"])
    if job["scorer"]:
        model.enableExternalScorer(job["scorer"])
        if job["alpha_beta"]:
            model.setScorerAlphaBeta(*job["alpha_beta"])
        for word, boost in job["hot_words"].items():
            model.addHotWord(word, boost)
    out = []
    for path in job["wavs"]:
        audio = read_wav(path)
        stream, intermediate = model.createStream(), []
        for start in range(0, len(audio), job["chunk"]):
            stream.feedAudioContent(audio[start : start + job["chunk"]])
            intermediate.append(stream.intermediateDecode())
        flushing, flushed = model.createStream(), []
        for start in range(0, len(audio), 3 * job["chunk"]):
            flushing.feedAudioContent(audio[start : start + 3 * job["chunk"]])
            flushed.append(flushing.intermediateDecodeFlushBuffers())
        flushed.append(flushing.finishStream())
        result = model.sttWithMetadata(audio, job["num_results"])
        metadata = [{"confidence": c.confidence, "tokens": [[t.text, t.timestep, t.start_time] for t in c.tokens]}
                    for c in result.transcripts]  # fmt: skip
        out.append({"stt": model.stt(audio), "metadata": metadata, "intermediate": intermediate,
                    "finish": stream.finishStream(), "flushed": flushed})  # fmt: skip
    return out


CASES = {  # (export, scorer, alpha/beta, hot words, beam width, chunk in samples)
    "fp32, no scorer, beam 100": ("output_graph_fp32.tflite", "", None, {}, 100, 1600),
    "fp32, scorer, hot words": ("output_graph_fp32.tflite", SCORER, None, {"she": 8.0, "dark": -3.0}, 0, 4999),
    "fp32, scorer, weights, beam 16": ("output_graph_fp32.tflite", SCORER, [1.5, 0.5], {}, 16, 321),
    "int8, no scorer, beam 64": ("output_graph.tflite", "", None, {}, 64, 999),
    "int8, scorer, hot words, beam 64": ("output_graph.tflite", SCORER, None, {"year": 4.0}, 64, 5120),
}


@pytest.mark.parametrize("case", CASES)
def test_the_client_api_answers_as_coquis_native_client(case, client):
    export, scorer, alpha_beta, hot_words, beam_width, chunk = CASES[case]
    for model in MODELS:
        if model.startswith("ru") and scorer:
            continue  # an English scorer: the Russian alphabet cannot spell it
        job = {"model": os.path.join(FIXTURES, model, "export", export), "scorer": scorer, "alpha_beta": alpha_beta,
               "hot_words": hot_words, "beam_width": beam_width, "wavs": [LDC_WAV, RU_WAV], "chunk": chunk,
               "num_results": 3}  # fmt: skip
        expected, got = native_client.client_api(job), ours(job["model"], job)
        for theirs, mine in zip(expected, got):
            assert mine["stt"] == theirs["stt"] and mine["finish"] == theirs["finish"], (case, model)
            assert mine["intermediate"] == theirs["intermediate"], (case, model)
            assert mine["flushed"] == theirs["flushed"], (case, model)
            assert len(mine["metadata"]) == len(theirs["metadata"])
            for a, b in zip(mine["metadata"], theirs["metadata"]):
                assert a["tokens"] == b["tokens"], (case, model)
                assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-3)


@pytest.mark.parametrize("flags", [[], ["--json", "--scorer", SCORER, "--hot_words", "she:3.5,year:1"],
                                   ["--extended", "--beam_width", "32", "--scorer", SCORER, "--lm_alpha", "1.2",
                                    "--lm_beta", "0.3"]])  # fmt: skip
def test_the_command_prints_what_coquis_stt_command_prints(flags, client):
    model = os.path.join(FIXTURES, "ldc93s1-h100-e20", "export", "output_graph_fp32.tflite")
    argv = ["--model", model, "--audio", LDC_WAV, *flags]
    # (the environment's `stt` script names the folder it was built in: its entry point is called instead)
    coquis = subprocess.run([client, "-c", "from stt.client import main; main()", *argv],
                            capture_output=True, text=True)  # fmt: skip
    assert coquis.returncode == 0, coquis.stderr
    ours = subprocess.run([sys.executable, "-m", "coqui_stt_training.client", *argv, "--stream", "3000"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    if "--json" not in flags:
        assert ours.stdout == coquis.stdout
        return
    # the same words and times; confidences as close as float32 probabilities within 4e-7 of TFLite's allow
    theirs, mine = json.loads(coquis.stdout)["transcripts"], json.loads(ours.stdout)["transcripts"]
    assert [t["words"] for t in mine] == [t["words"] for t in theirs]
    assert [t["confidence"] for t in mine] == pytest.approx([t["confidence"] for t in theirs], abs=1e-3)


def test_bad_input_gets_coquis_errors(tmp_path):
    with pytest.raises(RuntimeError, match=r"CreateModel failed with 'Error reading the proto buffer model file.'"):
        Model(os.path.join(ROOT, "README.md"))
    model = Model(os.path.join(FIXTURES, "ru-h100-drop1", "export", "output_graph_fp32.tflite"))
    with pytest.raises(RuntimeError, match=r"AddHotWord failed with 'External scorer is not enabled.' \(0x2004\)"):
        model.addHotWord("да", 2.0)
    with pytest.raises(RuntimeError, match=r"EnableExternalScorer failed with 'Could not read scorer file.'"):
        model.enableExternalScorer(str(tmp_path / "missing.scorer"))
    with pytest.raises(
        RuntimeError,
        match=r"EnableExternalScorer failed with 'Invalid scorer file.' \(0x2002\): "
        r".*pruned_lm.scorer: built for another alphabet: 200 of the first 200 words",
    ):
        model.enableExternalScorer(SCORER)  # English: spelled in the Russian alphabet, no word is the model's
    stream = model.createStream()
    stream.feedAudioContent(read_wav(RU_WAV))
    stream.finishStream()
    with pytest.raises(RuntimeError, match=r"Stream object is not valid. Trying to feed an already finished stream\?"):
        stream.feedAudioContent(read_wav(RU_WAV))


def test_the_readme_models_export_streams_as_in_coquis_client(ldc_model, client):
    """The README's LDC93S1 model, exported by us (int8 .tflite): the client reads the sentence, as libstt does,
    with and without Coqui's CI scorer, in uneven chunks."""
    _, export_dir = ldc_model
    for scorer, chunk in (("", 777), (SCORER, 4000)):
        job = {"model": os.path.join(export_dir, "output_graph.tflite"), "scorer": scorer, "alpha_beta": None,
               "hot_words": {}, "beam_width": 0, "wavs": [LDC_WAV], "chunk": chunk, "num_results": 2}  # fmt: skip
        (theirs,), (mine,) = native_client.client_api(job), ours(job["model"], job)
        assert mine["stt"] == theirs["stt"] == "she had your dark suit in greasy wash water all year"
        assert mine["intermediate"] == theirs["intermediate"] and mine["finish"] == theirs["finish"]
        assert [m["tokens"] for m in mine["metadata"]] == [m["tokens"] for m in theirs["metadata"]]


def test_an_app_written_for_stt_runs_with_only_its_import_changed(ldc_model, client, tmp_path):
    """docs/examples/stt_app.py (streams, metadata, a scorer, hot words) under Coqui's `stt` 1.4.0 on Python 3.10,
    and on this Python with its one import changed: the same output, line for line."""
    app = os.path.join(ROOT, "docs", "examples", "stt_app.py")
    with open(app, encoding="utf-8") as f:
        source = f.read()
    assert source.count("from stt import Model\n") == 1
    ported = tmp_path / "stt_app.py"
    ported.write_text(source.replace("from stt import Model\n", "from coqui_stt_training.client import Model\n"))
    _, export_dir = ldc_model
    argv = [os.path.join(export_dir, "output_graph.tflite"), SCORER, LDC_WAV, "year:2.5"]
    coquis = subprocess.run([client, app, *argv], capture_output=True, text=True)
    assert coquis.returncode == 0, coquis.stderr
    ours = subprocess.run([sys.executable, str(ported), *argv], capture_output=True, text=True, cwd=ROOT)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == coquis.stdout
    assert "she had your dark suit in greasy wash water all year" in ours.stdout.splitlines()


def test_our_onnx_export_and_a_checkpoint_directory_work_as_models(ldc_model):
    """Beyond Coqui's client: the README model as its ONNX export and as its checkpoint directory read the
    sentence, as its .tflite does, and stream the same way."""
    checkpoint_dir, export_dir = ldc_model
    audio = read_wav(LDC_WAV)
    for path in (os.path.join(export_dir, "output_graph.onnx"), checkpoint_dir):
        model = Model(path)
        assert (model.sampleRate(), model.beamWidth()) == (16000, 500)
        assert model.stt(audio) == "she had your dark suit in greasy wash water all year", path
        stream = model.createStream()
        for start in range(0, len(audio), 1234):
            stream.feedAudioContent(audio[start : start + 1234])
        assert stream.finishStream() == "she had your dark suit in greasy wash water all year", path


class Recording:
    """An acoustic model that keeps what it computes: the probabilities a stream feeds its decoder."""

    def __init__(self, network):
        self.network, self.n_classes, self.probs = network, network.n_classes, []

    def zero_state(self):
        return self.network.zero_state()

    def step(self, windows, state):
        probs, state = self.network.step(windows, state)
        self.probs.append(probs)
        return probs, state


@pytest.mark.parametrize("export", ["output_graph_fp32.tflite", "output_graph.tflite"])
def test_the_decoder_gets_libstts_probabilities(export, client):
    """What the stream feeds the beam search, frame for frame, against what libstt feeds its DecoderState::next
    (recorded inside it, tests/native_client/run_client.py): within 1e-4, int8 included (LiteRT runs libstt's
    kernels)."""
    for model in MODELS:
        path = os.path.join(FIXTURES, model, "export", export)
        _, expected = native_client.transcribe(path, [LDC_WAV, RU_WAV])
        ours_model = Model(path)
        for wav, theirs in zip((LDC_WAV, RU_WAV), expected):
            recording = Recording(ours_model._network)
            stream = ClientStream(recording, ours_model._features, 16)
            audio = read_wav(wav)
            for start in range(0, len(audio), 3333):
                stream.feed(audio[start : start + 3333])
            stream.finish()
            mine = np.concatenate(recording.probs)
            assert mine.shape == theirs.shape, (model, export, wav)
            np.testing.assert_allclose(mine, theirs, atol=1e-4)
