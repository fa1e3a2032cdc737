"""Coqui scorer packages: read as they are, and their language models in the beam search, as Coqui's decoder
uses them (tests/test_decoder_parity.py checks the decoding against Coqui's own)."""

import json
import math
import os
import re
import shutil

import kenlm
import numpy as np
import pytest

from coqui_stt_training import evaluate, lm_optimize, training_graph_inference, transcribe
from coqui_stt_training.checkpoints.load import load_model
from coqui_stt_training.decoding.beam_search import DecodeOptions
from coqui_stt_training.decoding.beam_search import beam_search as search
from coqui_stt_training.decoding.evaluation import probabilities
from coqui_stt_training.decoding.scorer import OOV_SCORE, Scorer, ScorerError
from coqui_stt_training.flags.config import Config
from coqui_stt_training.flags.options import loader_settings
from coqui_stt_training.flags.services import data_set
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.model.alphabet import UTF8Alphabet, load_alphabet
from tests import native_client
from tests.helpers import ALPHABET as ALPHABET_PATH
from tests.helpers import LDC, LDC_WAV, SMOKE, run
from tests.helpers import LDC_SENTENCE as SENTENCE

SCORER = os.path.join(SMOKE, "pruned_lm.scorer")
BYTES_SCORER = os.path.join(SMOKE, "pruned_lm.bytes.scorer")
BYTES = UTF8Alphabet()
ALPHABET = load_alphabet(ALPHABET_PATH)


def beam_search(probs, beam_width, scorer=None):
    return search(probs, DecodeOptions(beam_width), scorer)


@pytest.fixture(scope="module")
def scorer():
    return Scorer(SCORER, ALPHABET)


def spell(scorer, text):
    """The FST state after `text`, following Coqui's reset after each word's space; -1 if it leaves the vocabulary."""
    state = scorer.start
    for label in ALPHABET.encode(text):
        state = int(scorer.next_state[state, label])
        if state < 0:
            return -1
        state = scorer.start if scorer.final[state] else state
    return state


def test_the_package_is_read_as_coqui_wrote_it(scorer):
    assert (scorer.alpha, round(scorer.beta, 6), scorer.order, scorer.utf8_mode) == (0.75, 1.85, 4, False)
    assert spell(scorer, SENTENCE + " ") == scorer.start  # every word is in the vocabulary, each ends the FST
    assert spell(scorer, "she qqq ") == -1
    assert spell(scorer, "greasx") == -1
    assert spell(scorer, "gre") not in (-1, scorer.start)  # inside a word
    model = kenlm.Model(SCORER)  # KenLM itself reads the package, ignoring Coqui's block after its data
    expected = model.score("she had", bos=True, eos=False) - model.score("she", bos=True, eos=False)
    assert scorer.log_cond_prob(("she", "had"), bos=True) == pytest.approx(expected / math.log10(math.e), abs=1e-5)
    assert scorer.log_cond_prob(("she", "qqqq"), bos=True) == OOV_SCORE
    assert scorer.log_cond_prob(("qqqq", "had"), bos=True) == OOV_SCORE  # any unit out of the vocabulary, as Coqui
    assert scorer.log_cond_prob((), bos=True) == 0.0


def frames_for(text, confusion=None, ambiguity=0.45, alphabet=ALPHABET):
    """CTC probabilities that spell `text` (blank between labels); at the label positions named in
    `confusion` the acoustics prefer another label by a small margin."""
    classes = alphabet.size + 1
    rows = []
    for i, label in enumerate(alphabet.encode(text)):
        row = np.full(classes, 0.01 / classes)
        if confusion and i in confusion:
            row[confusion[i]] = 1 - ambiguity
            row[label] = ambiguity
        else:
            row[label] = 0.99
        blank = np.full(classes, 0.01 / classes)
        blank[-1] = 0.99
        rows += [row / row.sum(), blank / blank.sum()]
    return np.array(rows, np.float32)


def test_the_language_model_corrects_what_the_acoustics_get_slightly_wrong(scorer):
    # "greasy" with the acoustics leaning to "greesy" at its fourth letter, a word not in the vocabulary
    text = "she had your dark suit in greasy wash water all year"
    probs = frames_for(text, confusion={text.index("greasy") + 3: ALPHABET.encode("e")[0]})
    without = ALPHABET.decode(beam_search(probs, 64))
    with_lm = ALPHABET.decode(beam_search(probs, 64, scorer=scorer))
    assert without == text.replace("greasy", "greesy")
    assert with_lm == text


ARPA = """
\\data\\
ngram 1=6
ngram 2=1

\\1-grams:
-1.0\t<s>\t0
-1.0\t</s>
-2.0\t<unk>
-0.5\tshe\t0
-0.7\tgreasy\t0
-0.7\twash\t0

\\2-grams:
-0.2\tgreasy wash

\\end\\
"""


def test_a_plain_kenlm_model_scores_words_without_a_vocabulary_constraint(tmp_path):
    path = tmp_path / "words.arpa"
    path.write_text(ARPA)
    with pytest.raises(ScorerError, match="a plain KenLM model has no default alpha and beta"):
        Scorer(str(path), ALPHABET)
    scorer = Scorer(str(path), ALPHABET, alpha=1.0, beta=0.5)
    assert scorer.next_state is None
    assert scorer.log_cond_prob(("greasy",), bos=True) == pytest.approx(-0.7 / math.log10(math.e), abs=1e-6)
    assert scorer.log_cond_prob(("greesy",), bos=True) == OOV_SCORE
    probs = frames_for("greasy wash", confusion={3: ALPHABET.encode("e")[0]})
    assert ALPHABET.decode(beam_search(probs, 32)) == "greesy wash"
    assert ALPHABET.decode(beam_search(probs, 32, scorer=scorer)) == "greasy wash"


def test_a_utf8_mode_package_scores_each_character_and_has_no_space():
    scorer = Scorer(BYTES_SCORER, BYTES)
    assert (round(scorer.alpha, 6), round(scorer.beta, 6), scorer.order, scorer.utf8_mode) == (
        0.931289,
        1.183414,
        2,
        True,
    )
    # the vocabulary: the 26 letters and the apostrophe, each a whole "word"; no space
    start_arcs = np.flatnonzero(scorer.next_state[scorer.start] >= 0)
    assert bytes(int(label) + 1 for label in start_arcs) == b"'abcdefghijklmnopqrstuvwxyz"
    assert scorer.final[scorer.next_state[scorer.start, start_arcs]].all()
    model = kenlm.Model(BYTES_SCORER)
    bigram = model.score("s h", bos=True, eos=False) - model.score("s", bos=True, eos=False)
    assert scorer.log_cond_prob(("s", "h"), bos=False) == pytest.approx(bigram / math.log10(math.e), abs=1e-5)


def test_the_character_language_model_corrects_letters_and_like_coquis_puts_no_space():
    scorer = Scorer(BYTES_SCORER, BYTES)
    # the fourth letter of "greasy" leaning to e, i or o: the character bigram model prefers "ea"
    for letter in "eio":
        probs = frames_for("greasy", {3: BYTES.encode(letter)[0]}, 0.4, BYTES)
        assert BYTES.decode(beam_search(probs, 64)) == f"gre{letter}sy"
        assert BYTES.decode(beam_search(probs, 64, scorer=scorer)) == "greasy"
    # Coqui's decoder runs a space through the vocabulary too, which has none: its transcripts never hold one
    transcript = BYTES.decode(beam_search(frames_for("wash water", alphabet=BYTES), 64, scorer=scorer))
    assert " " not in transcript and transcript.startswith("wash") and transcript.endswith("water")


CHAR_ARPA = """
\\data\\
ngram 1=7
ngram 2=4

\\1-grams:
-99\t<s>\t0
-1.0\t</s>
-3.0\t<unk>
-1.0\t\u0436\t0
-1.0\t\u0443\t0
-0.8\t\u0444\t0
-1.0\t\u043a\t0

\\2-grams:
-0.1\t<s> \u0436
-0.1\t\u0436 \u0443
-0.1\t\u0443 \u043a
-0.1\t\u043a </s>

\\end\\
"""


def test_multibyte_characters_are_scored_once_complete_and_bytes_that_are_not_utf8_never_extend(tmp_path):
    path = tmp_path / "chars.arpa"  # a character model of "жук" in which ф alone is likelier than у
    path.write_text(CHAR_ARPA, encoding="utf-8")
    scorer = Scorer(str(path), BYTES, alpha=1.0, beta=0.0, char_based=True)
    assert scorer.utf8_mode
    assert scorer.next_state is None
    u, f = "у".encode(), "ф".encode()
    assert u[0] == f[0]  # the two letters differ only in their second byte
    probs = frames_for("жук", {3: f[1] - 1}, 0.45, BYTES)
    assert BYTES.decode(beam_search(probs, 16)) == "жфк"
    assert BYTES.decode(beam_search(probs, 16, scorer=scorer)) == "жук"
    # a stray continuation byte, or a lead byte with nothing after it, at the end: without a scorer it comes
    # out as U+FFFD; with one the unfinished character scores as out of the vocabulary, as in Coqui's decoder
    # (the blank gets most of the rest of the frame: with the 255 bytes tied, Coqui's cut by label would
    # drop "жук" itself from the beam)
    for stray in (u[1], u[0]):
        frame = np.full(BYTES.size + 1, 0.0001 / BYTES.size)
        frame[stray - 1], frame[-1] = 0.999, 0.0009
        probs = np.vstack([frames_for("жук", alphabet=BYTES), (frame / frame.sum())[None]]).astype(np.float32)
        assert BYTES.decode(beam_search(probs, 16)) == "жук\ufffd"
        assert BYTES.decode(beam_search(probs, 16, scorer=scorer)) == "жук"


def test_a_scorer_for_the_other_kind_of_model_is_refused():
    with pytest.raises(
        ScorerError,
        match=r"pruned_lm.bytes.scorer: a UTF-8-mode scorer is for --bytes_output_mode "
        r"models; this model has an alphabet file",
    ):
        Scorer(BYTES_SCORER, ALPHABET)
    with pytest.raises(
        ScorerError,
        match=r"pruned_lm.scorer: a word scorer package spells its vocabulary in an "
        r"alphabet file's labels; a --bytes_output_mode model needs a UTF-8-mode",
    ):
        Scorer(SCORER, BYTES)


def test_bad_scorer_files_are_named(tmp_path):
    (tmp_path / "fake.scorer").write_bytes(b"just some bytes" * 10)
    with pytest.raises(
        ScorerError,
        match=r"fake.scorer: KenLM cannot read it: neither a Coqui scorer package nor a "
        r"KenLM model",
    ):
        Scorer(str(tmp_path / "fake.scorer"), ALPHABET, 1.0, 1.0)
    with open(SCORER, "rb") as f:
        data = f.read()
    (tmp_path / "cut.scorer").write_bytes(data[: len(data) - 5000])
    with pytest.raises(ScorerError, match=r"cut.scorer: damaged vocabulary FST"):
        Scorer(str(tmp_path / "cut.scorer"), ALPHABET)


def tlog_transcripts(path):
    with open(path, encoding="utf-8") as f:
        return [entry["transcript"] for entry in json.load(f)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["characters", "bytes"])
def test_an_ldc93s1_model_decodes_as_coquis_decoder_does_with_and_without_the_scorer(kind, tmp_path, capsys, request):
    """Coqui's acceptance: the LDC93S1 model (n_hidden 100) decodes exactly through evaluate with and without
    pruned_lm.scorer, through transcribe, one-shot inference and the exported ONNX model. A bytes model (its
    256 classes need more epochs to leave the all-blank plateau) does too without a scorer; with
    pruned_lm.bytes.scorer, whose vocabulary holds letters and no space, it reads what Coqui's decoder reads on
    its probabilities: the words run together."""
    # the models the native client's tests check too, trained once (conftest.py)
    if kind == "characters":
        ckpt, out = request.getfixturevalue("ldc_model")
        scorer_path, metric, with_scorer = SCORER, "WER", SENTENCE
    else:
        ckpt, out = request.getfixturevalue("bytes_ldc_model")
        scorer_path, metric = BYTES_SCORER, "CER"
        with_scorer = coquis_transcript(ckpt, BYTES_SCORER)
        assert " " not in with_scorer and with_scorer.startswith("shehad")
    # evaluate, transcribe and lm_optimize find the alphabet, or bytes mode, in the checkpoint directory
    for scorer_flags, expected in (([], SENTENCE), (["--scorer_path", scorer_path], with_scorer)):
        status, log = run(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC] + scorer_flags, capsys)
        assert status == 0, log
        assert f' - res: "{expected}"' in log
    shutil.copy(LDC_WAV, tmp_path / "ldc.wav")
    for scorer_flags, expected in (([], SENTENCE), (["--scorer_path", scorer_path], with_scorer)):
        argv = ["--checkpoint_dir", ckpt, "--src", str(tmp_path / "ldc.wav"), "--force", "true", "--beam_width", "500"]
        status, log = run(transcribe.main, argv + scorer_flags, capsys)
        assert status == 0, log
        assert tlog_transcripts(tmp_path / "ldc.tlog") == [expected]
    argv = ["--checkpoint_dir", ckpt, "--one_shot_infer", LDC_WAV, "--beam_width", "500", "--scorer_path", scorer_path]
    status, log = run(training_graph_inference.main, argv, capsys)
    assert status == 0, log
    assert with_scorer in log.splitlines()
    argv = ["--checkpoint_dir", ckpt, "--test_files", LDC, "--scorer_path", scorer_path, "--n_trials", "4",
            "--lm_alpha_max", "1", "--lm_beta_max", "1"]  # fmt: skip
    status, log = run(lm_optimize.main, argv, capsys)
    assert status == 0, log
    best = "0\\.0" if kind == "characters" else "[0-9.]+"
    assert re.search(rf"Best params: lm_alpha=[0-9.]+ and lm_beta=[0-9.]+ with {metric}={best}\n", log), log
    onnx_model = OnnxModel(os.path.join(out, "output_graph.onnx"))
    assert onnx_model.alphabet.is_bytes == (kind == "bytes")
    assert onnx_model.transcribe(LDC_WAV) == SENTENCE
    if kind == "characters":  # the package's own alpha and beta, as a client
        assert onnx_model.transcribe(LDC_WAV, scorer=Scorer(scorer_path, onnx_model.alphabet)) == SENTENCE


def coquis_transcript(checkpoint: str, scorer_path: str) -> str:
    """What Coqui's decoder reads in a bytes model's probabilities of LDC93S1 with `scorer_path`, as evaluate
    decodes them (beam 500, Coqui's default weights)."""
    config = Config(checkpoint_dir=checkpoint, bytes_output_mode=True, data_workers=0).finalize()
    loaded = load_model(checkpoint, BYTES)
    samples = data_set(config, [LDC], BYTES, "test")
    ((_, probs),) = probabilities(loaded.model, samples, loaded.device, 1, loader_settings(config))
    spec = {"matrices": [0], "alphabet": None, "scorer": scorer_path, "alpha": config.lm_alpha,
            "beta": config.lm_beta, "beam_width": config.export_beam_width, "cutoff_prob": config.cutoff_prob,
            "cutoff_top_n": config.cutoff_top_n, "hot_words": {}, "num_results": 1}  # fmt: skip
    (((_, tokens, _),),) = native_client.coqui_decode([spec], [probs])["candidates"][0]
    return BYTES.decode(tokens)
