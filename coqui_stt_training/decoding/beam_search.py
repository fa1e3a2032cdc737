"""Turning the model's output into text: Coqui's CTC prefix beam search (docs/compatibility.md, "Testing").

Coqui never decodes greedily: its test phase, its transcription and its native client run its beam search
(coqui-ai/STT 1.4's native_client/ctcdecode) over the softmax. This is that search, prefix for prefix: on
the same probabilities, scorer, alpha, beta, beam width and cut-offs it keeps the beam Coqui's keeps and
returns the transcripts, confidences and timesteps Coqui's decoder returns (tests/test_decoder_parity.py
asks Coqui's own). decoder_state.py and path_trie.py hold the compiled search; this module feeds it frames and the
language model's word scores, and reads the candidates off it.

With a scorer (scorer.py), a prefix is extended only by labels that keep it inside the scorer's
vocabulary, and each word a space ends (in UTF-8 mode, each character its last byte ends) adds
alpha * (ln P(word | up to order-1 words before it) + its hot-word boosts) + beta; at the end, each
prefix's unfinished last word is scored the same way, without boosts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import path_trie as trie
from .decoder_state import advance_tables
from .scorer import typed_scores
from .stl_order import partial_sort

if TYPE_CHECKING:  # tensor methods only at run time: the ONNX inference path decodes without torch installed
    import torch

    from ..model.alphabet import AnyAlphabet
    from .scorer import Scorer

# (logits [T, B, C], lengths [B]) -> one transcript per batch item
Decoder = Callable[["torch.Tensor", "torch.Tensor"], list[str]]
FIRST_NODES, FIRST_TIMESTEP_NODES = 4096, 4096  # rows; the tables grow as a search needs


@dataclass(frozen=True)
class DecodeOptions:
    """How the beam search runs: Coqui's decoder settings."""

    beam_width: int = 500  # prefixes kept after each frame
    cutoff_prob: float = (
        1.0  # below 1: extend only with the most probable classes that reach this much of a frame's mass,
    )
    cutoff_top_n: int = 300  # and at most this many of them (Coqui applies it only with a cutoff_prob below 1)
    hot_words: tuple[tuple[str, float], ...] = ()  # Coqui's hot words: (word, boost) pairs, applied with a scorer


@dataclass(frozen=True)
class Candidate:
    """One transcript the search found: its labels, the frame each label was emitted at, and Coqui's
    confidence (the prefix's log-probability with its language-model scores)."""

    labels: tuple[int, ...]
    timesteps: tuple[int, ...]
    confidence: float


class PrefixBeamSearch:
    """Coqui's DecoderState: frames of probabilities go in with next(), as many times as they come (a
    stream), and decode() reads the best candidates at any point without disturbing the search."""

    def __init__(self, n_classes: int, options: DecodeOptions, scorer: Scorer | None = None):
        self.n_classes, self.options, self.scorer = n_classes, options, scorer
        self.hot_words = dict(options.hot_words)
        beam = max(options.beam_width, 1)
        has_dictionary = scorer is not None and scorer.next_state is not None
        settings = np.zeros(trie.SETTINGS, np.int64)
        settings[trie.BEAM], settings[trie.BLANK], settings[trie.CUTOFF_TOP_N] = (
            beam,
            n_classes - 1,
            options.cutoff_top_n,
        )
        settings[trie.SPACE] = -2  # Coqui's "no space label"
        if scorer is not None and scorer.alphabet.space_index is not None:
            settings[trie.SPACE] = scorer.alphabet.space_index
        settings[trie.HAS_SCORER] = scorer is not None
        settings[trie.UTF8_MODE] = bool(scorer and scorer.utf8_mode)
        settings[trie.HAS_DICTIONARY] = has_dictionary
        settings[trie.MAX_ORDER] = scorer.order if scorer else 0
        settings[trie.HAS_HOT_WORDS] = bool(self.hot_words)
        next_state, final = np.zeros((1, 1), np.int32), np.zeros(1, np.bool_)
        if scorer is not None and scorer.next_state is not None and scorer.final is not None:
            next_state, final, settings[trie.FST_START] = scorer.next_state, scorer.final, scorer.start
        weights = (scorer.alpha, scorer.beta) if scorer else (0.0, 0.0)
        # word scores by their words (ngram_key): the scorer's are shared by every search with it, the
        # hot-word boosts are this search's
        self.rules = trie.Rules(
            settings,
            np.array([options.cutoff_prob, *weights], np.float64),
            next_state,
            final,
            scorer.scores_by_key if scorer else typed_scores(),
            typed_scores(),
        )
        self.work = trie.Work(
            np.zeros(n_classes, np.int64),
            np.zeros(n_classes, np.float32),
            np.zeros(n_classes, np.float32),
            np.zeros(n_classes, np.int64),  # (std::sort's classes have no second key)
            np.zeros((beam * n_classes, 3), np.int32),  # a frame's visits put off: prefix, class, child
            np.zeros(beam * n_classes, np.int64),
            np.zeros(beam * n_classes, np.int64),
        )
        counters = np.zeros(trie.COUNTERS, np.int64)
        counters[trie.PUT_OFF_AT] = -1
        counters[trie.NODES_MADE] = counters[trie.TIMESTEP_NODES] = counters[trie.PREFIX_COUNT] = 1
        first = max(FIRST_NODES, 2 * beam * n_classes)  # room for the first frames without growing
        self.trie = self._tables(first, max(FIRST_TIMESTEP_NODES, 2 * first), 2 * beam, counters)
        # the root: the empty prefix, certain so far, alone in the beam; the timestep tree's root
        nodes = self.trie.nodes
        nodes[0, :] = trie.NONE
        nodes[0, trie.LABEL] = trie.ROOT_LABEL
        nodes[0, trie.FST_STATE] = settings[trie.FST_START]
        nodes[0, trie.TIMESTEPS] = nodes[0, trie.NEW_TIMESTEP] = nodes[0, trie.CHILD_COUNT] = 0
        nodes[0, trie.EXISTS] = 1
        nodes[0, trie.PUT_OFF] = 0
        self.trie.probabilities[0, trie.SCORE] = self.trie.probabilities[0, trie.B_PREV] = 0.0
        self.trie.prefixes[0] = 0

    def _tables(self, n_nodes: int, n_timesteps: int, n_families: int, counters: np.ndarray) -> trie.Trie:
        """The trie's tables at these sizes, holding what the current ones hold (if any)."""
        old = getattr(self, "trie", None)

        def table(name: str, shape: tuple[int, ...], dtype, fill) -> np.ndarray:
            new = np.full(shape, fill, dtype)
            if old is not None:
                kept = getattr(old, name)
                new[: len(kept)] = kept
            return new

        return trie.Trie(
            table("nodes", (n_nodes, trie.NODE_FIELDS), np.int32, trie.NONE),
            table("probabilities", (n_nodes, trie.PROBABILITY_FIELDS), np.float32, -trie.FLT_MAX),
            table("words", (n_nodes, 2), np.float64, np.nan),
            counters,
            table("free", (n_nodes,), np.int32, 0),
            table("families", (n_families, self.n_classes), np.int32, trie.NONE),
            table("family_free", (n_families,), np.int32, 0),
            table("prefixes", (n_nodes,), np.int32, 0),
            table("timesteps", (n_timesteps, trie.TIMESTEP_FIELDS), np.int32, trie.NONE),
        )

    def next(self, probs: np.ndarray) -> None:
        """Search on through frames of probabilities [frames, classes] (the softmax, blank last)."""
        probs = np.ascontiguousarray(probs, np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.n_classes:
            raise ValueError(f"probabilities of shape {probs.shape}: expected [frames, {self.n_classes}]")
        start = 0
        while start < len(probs):
            status, start, count = advance_tables(*self.trie, *self.rules, *self.work, probs, start)
            if status == trie.NEED_WORD_SCORES:
                self._score_words(self.work.missing[:count], self.work.missing_keys[:count])
            elif status == trie.NEED_ROOM:
                self._grow()

    def _grow(self) -> None:
        """Larger tables: twice what the next frame could need."""
        counters = self.trie.counters
        prefixes = int(counters[trie.PREFIX_COUNT])
        nodes = counters[trie.NODES_MADE] - counters[trie.FREE_COUNT] + prefixes * self.n_classes
        families = counters[trie.FAMILIES_MADE] - counters[trie.FREE_FAMILIES] + prefixes
        self.trie = self._tables(
            max(len(self.trie.nodes), 2 * nodes),
            max(len(self.trie.timesteps), 2 * (counters[trie.TIMESTEP_NODES] + nodes)),
            max(len(self.trie.families), 2 * families),
            counters,
        )

    def _score_words(self, nodes: np.ndarray, keys: np.ndarray) -> None:
        """The language-model score (and hot-word boost) of the words ending at each node, kept under the
        words' keys (unless `keys` is empty) for every other node ending in them. Nodes with the same key end
        in the same words: those are spelled out and scored once."""
        scorer = self.scorer
        assert scorer is not None
        first, same = trie.distinct_keys(keys) if len(keys) else (np.arange(len(nodes)), np.arange(len(nodes)))
        labels, unit_starts, node_starts = trie.word_units(self.trie.nodes, self.rules.settings, nodes[first])
        texts = scorer.unit_texts(labels, unit_starts)
        bounds = node_starts.tolist()
        lm_values, boost_values = scorer.word_scores(texts, bounds), np.zeros(len(first))
        if self.hot_words:
            for i in range(len(first)):
                boost_values[i] = self._hot_boost(texts[bounds[i] : bounds[i + 1]])
        trie.keep_word_scores(
            self.trie.words, self.rules.lm_scores, self.rules.boosts, nodes, lm_values[same], boost_values[same], keys
        )

    def _hot_boost(self, units: list[str | bytes]) -> float:
        """The boosts of the hot words among the units, summed in float32 as Coqui sums them."""
        boost = np.float32(0.0)
        for unit in units:
            if isinstance(unit, str) and unit in self.hot_words:
                boost = np.float32(boost + np.float32(self.hot_words[unit]))
        return float(boost)

    def decode(self, num_results: int = 1) -> list[Candidate]:
        """The best `num_results` candidates now, best first (Coqui's DecoderState::decode): each prefix's
        unfinished last word is scored, and the prefixes sorted by that score as Coqui sorts them."""
        tables = self.trie
        prefixes = tables.prefixes[: tables.counters[trie.PREFIX_COUNT]].copy()
        scores = tables.probabilities[prefixes, trie.SCORE].copy()
        scorer = self.scorer
        if scorer is not None:
            ending = trie.unfinished_nodes(tables.nodes, self.rules.settings, prefixes)
            unknown = prefixes[ending][np.isnan(tables.words[prefixes[ending], trie.LM_SCORE])]
            self._score_words(unknown, unknown[:0])
            added = (tables.words[prefixes[ending], trie.LM_SCORE] * scorer.alpha).astype(np.float32)
            added = (added.astype(np.float64) + scorer.beta).astype(np.float32)
            scores[ending] += added
        order = np.arange(len(prefixes), dtype=np.int64)
        returned = min(len(prefixes), num_results)
        partial_sort(order, returned, len(prefixes), scores, tables.nodes[prefixes, trie.LABEL])
        return [self._candidate(int(prefixes[i]), float(scores[i])) for i in order[:returned]]

    def _candidate(self, node: int, confidence: float) -> Candidate:
        nodes, labels = self.trie.nodes, []
        timestep_node = int(nodes[node, trie.TIMESTEPS])
        while nodes[node, trie.LABEL] != trie.ROOT_LABEL:
            labels.append(int(nodes[node, trie.LABEL]))
            node = int(nodes[node, trie.PARENT])
        # (a prefix that never had any probability has no timesteps; Coqui's decoder would crash on it)
        steps = trie.timestep_history(self.trie.timesteps, timestep_node).tolist() if timestep_node >= 0 else []
        return Candidate(tuple(reversed(labels)), tuple(steps), confidence)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: AnyAlphabet) -> list[str]:
    """Best class per frame, repeats merged, blanks (the last class) removed. For quick looks only."""
    blank = logits.shape[-1] - 1
    best = logits.argmax(-1).t().cpu()  # [B, T]
    texts = []
    for path, length in zip(best.tolist(), lengths.tolist()):
        labels, previous = [], blank
        for label in path[:length]:
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        texts.append(alphabet.decode(labels))
    return texts


def beam_search(probs: np.ndarray, options: DecodeOptions, scorer: Scorer | None = None) -> list[int]:
    """The labels of the best transcript of [frames, classes] probabilities (blank last)."""
    return list(candidates(probs, options, scorer, 1)[0].labels)


def candidates(probs: np.ndarray, options: DecodeOptions, scorer: Scorer | None, num_results: int) -> list[Candidate]:
    """The best `num_results` transcripts of one utterance's [frames, classes] probabilities."""
    search = PrefixBeamSearch(probs.shape[1], options, scorer)
    search.next(probs)
    return search.decode(num_results)


def utterance_probabilities(logits: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """The model's logits [T, B, C] as each utterance's probabilities [frames, C] (the softmax in float32,
    as Coqui's graph hands them to its decoder)."""
    probs = logits.float().softmax(-1).transpose(0, 1).cpu().numpy()  # [B, T, C]
    return [p[:n] for p, n in zip(probs, lengths.tolist())]


def beam_search_decode(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    alphabet: AnyAlphabet,
    options: DecodeOptions,
    scorer: Scorer | None = None,
) -> list[str]:
    return [alphabet.decode(beam_search(p, options, scorer)) for p in utterance_probabilities(logits, lengths)]


def make_decoder(alphabet: AnyAlphabet, options: DecodeOptions, scorer: Scorer | None = None) -> Decoder:
    """A decoder for the test phase, which Coqui runs with --export_beam_width (not --beam_width)."""
    return lambda logits, lengths: beam_search_decode(logits, lengths, alphabet, options, scorer)
