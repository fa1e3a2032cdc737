"""The beam search on its own: what a prefix beam search must find, and Coqui's decoder's rules that
differ from the textbook (tests/test_decoder_parity.py checks it against Coqui's decoder itself)."""

import itertools

import numpy as np
import pytest
import torch

from coqui_stt_training.decoding.beam_search import (
    DecodeOptions,
    PrefixBeamSearch,
    beam_search,
    beam_search_decode,
    candidates,
    greedy_decode,
)
from coqui_stt_training.model.alphabet import Alphabet


def collapse(path, blank):
    out, previous = [], None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return tuple(out)


def labelling_probabilities(probs):
    """Sum every alignment's probability into its label sequence."""
    blank = probs.shape[1] - 1
    totals = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = np.prod([probs[t, c] for t, c in enumerate(path)])
        key = collapse(path, blank)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", range(25))
def test_wide_beam_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(6, 4)) * 2)
    totals = labelling_probabilities(probs.astype(np.float64))
    found = tuple(beam_search(probs, DecodeOptions(beam_width=1000)))
    # the best, or one tied with it to float32's precision, which the search computes in
    assert totals[found] == pytest.approx(max(totals.values()), rel=1e-5)


def test_beam_sums_alignments_where_greedy_cannot():
    # Greedy reads "" (blank, blank, blank at 0.55 each is its best path); the many alignments of "a" make
    # it the more probable labelling.
    p = np.array([[0.45, 1e-9, 0.55], [0.45, 1e-9, 0.55], [0.45, 1e-9, 0.55]])
    probs = (p / p.sum(1, keepdims=True)).astype(np.float32)
    best = max(labelling_probabilities(probs.astype(np.float64)).items(), key=lambda kv: kv[1])[0]
    assert tuple(beam_search(probs, DecodeOptions(16))) == best == (0,)


def test_cutoff_top_n_cuts_only_with_a_cutoff_prob_below_one_as_in_coqui():
    # label 3 is the middle frame's fourth most probable class: with --cutoff_top_n 3 alone Coqui still
    # extends with it (its top-n only limits the --cutoff_prob sum); with --cutoff_prob 0.99 it is cut
    probs = np.array([[0.01] * 4 + [0.96], [0.3, 0.3, 0.2, 0.19, 0.01], [0.01] * 4 + [0.96]], np.float32)

    def found(options):
        return {c.labels for c in candidates(probs, options, None, 10)}

    assert (3,) in found(DecodeOptions(8, 1.0, 3))
    assert (3,) not in found(DecodeOptions(8, 0.99, 3))
    assert (3,) in found(DecodeOptions(8, 0.99, 4))


def test_leading_frames_of_near_certain_blank_are_not_searched_so_timesteps_start_at_speech():
    probs = np.full((6, 3), 0.0001, np.float32)
    probs[:3, 2] = 0.9998  # silence: the blank above 0.999
    probs[3, 0], probs[4, 2], probs[5, 1] = 0.9998, 0.9998, 0.9998
    (best,) = candidates(probs, DecodeOptions(4), None, 1)
    assert best.labels == (0, 1)
    assert best.timesteps == (3, 5)


def test_a_stream_fed_in_pieces_decodes_as_the_whole():
    rng = np.random.default_rng(7)
    probs = softmax(rng.normal(size=(40, 6)) * 3)
    whole = candidates(probs, DecodeOptions(16), None, 3)
    stream = PrefixBeamSearch(6, DecodeOptions(16))
    for start, stop in ((0, 5), (5, 6), (6, 23), (23, 40)):
        stream.next(probs[start:stop])
        assert stream.decode(1)  # an intermediate result leaves the search as it was
    assert stream.decode(3) == whole


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
