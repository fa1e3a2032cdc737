"""coqui_stt_training.client against Coqui's native client (`stt` 1.4.0, tests/native_client): the same
transcripts, metadata, streaming and intermediate decodes on Coqui's own exports, with and without a scorer
and with hot words; and the probabilities of its numpy runtime against TensorFlow's."""

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
        result = model.sttWithMetadata(audio, job["num_results"])
        metadata = [{"confidence": c.confidence, "tokens": [[t.text, t.timestep, t.start_time] for t in c.tokens]}
                    for c in result.transcripts]  # fmt: skip
        out.append({"stt": model.stt(audio), "metadata": metadata, "intermediate": intermediate,
                    "finish": stream.finishStream()})  # fmt: skip
    return out


CASES = {  # (export, scorer, alpha/beta, hot words, beam width, chunk in samples)
    "fp32, no scorer": ("output_graph_fp32.tflite", "", None, {}, 0, 1600),
    "fp32, scorer, hot words": ("output_graph_fp32.tflite", SCORER, None, {"she": 8.0, "dark": -3.0}, 0, 4999),
    "fp32, scorer, weights, beam 16": ("output_graph_fp32.tflite", SCORER, [1.5, 0.5], {}, 16, 321),
    "int8, scorer": ("output_graph.tflite", SCORER, None, {}, 0, 5120),
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
            assert len(mine["metadata"]) == len(theirs["metadata"])
            for a, b in zip(mine["metadata"], theirs["metadata"]):
                if "int8" in case:  # TFLite's hybrid int8 kernels are not emulated yet: a timestep can move by one
                    assert [t[0] for t in a["tokens"]] == [t[0] for t in b["tokens"]], (case, model)
                    continue
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
    stream = model.createStream()
    stream.feedAudioContent(read_wav(RU_WAV))
    stream.finishStream()
    with pytest.raises(RuntimeError, match=r"Stream object is not valid. Trying to feed an already finished stream\?"):
        stream.feedAudioContent(read_wav(RU_WAV))
