import itertools

import numpy as np
import pytest
import torch

from coqui_stt_training.decoding.beam_search import (
    DecodeOptions,
    beam_search,
    beam_search_decode,
    greedy_decode,
    pruned_classes,
)
from coqui_stt_training.model.alphabet import Alphabet


def collapse(path, blank):
    out, previous = [], None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return tuple(out)


def labelling_probabilities(log_probs):
    """Sum every alignment's probability into its label sequence."""
    blank = log_probs.shape[1] - 1
    totals = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        p = np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
        key = collapse(path, blank)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def exhaustive_best(log_probs):
    return max(labelling_probabilities(log_probs).items(), key=lambda kv: kv[1])


@pytest.mark.parametrize("seed", range(25))
def test_wide_beam_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(6, 4)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    totals = labelling_probabilities(log_probs)
    found = tuple(beam_search(log_probs, DecodeOptions(beam_width=1000)))
    assert totals[found] == pytest.approx(max(totals.values()), rel=1e-9)  # the best, or one tied with it


def test_beam_sums_alignments_where_greedy_cannot():
    # Greedy reads "a" (frame by frame a, a, a); "aa" needs a blank between, but the many ways to
    # split a,blank,a make "aa" the more probable labelling.
    p = np.array([[0.5, 0.0, 0.5], [0.4, 0.0, 0.6], [0.5, 0.0, 0.5]]) + 1e-9
    p[1] = [0.45, 1e-9, 0.55]
    log_probs = np.log(p / p.sum(1, keepdims=True))
    best, _ = exhaustive_best(log_probs)
    assert tuple(beam_search(log_probs, DecodeOptions(16))) == best


def test_pruning_keeps_top_n_and_the_probability_mass():
    log_probs = np.log(np.array([0.05, 0.6, 0.3, 0.05]))
    assert pruned_classes(log_probs, 1.0, 2).tolist() == [1, 2]
    assert pruned_classes(log_probs, 0.5, 40).tolist() == [1]
    assert pruned_classes(log_probs, 0.85, 40).tolist() == [1, 2]


def test_batch_decoding_respects_lengths():
    alphabet = Alphabet([" ", "a", "b"])
    blank = 3
    frames = [1, blank, 2, 2, blank, 1]
    logits = torch.full((6, 2, 4), -10.0)
    for t, c in enumerate(frames):
        logits[t, 0, c] = 10.0
        logits[t, 1, c] = 10.0
    lengths = torch.tensor([6, 3])
    assert beam_search_decode(logits, lengths, alphabet, DecodeOptions(10)) == ["aba", "ab"]
    assert greedy_decode(logits, lengths, alphabet) == ["aba", "ab"]
    assert beam_search_decode(logits[:0], torch.tensor([0, 0]), alphabet, DecodeOptions(10)) == ["", ""]
