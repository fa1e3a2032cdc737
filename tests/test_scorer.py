"""Coqui scorer packages: read as they are, and a word language model in the beam search."""

import json
import math
import os
import re
import shutil

import kenlm
import numpy as np
import pytest

from coqui_stt_training import evaluate, lm_optimize, training_graph_inference, transcribe
from coqui_stt_training.decoding.beam_search import DecodeOptions
from coqui_stt_training.decoding.beam_search import beam_search as search
from coqui_stt_training.decoding.scorer import OOV_SCORE, Scorer, ScorerError
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.model.alphabet import UTF8Alphabet, load_alphabet
from tests.helpers import ALPHABET as ALPHABET_PATH
from tests.helpers import LDC, LDC_WAV, SMOKE, run
from tests.helpers import LDC_SENTENCE as SENTENCE

SCORER = os.path.join(SMOKE, "pruned_lm.scorer")
BYTES_SCORER = os.path.join(SMOKE, "pruned_lm.bytes.scorer")
BYTES = UTF8Alphabet()
ALPHABET = load_alphabet(ALPHABET_PATH)


def beam_search(log_probs, beam_width, scorer=None):
    return search(log_probs, DecodeOptions(beam_width), scorer)


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
    assert scorer.log_probability(["she", "had"], bos=True) == pytest.approx(expected / math.log10(math.e), abs=1e-5)
    assert scorer.log_probability(["she", "qqqq"], bos=True) == OOV_SCORE
    assert scorer.word_score(("she", "had")) == pytest.approx(
        0.75 * scorer.log_probability(["she", "had"], bos=True) + scorer.beta
    )


def frames_for(text, confusion=None, ambiguity=0.45, alphabet=ALPHABET):
    """CTC log-probabilities that spell `text` (blank between labels); at the label positions named in
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
    return np.log(np.array(rows))


def test_the_language_model_corrects_what_the_acoustics_get_slightly_wrong(scorer):
    # "greasy" with the acoustics leaning to "greesy" at its fourth letter, a word not in the vocabulary
    text = "she had your dark suit in greasy wash water all year"
    log_probs = frames_for(text, confusion={text.index("greasy") + 3: ALPHABET.encode("e")[0]})
    without = ALPHABET.decode(beam_search(log_probs, 64))
    with_lm = ALPHABET.decode(beam_search(log_probs, 64, scorer=scorer))
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
    assert scorer.log_probability(["greasy"], bos=True) == pytest.approx(-0.7 / math.log10(math.e))
    assert scorer.log_probability(["greesy"], bos=True) == OOV_SCORE
    log_probs = frames_for("greasy wash", confusion={3: ALPHABET.encode("e")[0]})
    assert ALPHABET.decode(beam_search(log_probs, 32)) == "greesy wash"
    assert ALPHABET.decode(beam_search(log_probs, 32, scorer=scorer)) == "greasy wash"


def test_a_utf8_mode_package_scores_each_character_and_each_word_end():
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

    def expected(log10_prob, with_beta=True):
        return scorer.alpha * log10_prob / math.log10(math.e) + (scorer.beta if with_beta else 0.0)

    start = np.array([0])
    h = BYTES.encode("h")[0]
    assert scorer.char_scores(start)[0, h] == pytest.approx(expected(model.score("h", bos=True, eos=False)), abs=1e-5)
    state = 0
    for label in BYTES.encode("she"):
        state = scorer.char_next(state, label)
    she = np.array([state])
    word_end = model.score("s h e", bos=True, eos=True) - model.score("s h e", bos=True, eos=False)
    assert scorer.char_scores(she)[0, BYTES.space_index] == pytest.approx(expected(word_end), abs=1e-5)
    assert scorer.char_end_scores(she)[0] == pytest.approx(expected(word_end, with_beta=False), abs=1e-5)
    after_space = scorer.char_next(state, BYTES.space_index)
    assert after_space == 0  # the next word starts after <s>, as the transcript did
    scorer.alpha, scorer.beta = 0.5, 0.25  # lm_optimize's trials change them after rows are cached
    assert scorer.char_scores(start)[0, h] == pytest.approx(expected(model.score("h", bos=True, eos=False)), abs=1e-5)


def test_the_character_language_model_corrects_letters_and_keeps_the_spaces():
    scorer = Scorer(BYTES_SCORER, BYTES)
    assert BYTES.decode(beam_search(frames_for(SENTENCE, alphabet=BYTES), 64, scorer=scorer)) == SENTENCE
    # the fourth letter of "greasy" leaning to e, i or o: the character bigram model prefers "ea"
    for letter in "eio":
        log_probs = frames_for(SENTENCE, {SENTENCE.index("greasy") + 3: BYTES.encode(letter)[0]}, 0.4, BYTES)
        assert BYTES.decode(beam_search(log_probs, 64)) == SENTENCE.replace("greasy", f"gre{letter}sy")
        assert BYTES.decode(beam_search(log_probs, 64, scorer=scorer)) == SENTENCE


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
    log_probs = frames_for("жук", {3: f[1] - 1}, 0.45, BYTES)
    assert BYTES.decode(beam_search(log_probs, 16)) == "жфк"
    assert BYTES.decode(beam_search(log_probs, 16, scorer=scorer)) == "жук"
    # a stray continuation byte, or a lead byte with nothing after it, at the end: without a scorer it comes
    # out as U+FFFD; the scorer never keeps it
    for stray in (u[1], u[0]):
        frame = np.full(BYTES.size + 1, 0.001 / BYTES.size)
        frame[stray - 1] = 0.999
        log_probs = np.vstack([frames_for("жук", alphabet=BYTES), np.log(frame / frame.sum())])
        assert BYTES.decode(beam_search(log_probs, 16)) == "жук\ufffd"
        assert BYTES.decode(beam_search(log_probs, 16, scorer=scorer)) == "жук"


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
def test_an_ldc93s1_model_decodes_exactly_with_and_without_the_scorer(kind, tmp_path, capsys, request):
    """Coqui's acceptance: the LDC93S1 model (n_hidden 100) decodes exactly through evaluate with and without
    pruned_lm.scorer, through transcribe, and through the exported ONNX model. The same for a bytes model
    with pruned_lm.bytes.scorer (its 256 classes need more epochs to leave the all-blank plateau)."""
    # the models the native client's tests check too, trained once (conftest.py)
    if kind == "characters":
        ckpt, out = request.getfixturevalue("ldc_model")
        scorer_path, metric = SCORER, "WER"
    else:
        ckpt, out = request.getfixturevalue("bytes_ldc_model")
        scorer_path, metric = BYTES_SCORER, "CER"
    # evaluate, transcribe and lm_optimize find the alphabet, or bytes mode, in the checkpoint directory
    for scorer_flags in ([], ["--scorer_path", scorer_path]):
        status, log = run(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC] + scorer_flags, capsys)
        assert status == 0, log
        assert f' - res: "{SENTENCE}"' in log
        assert "WER: 0.000000, CER: 0.000000" in log
    shutil.copy(LDC_WAV, tmp_path / "ldc.wav")
    for scorer_flags in ([], ["--scorer_path", scorer_path]):
        argv = ["--checkpoint_dir", ckpt, "--src", str(tmp_path / "ldc.wav"), "--force", "true", "--beam_width", "500"]
        status, log = run(transcribe.main, argv + scorer_flags, capsys)
        assert status == 0, log
        assert tlog_transcripts(tmp_path / "ldc.tlog") == [SENTENCE]
    argv = ["--checkpoint_dir", ckpt, "--one_shot_infer", LDC_WAV, "--beam_width", "500", "--scorer_path", scorer_path]
    status, log = run(training_graph_inference.main, argv, capsys)
    assert status == 0, log
    assert SENTENCE in log.splitlines()
    argv = ["--checkpoint_dir", ckpt, "--test_files", LDC, "--scorer_path", scorer_path, "--n_trials", "4",
            "--lm_alpha_max", "1", "--lm_beta_max", "1"]  # fmt: skip
    status, log = run(lm_optimize.main, argv, capsys)
    assert status == 0, log
    assert re.search(rf"Best params: lm_alpha=[0-9.]+ and lm_beta=[0-9.]+ with {metric}=0\.0\n", log), log
    onnx_model = OnnxModel(os.path.join(out, "output_graph.onnx"))
    assert onnx_model.alphabet.is_bytes == (kind == "bytes")
    for scorer in (None, Scorer(scorer_path, onnx_model.alphabet)):  # the package's own alpha and beta, as a client
        assert onnx_model.transcribe(LDC_WAV, scorer=scorer) == SENTENCE
