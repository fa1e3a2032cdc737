"""Our beam search against Coqui's own decoder (`coqui_stt_ctcdecoder` 1.4.0, the package its training tools
and libstt decode with): on the same probabilities, alphabet, scorer, weights, beam width, cut-offs and hot
words, every candidate must be the same, labels, timesteps and confidence (a float32, to the bit).

The probabilities are real model outputs: genuine Coqui 1.4.0 models' (tests/fixtures/coqui-1.4.0), and those
of tests/fixtures/decoder_parity/matrices.npz (scripts/decoder_parity_matrices.py: the README's LDC93S1 job
at several stages, Coqui's CI job at 16 and 8 kHz, a bytes-output-mode model, an English model of real speech
and its Russian transfer), each also sharpened, flattened and made noisy, as a model earlier or later in its
training, or on harder audio, would give them. Scorers: Coqui's two smoke-test packages, and a Russian one
this project builds with generate_lm and generate_scorer_package from the asterisk training transcripts.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from coqui_stt_training.decoding.beam_search import DecodeOptions, candidates
from coqui_stt_training.decoding.scorer import Scorer
from coqui_stt_training.model.alphabet import UTF8Alphabet, load_alphabet
from tests import native_client
from tests.helpers import ALPHABET, FIXTURES, ROOT, SMOKE

MATRICES = os.path.join(ROOT, "tests", "fixtures", "decoder_parity", "matrices.npz")
RUSSIAN_SCORER = os.path.join(ROOT, "tests", "fixtures", "decoder_parity", "asterisk-ru.scorer")
WORD_SCORER, BYTES_SCORER = os.path.join(SMOKE, "pruned_lm.scorer"), os.path.join(SMOKE, "pruned_lm.bytes.scorer")


def variants(probs: np.ndarray, seed: int, count: int) -> list[np.ndarray]:
    """The matrix and `count - 1` others: tempered (sharper or flatter) and with multiplicative noise."""
    rng = np.random.default_rng(seed)
    out = [probs]
    for k in range(count - 1):
        logits = np.log(np.maximum(probs.astype(np.float64), 1e-30))
        logits = logits / (0.5, 1.5, 2.5, 1.0, 4.0)[k % 5]
        logits = logits + rng.normal(0, (0.0, 0.5, 1.0, 2.0, 0.3)[k % 5], logits.shape)
        p = np.exp(logits - logits.max(1, keepdims=True))
        out.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    return out


def fixture_matrices(classes: int) -> list[np.ndarray]:
    """Genuine Coqui 1.4.0 models' softmax of LDC93S1 and the Russian sample, with `classes` classes."""
    found = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "**", "reference*.npz"), recursive=True)):
        with np.load(path) as data:
            found += [data[k] for k in sorted(data.files) if k.startswith("probs_") and data[k].shape[1] == classes]
    return found


@pytest.fixture(scope="module")
def parity_matrices() -> dict[str, tuple[str, list[np.ndarray]]]:
    """group -> (alphabet file text or "bytes", matrices)."""
    with np.load(MATRICES) as data:
        groups = json.loads(str(data["groups"]))
        return {g: (v["alphabet"], [data[f"{g}_{i}"] for i in range(v["count"])]) for g, v in groups.items()}


@pytest.fixture(scope="module")
def english(parity_matrices) -> list[np.ndarray]:
    base = parity_matrices["ldc"][1] + fixture_matrices(29)
    return [v for i, m in enumerate(base) for v in variants(m, i, 6)] + parity_matrices["asterisk_en"][1]


@pytest.fixture(scope="module")
def russian(parity_matrices, tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    text, matrices = parity_matrices["asterisk_ru"]
    path = tmp_path_factory.mktemp("ru") / "alphabet.txt"
    path.write_text(text, encoding="utf-8")
    return str(path), [v for i, m in enumerate(matrices) for v in variants(m, 100 + i, 2)]


@pytest.fixture(scope="module")
def byte_matrices(parity_matrices) -> list[np.ndarray]:
    return [v for i, m in enumerate(parity_matrices["bytes"][1]) for v in variants(m, 200 + i, 15)]


def job(matrices, alphabet, scorer=None, beam=100, cutoff_prob=1.0, cutoff_top_n=300, hot_words=None, results=3):
    return {"matrices": matrices, "alphabet": alphabet, "scorer": scorer, "alpha": 0.931289039105002,
            "beta": 1.1834137581510284, "beam_width": beam, "cutoff_prob": cutoff_prob, "cutoff_top_n": cutoff_top_n,
            "hot_words": hot_words or {}, "num_results": results}  # fmt: skip


def ours(spec: dict, matrices: list[np.ndarray]) -> list[list[list]]:
    alphabet = load_alphabet(spec["alphabet"]) if spec["alphabet"] else UTF8Alphabet()
    scorer = Scorer(spec["scorer"], alphabet, spec["alpha"], spec["beta"]) if spec["scorer"] else None
    options = DecodeOptions(
        spec["beam_width"], spec["cutoff_prob"], spec["cutoff_top_n"], tuple(spec["hot_words"].items())
    )
    found = []
    for i in spec["matrices"]:
        best = candidates(matrices[i], options, scorer, spec["num_results"])
        found.append([[c.confidence, list(c.labels), list(c.timesteps)] for c in best])
    return found


def same(theirs: list, mine: list) -> bool:
    """Equal candidates: labels and timesteps exactly, confidences as the float32 they are."""
    if len(theirs) != len(mine):
        return False
    return all(a[1] == b[1] and a[2] == b[2] and np.float32(a[0]) == np.float32(b[0]) for a, b in zip(theirs, mine))


def check(jobs: list[dict], matrices: list[np.ndarray]) -> int:
    """Runs every job both ways; returns how many matrices were compared (each job's mismatches are named)."""
    theirs = native_client.coqui_decode(jobs, matrices)["candidates"]
    compared, problems = 0, []
    for spec, expected in zip(jobs, theirs):
        for i, a, b in zip(spec["matrices"], expected, ours(spec, matrices)):
            compared += 1
            if not same(a, b):
                settings = {k: v for k, v in spec.items() if k != "matrices"}
                problems.append(f"matrix {i} {settings}:\n  Coqui: {a[:2]}\n  ours:  {b[:2]}")
    assert not problems, f"{len(problems)} of {compared} differ:\n" + "\n".join(problems[:5])
    return compared


def test_word_mode_with_and_without_coquis_scorer_and_hot_words(english):
    everything, some = list(range(len(english))), list(range(0, len(english), 3))
    jobs = [
        job(everything, ALPHABET),
        job(some, ALPHABET, beam=16, cutoff_prob=0.99, cutoff_top_n=10),
        job(everything, ALPHABET, WORD_SCORER),
        job(some, ALPHABET, WORD_SCORER, beam=500, cutoff_top_n=40),
        job(some, ALPHABET, WORD_SCORER, beam=32, cutoff_prob=0.95, cutoff_top_n=20, results=8),
        job(some, ALPHABET, WORD_SCORER, hot_words={"greasy": 4.0, "year": 2.5, "water": -3.0}),
    ]
    assert check(jobs, english) >= 200


def test_bytes_mode_with_and_without_coquis_scorer(byte_matrices):
    everything = list(range(len(byte_matrices)))
    # (one candidate with a cut-off, and no cut-off with the scorer: where a cut-off, or it and the vocabulary,
    # leave a candidate without any probability, Coqui's decoder reads the timesteps it has not got and crashes;
    # see the next test)
    jobs = [
        job(everything, None, beam=32),
        job(everything[::2], None, beam=64, cutoff_prob=0.99, cutoff_top_n=40, results=1),
        job(everything, None, BYTES_SCORER, beam=32),
        job(everything[::2], None, BYTES_SCORER, beam=64, hot_words={"a": 1.5, "e": -2.0}),
    ]
    assert check(jobs, byte_matrices) >= 60


def test_where_no_prefix_keeps_any_probability_the_candidates_say_so_where_coquis_decoder_crashes(byte_matrices):
    # the bytes scorer's vocabulary holds the 26 letters and the apostrophe only; with --cutoff_prob 0.99 some
    # frames of this flattened matrix keep neither any of them nor the blank
    scorer = Scorer(BYTES_SCORER, UTF8Alphabet(), 0.931289039105002, 1.1834137581510284)
    found = candidates(byte_matrices[17], DecodeOptions(64, 0.99, 40), scorer, 3)
    assert len(found) == 3 and all(c.confidence == -np.finfo(np.float32).max for c in found)
    assert found[0].timesteps == ()  # (what Coqui's decoder would read and crash on)


def test_a_transfer_learned_model_with_a_scorer_this_project_built(russian):
    alphabet, matrices = russian
    everything = list(range(len(matrices)))
    jobs = [
        job(everything, alphabet),
        job(everything, alphabet, RUSSIAN_SCORER),
        job(everything[::4], alphabet, RUSSIAN_SCORER, beam=500),
    ]
    assert check(jobs, matrices) >= 100
