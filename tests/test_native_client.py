"""Coqui's own runtime runs our exports: the native client `stt` 1.4.0 (libstt, TensorFlow Lite 2.9) loads the
.tflite that `export` writes, transcribes LDC93S1 exactly, and feeds its decoder the probabilities our
checkpoint computes. Models are trained here as the README trains them."""

import os

import numpy as np
import pytest
import torch

from coqui_stt_training import export, generate_lm, generate_scorer_package, train
from coqui_stt_training.checkpoints.from_export import open_exported
from coqui_stt_training.checkpoints.load import load_model
from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.decoding.beam_search import DecodeOptions, beam_search
from coqui_stt_training.decoding.evaluation import levenshtein
from coqui_stt_training.decoding.kenlm_tools import LanguageModelError, kenlm_bins
from coqui_stt_training.decoding.scorer import Scorer
from coqui_stt_training.model.alphabet import UTF8Alphabet, load_alphabet
from coqui_stt_training.model.features import FeatureSettings, mfcc
from tests import native_client
from tests.helpers import ALPHABET, FIXTURES, LDC_SENTENCE, LDC_WAV, README_FLAGS, ROOT, SMOKE, run
from tests.tflite_hybrid import int8_probabilities

LDC_8K = os.path.join(SMOKE, "ldc93s1_8000.csv")
LDC_8K_WAV = os.path.join(SMOKE, "LDC93S1_pcms16le_1_8000.wav")
SCORER = os.path.join(SMOKE, "pruned_lm.scorer")
BYTES_SCORER = os.path.join(SMOKE, "pruned_lm.bytes.scorer")
RUSSIAN_CORPUS = os.path.join(ROOT, "data", "asterisk_ru", "train-transcripts.txt")


def trained(directory, csv: str, flags: list[str], capsys) -> str:
    status, log = run(
        train.main, flags + ["--train_files", csv, "--dev_files", csv, "--checkpoint_dir", directory], capsys
    )
    assert status == 0, log
    return directory


def exported(checkpoint: str, directory: str, capsys, *flags: str) -> str:
    status, log = run(export.main, ["--checkpoint_dir", checkpoint, "--export_dir", directory, *flags], capsys)
    assert status == 0, log
    return os.path.join(directory, "output_graph.tflite")


def client_frames(wav: str, settings: FeatureSettings) -> np.ndarray:
    """The MFCC frames the client computes: it reads int16 as x / 32768, takes one frame per full window,
    and at the end one more from the last partial window padded with zeros."""
    samples = load_audio(wav, settings.sample_rate) * (32767 / 32768)
    full = settings.frames(len(samples))
    padded = np.zeros(full * settings.stride + settings.window, np.float32)
    padded[: len(samples)] = samples
    return mfcc(padded, settings)


def checkpoint_probabilities(checkpoint: str, wav: str, settings: FeatureSettings, alphabet) -> np.ndarray:
    """Our checkpoint's probabilities for the frames the client computes."""
    features = client_frames(wav, settings)
    model = load_model(checkpoint, alphabet).model
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(features)[None]), -1)[:, 0].double().numpy()


@pytest.fixture(scope="module")
def client():
    return native_client.client_python()  # built once and cached, or the module skips with the reason


def coquis_int8_error() -> float:
    """How far Coqui's own int8 export is from its float32 one on the fixtures (TensorFlow's numbers)."""
    worst = 0.0
    for model in ("ldc93s1-h100-e20", "ru-h100-drop1"):
        with (
            np.load(os.path.join(FIXTURES, model, "export", "reference_tflite.npz")) as int8,
            np.load(os.path.join(FIXTURES, model, "export", "reference_tflite_fp32.npz")) as fp32,
        ):
            for i in (0, 1):
                worst = max(worst, float(np.abs(int8[f"probs_{i}"] - fp32[f"probs_{i}"]).max()))
    return worst


def test_the_client_transcribes_our_export_of_the_readme_model(tmp_path, client, ldc_model, capsys):
    checkpoint = ldc_model[0]
    expected = checkpoint_probabilities(checkpoint, LDC_WAV, FeatureSettings(), load_alphabet(ALPHABET))
    for quantize in ("true", "false"):
        model = exported(checkpoint, str(tmp_path / f"export-{quantize}"), capsys, "--export_quantize", quantize)
        for scorer in ("", SCORER):
            transcripts, probabilities = native_client.transcribe(model, [LDC_WAV], scorer)
            assert transcripts == [LDC_SENTENCE], (quantize, scorer)
        assert probabilities[0].shape == expected.shape
        if quantize == "false":
            assert np.abs(probabilities[0] - expected).max() < 1e-4
        else:
            # int8 weights move this trained model's sharp outputs by up to ~0.1 at a few frames, more than on
            # Coqui's flat, undertrained fixture models; what the client computes is TFLite's int8 arithmetic
            # on our export's weights, to float32 rounding.
            int8 = int8_probabilities(open_exported(model), client_frames(LDC_WAV, FeatureSettings()))
            assert np.abs(probabilities[0] - int8).max() < 1e-4
            assert np.abs(probabilities[0] - expected).mean() <= coquis_int8_error()


@pytest.mark.parametrize("model", ["ldc93s1-h100-e20", "ru-h100-drop1"])
def test_the_client_computes_from_our_export_what_it_computes_from_coquis(model, tmp_path, client, capsys):
    """For the same checkpoint our .tflite and Coqui's give the client the same probabilities, int8 included."""
    wavs = [LDC_WAV, os.path.join(SMOKE, "russian_sample_data", "ru.wav")]
    checkpoint = os.path.join(FIXTURES, model, "checkpoint")
    for quantize, theirs in (("true", "output_graph.tflite"), ("false", "output_graph_fp32.tflite")):
        ours = exported(checkpoint, str(tmp_path / quantize), capsys, "--export_quantize", quantize)
        _, from_ours = native_client.transcribe(ours, wavs)
        _, from_theirs = native_client.transcribe(os.path.join(FIXTURES, model, "export", theirs), wavs)
        for a, b in zip(from_ours, from_theirs):
            assert a.shape == b.shape
            assert np.abs(a - b).max() < 1e-6, quantize


def test_the_client_transcribes_our_8khz_export(tmp_path, client, capsys):
    flags = ["--alphabet_config_path", ALPHABET, "--audio_sample_rate", "8000", *README_FLAGS]
    checkpoint = trained(str(tmp_path / "ckpt"), LDC_8K, flags, capsys)
    model = exported(checkpoint, str(tmp_path / "export"), capsys, "--export_quantize", "false",
                     "--audio_sample_rate", "8000")  # fmt: skip
    transcripts, probabilities = native_client.transcribe(model, [LDC_8K_WAV])
    assert transcripts == [LDC_SENTENCE]
    expected = checkpoint_probabilities(checkpoint, LDC_8K_WAV, FeatureSettings(8000), load_alphabet(ALPHABET))
    assert np.abs(probabilities[0] - expected).max() < 1e-4


def test_the_client_transcribes_a_bytes_mode_export_with_its_utf8_scorer(tmp_path, client, bytes_ldc_model, capsys):
    checkpoint = bytes_ldc_model[0]
    model = exported(checkpoint, str(tmp_path / "export"), capsys)
    transcripts, probabilities = native_client.transcribe(model, [LDC_WAV])
    assert transcripts == [LDC_SENTENCE]
    assert probabilities[0].shape[1] == 256
    int8 = int8_probabilities(open_exported(model), client_frames(LDC_WAV, FeatureSettings()))
    assert np.abs(probabilities[0] - int8).max() < 1e-4
    expected = checkpoint_probabilities(checkpoint, LDC_WAV, FeatureSettings(), UTF8Alphabet())
    assert np.abs(probabilities[0] - expected).mean() <= coquis_int8_error()
    # Coqui's decoder runs a space through the UTF-8 scorer's vocabulary, which has none, so with the scorer
    # it never writes one (docs/compatibility.md, "Testing"): the letters, without the spaces.
    (with_scorer,), _ = native_client.transcribe(model, [LDC_WAV], BYTES_SCORER)
    assert " " not in with_scorer
    assert levenshtein(with_scorer, LDC_SENTENCE.replace(" ", "")) <= 2, with_scorer


def test_the_client_decodes_with_a_scorer_built_here_as_our_decoder_does(tmp_path, client, cli):
    """generate_lm and generate_scorer_package, on the Russian Asterisk training transcripts and the alphabet
    of Coqui's own Russian transfer model: the native client loads the package and decodes with it, and our
    decoder reads in the probabilities the client fed its decoder what the client read."""
    try:
        kenlm_bins("")
    except LanguageModelError:
        pytest.skip("KenLM's programs are not built: python scripts/build_kenlm.py")
    lm_dir, package = tmp_path / "lm", str(tmp_path / "ru.scorer")
    recipe = ["--top_k", "500000", "--arpa_order", "5", "--max_arpa_memory", "100M", "--arpa_prune", "0|0|1",
              "--binary_a_bits", "255", "--binary_q_bits", "8", "--binary_type", "trie"]  # fmt: skip
    status, log = cli(generate_lm.main, ["--input_txt", RUSSIAN_CORPUS, "--output_dir", str(lm_dir), *recipe])
    assert status == 0, log
    model_dir = os.path.join(FIXTURES, "ru-h100-drop1")
    alphabet_path = os.path.join(model_dir, "checkpoint", "alphabet.txt")
    status, log = cli(generate_scorer_package.main, ["--alphabet", alphabet_path, "--lm", str(lm_dir / "lm.binary"),
                                                     "--vocab", str(lm_dir / "vocab-500000.txt"), "--package", package,
                                                     "--default_alpha", "0.93", "--default_beta", "1.18"])  # fmt: skip
    assert status == 0, log
    model = os.path.join(model_dir, "export", "output_graph_fp32.tflite")
    wavs = [os.path.join(SMOKE, "russian_sample_data", "ru.wav"), LDC_WAV]
    without, _ = native_client.transcribe(model, wavs)
    transcripts, probabilities = native_client.transcribe(model, wavs, package)
    alphabet = load_alphabet(alphabet_path)
    scorer = Scorer(package, alphabet)  # the package's own weights, as the client uses them
    beam = open_exported(model).metadata.beam_width
    ours = [
        alphabet.decode(beam_search(p.astype(np.float32), DecodeOptions(beam, 1.0, 40), scorer)) for p in probabilities
    ]
    assert ours == transcripts
    vocabulary = set((lm_dir / "vocab-500000.txt").read_text(encoding="utf-8").split())
    assert transcripts != without and all(set(t.split()) <= vocabulary for t in transcripts)
