"""Coqui's external scorer: a `.scorer` package read as it is, for beam search with a word language model.

A package (built by Coqui's generate_scorer_package) is a KenLM binary, then Coqui's own block:
int32 magic 'TRIE' (bytes "EIRT" on disk), int32 version 6, a one-byte UTF-8-mode flag, float64
default alpha and beta, then an OpenFST ConstFst (the vocabulary: every word spelled in labels + 1,
followed by the space label, ending in a final state). KenLM ignores what follows its own data, so the
`kenlm` package opens the file directly; the vocabulary FST is read here into a dense table
[state, label] -> next state, so that the beam search checks a whole beam against it at once. A plain
KenLM `.arpa` or `.binary` file works too: its words are scored, and no spelling is ruled out.

Scoring follows Coqui's decoder: when a prefix is extended by a space, the word it completes is
scored as alpha * ln P(word | up to order-1 previous words) + beta (an out-of-vocabulary word scores
-1000), and characters that would leave the vocabulary are not extended at all.
"""

from __future__ import annotations

import math
import mmap
import os
import struct

import numpy as np

MAGIC = b"EIRT"  # int32 'TRIE' in little-endian order
VERSION = 6
FST_MAGIC = 2125659606
OOV_SCORE = -1000.0
# OpenFST ConstFst<StdArc, uint32> records: a state's final weight, first arc and arc counts; an arc's
# input and output labels, weight and next state
FST_STATE = np.dtype([("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("niepsilons", "<u4"),
                      ("noepsilons", "<u4")])
FST_ARC = np.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("next", "<i4")])
LOG10_E = math.log10(math.e)


class ScorerError(ValueError):
    pass


class Scorer:
    def __init__(self, path: str, alphabet, alpha: float | None = None, beta: float | None = None):
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                # mapped, not read: a release scorer is about a gigabyte, and only its tail is parsed here
                self._read_package(path, data, alphabet, alpha, beta)
        except (OSError, ValueError) as e:
            if isinstance(e, ScorerError):
                raise
            raise ScorerError(f"{path}: cannot read scorer ({getattr(e, 'strerror', None) or e})") from None
        import kenlm  # only scorers need it (a C++ build from PyPI)

        try:
            self.lm = kenlm.Model(path)
        except (OSError, RuntimeError) as e:
            what = ("its language model" if self.next_state is not None
                    else "it: neither a Coqui scorer package nor a KenLM model")
            raise ScorerError(f"{path}: KenLM cannot read {what} ({str(e).splitlines()[0]})") from None
        if self.alpha is None or self.beta is None:
            raise ScorerError(f"{path}: a plain KenLM model has no default alpha and beta; "
                              "give --lm_alpha and --lm_beta")
        self.order = self.lm.order
        self._kenlm = kenlm

    def _read_package(self, path: str, data, alphabet, alpha, beta) -> None:
        header = _find_header(data)
        if header is not None:
            self.utf8_mode = bool(data[header + 8])
            default_alpha, default_beta = struct.unpack_from("<dd", data, header + 9)
        else:  # a plain KenLM model (.arpa or .binary): words are scored, any spelling is allowed
            self.utf8_mode, default_alpha, default_beta = False, None, None
        self.alpha = default_alpha if alpha is None else alpha
        self.beta = default_beta if beta is None else beta
        if self.utf8_mode:
            raise NotImplementedError(f"{path}: UTF-8-mode scorers (for --bytes_output_mode) are not supported yet")
        if alphabet.space_index is None:
            raise ScorerError(f"{path}: a word scorer needs a space label in the alphabet")
        self.space = alphabet.space_index
        self.alphabet = alphabet
        if header is not None:
            self.next_state, self.final, self.start = _read_const_fst(data, header + 25, alphabet.size, path)
        else:
            self.next_state, self.final, self.start = None, None, 0

    def word_score(self, ngram: tuple[str, ...]) -> float:
        """alpha * ln P(last word | previous words) + beta for the last `order` words of a prefix that a
        space is about to end (fewer near the start, which is then the sentence start, as in Coqui)."""
        return self.alpha * self.log_probability(ngram, bos=len(ngram) < self.order) + self.beta

    def log_probability(self, words: list[str], bos: bool) -> float:
        """Natural-log probability of the last word given the others, as Coqui's get_log_cond_prob."""
        state, out = self._kenlm.State(), self._kenlm.State()
        if bos:
            self.lm.BeginSentenceWrite(state)
        else:
            self.lm.NullContextWrite(state)
        score = 0.0
        for word in words:
            if word not in self.lm:
                return OOV_SCORE
            score = self.lm.BaseScore(state, word, out)
            state, out = out, state
        return score / LOG10_E


def _find_header(data: bytes) -> int | None:
    """Offset of Coqui's block: the first 'TRIE' magic of the right version followed by an FST."""
    start = 0
    while (found := data.find(MAGIC + struct.pack("<i", VERSION), start)) >= 0:
        if found + 29 <= len(data) and struct.unpack_from("<I", data, found + 25)[0] == FST_MAGIC:
            return found
        start = found + 1
    return None


def _read_string(data, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<i", data, offset)
    return bytes(data[offset + 4:offset + 4 + length]).decode("ascii", "replace"), offset + 4 + length


def _read_const_fst(data: bytes, offset: int, n_labels: int, path: str):
    """(next_state [states, n_labels] int32 (-1: no arc), final [states] bool, start state) of OpenFST's
    ConstFst binary: header, then the states (final weight, first arc, arc counts) and arcs (input and
    output label, weight, next state), each table 16-byte aligned in aligned files."""
    try:
        offset += 4
        fst_type, offset = _read_string(data, offset)
        arc_type, offset = _read_string(data, offset)
        version, flags = struct.unpack_from("<ii", data, offset)
        _, start, n_states, n_arcs = struct.unpack_from("<Qqqq", data, offset + 8)
        offset += 40
        if fst_type != "const" or arc_type != "standard" or flags & 3:  # no symbol tables expected
            raise ValueError(f"unexpected FST ({fst_type}, {arc_type}, flags {flags})")
        align = lambda o: o + (-o % 16) if flags & 4 or version == 1 else o  # noqa: E731
        offset = align(offset)
        # copies, not views: the file's mapping is closed once the table is built
        states = np.frombuffer(data, FST_STATE, n_states, offset).copy()
        offset = align(offset + states.nbytes)
        arcs = np.frombuffer(data, FST_ARC, n_arcs, offset).copy()
    except (struct.error, ValueError) as e:
        raise ScorerError(f"{path}: damaged vocabulary FST ({e})") from None
    owner = np.repeat(np.arange(n_states), states["narcs"].astype(np.int64))
    if len(owner) != n_arcs:
        raise ScorerError(f"{path}: damaged vocabulary FST (arc counts do not add up)")
    next_state = np.full((n_states, n_labels), -1, np.int32)
    usable = (arcs["ilabel"] >= 1) & (arcs["ilabel"] <= n_labels)
    next_state[owner[usable], arcs["ilabel"][usable] - 1] = arcs["next"][usable]
    final = np.isfinite(states["final"])  # TropicalWeight's zero (no final weight) is +inf
    return next_state, final, int(start)


def load_scorer(config, alphabet) -> Scorer | None:
    """The scorer --scorer_path names, weighted by --lm_alpha and --lm_beta as Coqui's training tools do
    (the package's own defaults are what Coqui's native client used)."""
    if not config.scorer_path:
        return None
    if not os.path.isfile(config.scorer_path):
        raise ScorerError(f"{config.scorer_path}: scorer file not found (--scorer_path)")
    return Scorer(config.scorer_path, alphabet, config.lm_alpha, config.lm_beta)
