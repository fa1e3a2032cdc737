"""Turning the model's output into text: CTC prefix beam search, as Coqui's test phase decodes
(docs/compatibility.md, "Testing").

Coqui never decodes greedily: it runs its beam search over the softmax with `--export_beam_width`
beams, pruning each frame to the top `--cutoff_top_n` classes (and to `--cutoff_prob` of the mass).
Without a scorer that search ranks prefixes by CTC probability alone; with one (scorer.py: Coqui's
word or UTF-8-mode packages) it also keeps prefixes inside the vocabulary and adds language-model
scores. The beam is kept in arrays so that one frame costs a few numpy operations over beam x classes,
plus bookkeeping for the prefixes that survive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # tensor methods only at run time: the ONNX inference path decodes without torch installed
    import torch

    from ..model.alphabet import AnyAlphabet
    from .scorer import Scorer

# (logits [T, B, C], lengths [B]) -> one transcript per batch item
Decoder = Callable[["torch.Tensor", "torch.Tensor"], list[str]]
NEG_INF = -np.inf


@dataclass(frozen=True)
class DecodeOptions:
    """How the beam search runs (Coqui's decoder settings)."""

    beam_width: int = 500  # prefixes kept after each frame
    cutoff_prob: float = 1.0  # extend only with the most probable classes that reach this much of a frame's mass
    cutoff_top_n: int = 300  # and at most this many of them


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


def pruned_classes(log_probs: np.ndarray, cutoff_prob: float, cutoff_top_n: int) -> np.ndarray:
    """Classes one frame may extend with: the most probable first, at most cutoff_top_n of them, and
    only as many as needed to reach cutoff_prob of the probability mass (1.0: no mass limit)."""
    order = np.argsort(-log_probs, kind="stable")
    keep = min(cutoff_top_n, len(order))
    if cutoff_prob < 1.0:
        reached = np.cumsum(np.exp(log_probs[order])) >= cutoff_prob
        keep = min(keep, int(np.argmax(reached)) + 1 if reached.any() else len(order))
    return order[:keep]


class _Prefixes:
    """A trie of label prefixes; a prefix is a node id, its labels are the path to the root (id 0).
    Parents, labels and (with a scorer) vocabulary-FST states are numpy arrays, so that a whole beam is
    looked up at once. With a word scorer each node also knows the last order-1 finished words and the
    word being spelled, and, once asked, the language-model score of ending that word with a space; with
    a character scorer, the number of its scoring state (scorer.char_next)."""

    def __init__(self, scorer: Scorer | None = None):
        self.size, self.scorer = 1, scorer
        self.children: dict[tuple[int, int], int] = {}
        self.parent = np.full(1024, -1, np.int64)
        self.label = np.full(1024, -1, np.int64)
        self.state = np.zeros(1024, np.int64)
        self.state[0] = scorer.start if scorer else 0
        self.char_state = np.zeros(1024, np.int64)  # 0: the scorer's start
        self.context: list[tuple[str, ...]] = [()]
        self.word: list[str] = [""]
        self.word_scores: list[float] = [np.nan]

    def child(self, node: int, label: int) -> int:
        key = (node, label)
        found = self.children.get(key)
        if found is not None:
            return found
        found = self.children[key] = self.size
        if self.size == len(self.parent):
            arrays = (self.parent, self.label, self.state, self.char_state)
            self.parent, self.label, self.state, self.char_state = (
                np.concatenate([a, np.full_like(a, -1)]) for a in arrays
            )
        self.size += 1
        self.parent[found], self.label[found] = node, label
        scorer = self.scorer
        if not scorer:
            return found
        if scorer.next_state is not None:  # a package's vocabulary (a plain KenLM model has none)
            if scorer.utf8_mode and label == scorer.space:  # a character vocabulary has no space
                self.state[found] = scorer.start
            else:
                state = int(scorer.next_state[self.state[node], label])
                # after a whole word (and its space) the FST is final: the next word starts afresh
                self.state[found] = scorer.start if scorer.final[state] else state
        if scorer.utf8_mode:
            self.char_state[found] = scorer.char_next(int(self.char_state[node]), label)
            return found
        if label == scorer.space:
            context = self.context[node] + (self.word[node],)
            self.context.append(context[len(context) - scorer.order + 1 :])
            self.word.append("")
        else:
            self.context.append(self.context[node])
            self.word.append(self.word[node] + scorer.alphabet.labels[label])
        self.word_scores.append(np.nan)
        return found

    def word_score(self, nodes) -> np.ndarray:
        """Each node's score for ending its word now (computed once per node)."""
        out = np.empty(len(nodes))
        for i, node in enumerate(nodes):
            score = self.word_scores[node]
            if score != score:  # NaN: not asked yet
                assert self.scorer is not None  # only word scorers ask
                score = self.word_scores[node] = self.scorer.word_score(self.context[node] + (self.word[node],))
            out[i] = score
        return out

    def labels(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(int(self.label[node]))
            node = int(self.parent[node])
        return out[::-1]


def beam_search(log_probs: np.ndarray, options: DecodeOptions, scorer: Scorer | None = None) -> list[int]:
    """Most probable label sequence of [T, C] log-probabilities (blank last) by CTC prefix beam search.

    Each prefix carries two log-probabilities: of the frames so far ending in a blank (pb) and
    ending in its last label (pnb). A label equal to the prefix's last one extends it only from pb;
    otherwise the label repeats into the same prefix. With a scorer (scorer.py), a prefix is extended
    only by labels that keep it inside the vocabulary. A word scorer adds the score of the word a space
    ends, and at the end each prefix's unfinished last word is scored too; a character scorer adds the
    score of each character as it is completed, and of each word's end."""
    blank = log_probs.shape[1] - 1
    trie = _Prefixes(scorer)
    space = scorer.space if scorer else -1
    nodes = np.array([0])
    pb, pnb = np.array([0.0]), np.array([NEG_INF])
    for frame in log_probs.astype(np.float64):
        classes = pruned_classes(frame, options.cutoff_prob, options.cutoff_top_n)
        labels = classes[classes != blank]
        total = np.logaddexp(pb, pnb)
        last = trie.label[nodes]
        # Staying on the same prefix: through a blank, or by repeating the last label.
        stay_b = total + frame[blank] if blank in classes else np.full_like(total, NEG_INF)
        repeats = (last >= 0) & np.isin(last, labels)
        stay_nb = np.where(repeats, pnb + frame[np.maximum(last, 0)], NEG_INF)
        # Extending by one label: [beam, grow], where grow leaves out labels that the vocabulary lets no
        # prefix of the beam add (most of a bytes model's 255).
        grow = labels
        if scorer and scorer.next_state is not None:
            allowed = (scorer.next_state[np.unique(trie.state[nodes])] >= 0).any(0)
            if scorer.utf8_mode and space >= 0:
                allowed[space] = True  # words are not in a character vocabulary
            grow = labels[allowed[labels]]
        extend = np.where(grow[None, :] == last[:, None], pb[:, None], total[:, None]) + frame[grow][None, :]
        if scorer:
            if scorer.next_state is not None:
                blocked = scorer.next_state[trie.state[nodes]][:, grow] < 0
                if scorer.utf8_mode:
                    blocked[:, grow == space] = False
                extend[blocked] = NEG_INF
            if scorer.utf8_mode:
                extend += scorer.char_scores(trie.char_state[nodes])[:, grow]
            else:
                for j in np.flatnonzero(grow == space):
                    rows = np.flatnonzero(np.isfinite(extend[:, j]))
                    extend[rows, j] += trie.word_score(nodes[rows].tolist())
        # An extension that is already in the beam adds to that prefix instead of competing with it.
        # Each node's parent's place in the beam, found by a search over the beam (not a table over the
        # whole trie, which grows with the utterance), and its label's column.
        order = np.argsort(nodes)
        parents = trie.parent[nodes]
        found = np.minimum(np.searchsorted(nodes[order], parents), len(nodes) - 1)
        p = np.where(nodes[order][found] == parents, order[found], -1)
        column = np.full(blank + 2, -1)  # the last entry answers for the root's label, -1
        column[grow] = np.arange(len(grow))
        j = column[last]
        merge = (p >= 0) & (j >= 0)
        stay_nb[merge] = np.logaddexp(stay_nb[merge], extend[p[merge], j[merge]])
        extend[p[merge], j[merge]] = NEG_INF
        scores = np.concatenate([np.logaddexp(stay_b, stay_nb), extend.ravel()])
        k = max(1, min(options.beam_width, int(np.isfinite(scores).sum())))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.isfinite(scores[best])]
        kept, grown = best[best < len(nodes)], best[best >= len(nodes)] - len(nodes)
        rows, cols = np.divmod(grown, len(grow)) if len(grow) else (grown, grown)
        new_nodes = [trie.child(int(nodes[r]), int(grow[c])) for r, c in zip(rows, cols)]
        nodes = np.concatenate([nodes[kept], np.array(new_nodes, dtype=nodes.dtype)])
        pb = np.concatenate([stay_b[kept], np.full(len(grown), NEG_INF)])
        pnb = np.concatenate([stay_nb[kept], extend[rows, cols]])
    final = np.logaddexp(pb, pnb)
    if scorer and scorer.utf8_mode:
        final += scorer.char_end_scores(trie.char_state[nodes])
    elif scorer:
        unfinished = (nodes > 0) & (trie.label[nodes] != space)
        final[unfinished] += trie.word_score(nodes[unfinished].tolist())
    return trie.labels(int(nodes[np.argmax(final)]))


def utterance_log_probs(logits: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """The model's logits [T, B, C] as each utterance's log-probabilities [frames, C], what the beam
    search takes."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1).cpu().numpy()  # [B, T, C]
    return [lp[:n] for lp, n in zip(log_probs, lengths.tolist())]


def beam_search_decode(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    alphabet: AnyAlphabet,
    options: DecodeOptions,
    scorer: Scorer | None = None,
) -> list[str]:
    return [alphabet.decode(beam_search(lp, options, scorer)) for lp in utterance_log_probs(logits, lengths)]


def make_decoder(alphabet: AnyAlphabet, options: DecodeOptions, scorer: Scorer | None = None) -> Decoder:
    """A decoder for the test phase, which Coqui runs with --export_beam_width (not --beam_width)."""
    return lambda logits, lengths: beam_search_decode(logits, lengths, alphabet, options, scorer)
