"""Coqui scorer packages: read as they are, and a word language model in the beam search."""

import json
import math
import os
import re
import shutil

import kenlm
import numpy as np
import pytest

from cli import run
from coqui_stt_training import evaluate, lm_optimize, train, transcribe
from coqui_stt_training.alphabet import load_alphabet
from coqui_stt_training.decode import beam_search
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.scorer import OOV_SCORE, Scorer, ScorerError

ROOT = os.path.join(os.path.dirname(__file__), "..")
SMOKE = os.path.join(ROOT, "data", "smoke_test")
SCORER = os.path.join(SMOKE, "pruned_lm.scorer")
ALPHABET_PATH = os.path.join(ROOT, "data", "alphabet.txt")
ALPHABET = load_alphabet(ALPHABET_PATH)
LDC = os.path.join(SMOKE, "ldc93s1.csv")
SENTENCE = "she had your dark suit in greasy wash water all year"


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
    assert spell(scorer, "she qqq ") == -1 and spell(scorer, "greasx") == -1
    assert spell(scorer, "gre") not in (-1, scorer.start)  # inside a word
    model = kenlm.Model(SCORER)  # KenLM itself reads the package, ignoring Coqui's block after its data
    expected = model.score("she had", bos=True, eos=False) - model.score("she", bos=True, eos=False)
    assert scorer.log_probability(["she", "had"], bos=True) == pytest.approx(expected / math.log10(math.e), abs=1e-5)
    assert scorer.log_probability(["she", "qqqq"], bos=True) == OOV_SCORE
    assert scorer.word_score(("she", "had")) == pytest.approx(0.75 * scorer.log_probability(
        ["she", "had"], bos=True) + scorer.beta)


def frames_for(text, confusion=None, ambiguity=0.45):
    """CTC log-probabilities that spell `text` (blank between characters); at the characters named in
    `confusion` the acoustics prefer another letter by a small margin."""
    classes = ALPHABET.size + 1
    rows = []
    for i, label in enumerate(ALPHABET.encode(text)):
        row = np.full(classes, 0.01 / classes)
        if confusion and i in confusion:
            row[ALPHABET.encode(confusion[i])[0]] = 1 - ambiguity
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
    log_probs = frames_for(text, confusion={text.index("greasy") + 3: "e"})
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
    assert scorer.next_state is None and scorer.log_probability(["greasy"], bos=True) == pytest.approx(
        -0.7 / math.log10(math.e)) and scorer.log_probability(["greesy"], bos=True) == OOV_SCORE
    log_probs = frames_for("greasy wash", confusion={3: "e"})
    assert ALPHABET.decode(beam_search(log_probs, 32)) == "greesy wash"
    assert ALPHABET.decode(beam_search(log_probs, 32, scorer=scorer)) == "greasy wash"


def test_bad_scorer_files_are_named(tmp_path):
    (tmp_path / "fake.scorer").write_bytes(b"just some bytes" * 10)
    with pytest.raises(ScorerError, match=r"fake.scorer: KenLM cannot read it: neither a Coqui scorer package nor a "
                                          r"KenLM model"):
        Scorer(str(tmp_path / "fake.scorer"), ALPHABET, 1.0, 1.0)
    data = open(SCORER, "rb").read()
    (tmp_path / "cut.scorer").write_bytes(data[: len(data) - 5000])
    with pytest.raises(ScorerError, match=r"cut.scorer: damaged vocabulary FST"):
        Scorer(str(tmp_path / "cut.scorer"), ALPHABET)


def test_an_ldc93s1_model_decodes_exactly_with_and_without_the_scorer(tmp_path, capsys):
    """Coqui's acceptance: the LDC93S1 model (n_hidden 100) decodes exactly through evaluate with and without
    pruned_lm.scorer, through transcribe, and through the exported ONNX model."""
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "model")
    status, log = run(train.main, ["--alphabet_config_path", ALPHABET_PATH, "--train_files", LDC, "--dev_files", LDC,
                                   "--n_hidden", "100", "--epochs", "300", "--learning_rate", "0.001",
                                   "--dropout_rate", "0.05", "--checkpoint_dir", ckpt, "--show_progressbar", "false",
                                   "--export_dir", out], capsys)
    assert status == 0, log
    for scorer_flags in ([], ["--scorer_path", SCORER]):
        status, log = run(evaluate.main, ["--checkpoint_dir", ckpt, "--test_files", LDC] + scorer_flags, capsys)
        assert status == 0 and f' - res: "{SENTENCE}"' in log and "WER: 0.000000, CER: 0.000000" in log, log
    shutil.copy(os.path.join(SMOKE, "LDC93S1.wav"), tmp_path / "ldc.wav")
    for scorer_flags in ([], ["--scorer_path", SCORER]):
        status, log = run(transcribe.main, ["--checkpoint_dir", ckpt, "--src", str(tmp_path / "ldc.wav"),
                                            "--force", "true", "--beam_width", "500"] + scorer_flags, capsys)
        assert status == 0 and [e["transcript"] for e in json.load(open(tmp_path / "ldc.tlog"))] == [SENTENCE], log
    status, log = run(lm_optimize.main, ["--checkpoint_dir", ckpt, "--test_files", LDC, "--scorer_path", SCORER,
                                         "--n_trials", "4", "--lm_alpha_max", "1", "--lm_beta_max", "1"], capsys)
    assert status == 0 and re.search(r"Best params: lm_alpha=[0-9.]+ and lm_beta=[0-9.]+ with WER=0\.0\n", log), log
    onnx_model = OnnxModel(os.path.join(out, "output_graph.onnx"))
    for scorer in (None, Scorer(SCORER, onnx_model.alphabet)):  # the package's own alpha and beta, as a client
        assert onnx_model.transcribe(os.path.join(SMOKE, "LDC93S1.wav"), scorer=scorer) == SENTENCE
