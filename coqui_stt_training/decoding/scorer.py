"""Coqui's external scorer: a `.scorer` package read as it is, for beam search with a language model.

A package (built by Coqui's generate_scorer_package) is a KenLM binary, then Coqui's own block:
int32 magic 'TRIE' (bytes "EIRT" on disk), int32 version 6, a one-byte UTF-8-mode flag, float64
default alpha and beta, then an OpenFST ConstFst (the vocabulary). KenLM ignores what follows its own
data, so the `kenlm` package opens the file directly; the vocabulary FST is read here into a dense table
[state, label] -> next state, so that the beam search checks a whole beam against it at once. A plain
KenLM `.arpa` or `.binary` file works too, as a word model: its words are scored, and no spelling is
ruled out.

A word package (UTF-8 flag off) spells each word in alphabet labels + 1, then the space label. Scoring
follows Coqui's decoder: when a prefix is extended by a space, the word it completes is scored as
alpha * ln P(word | up to order-1 previous words) + beta (an out-of-vocabulary word scores -1000), and
characters that would leave the vocabulary are not extended at all.

A UTF-8-mode package (for --bytes_output_mode models) holds a character language model: its text was
words spelled one character per token, one word per line, and its vocabulary FST spells each character
in UTF-8 bytes. As in Coqui, each character is scored when its last byte arrives, as
alpha * ln P(character | up to order-1 previous characters) + beta, and bytes that spell no vocabulary
character are not extended. Coqui also runs spaces through that FST, which has none, so its decoder can
never put a space in a transcript. Here a space is what the model's text made it, the end of a word: it
scores alpha * ln P(</s> | the word's last characters) + beta, and the next character starts after <s>.
The transcript's last word ends the same way (without beta).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from collections.abc import Sequence

import numpy as np

from ..model.alphabet import AnyAlphabet
from ..system.errors import UserError

MAGIC = b"EIRT"  # int32 'TRIE' in little-endian order
VERSION = 6
FST_MAGIC = 2125659606
OOV_SCORE = -1000.0
# OpenFST ConstFst<StdArc, uint32> records: a state's final weight, first arc and arc counts; an arc's
# input and output labels, weight and next state
FST_STATE = np.dtype([("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("niepsilons", "<u4"), ("noepsilons", "<u4")])
FST_ARC = np.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("next", "<i4")])
LOG10_E = math.log10(math.e)


class ScorerError(UserError):
    pass


class Scorer:
    """A scorer file opened for one alphabet. `utf8_mode` (Coqui's name) says whether it scores
    characters (UTF-8-mode packages) or words; `char_based` sets it for a plain KenLM model, which has
    no flag of its own (a package's flag is what Coqui built it with, and stands)."""

    def __init__(
        self,
        path: str,
        alphabet: AnyAlphabet,
        alpha: float | None = None,
        beta: float | None = None,
        char_based: bool | None = None,
    ):
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                # mapped, not read: a release scorer is about a gigabyte, and only its tail is parsed here
                self._read_package(path, data, alphabet, alpha, beta, char_based)
        except ScorerError:
            raise
        except (OSError, ValueError) as e:
            raise ScorerError(f"{path}: cannot read scorer ({getattr(e, 'strerror', None) or e})") from None
        try:
            import kenlm  # only scorers need it (a C++ build from PyPI)
        except ImportError:
            raise ScorerError(
                f"{path}: scorers need the kenlm package: pip install 'coqui-stt-torch[scorer]'"
            ) from None

        try:
            self.lm = kenlm.Model(path)
        except (OSError, RuntimeError, ValueError) as e:  # random bytes: a UnicodeDecodeError
            what = (
                "its language model"
                if self.next_state is not None
                else "it: neither a Coqui scorer package nor a KenLM model"
            )
            raise ScorerError(f"{path}: KenLM cannot read {what} ({str(e).splitlines()[0]})") from None
        if self.alpha is None or self.beta is None:
            raise ScorerError(
                f"{path}: a plain KenLM model has no default alpha and beta; give --lm_alpha and --lm_beta"
            )
        self.order = self.lm.order
        self._kenlm = kenlm
        if self.utf8_mode:
            self._char_states = _CharStates(self)

    def _read_package(self, path: str, data, alphabet, alpha, beta, char_based) -> None:
        header = _find_header(data)
        if header is not None:
            self.utf8_mode = bool(data[header + 8])
            default_alpha, default_beta = struct.unpack_from("<dd", data, header + 9)
            # Coqui builds a UTF-8-mode vocabulary in bytes and a word vocabulary in an alphabet's labels:
            # read with the other kind of model, its FST would spell nonsense
            if self.utf8_mode and not alphabet.is_bytes:
                raise ScorerError(
                    f"{path}: a UTF-8-mode scorer is for --bytes_output_mode models; this model has an alphabet file"
                )
            if not self.utf8_mode and alphabet.is_bytes:
                raise ScorerError(
                    f"{path}: a word scorer package spells its vocabulary in an alphabet file's "
                    "labels; a --bytes_output_mode model needs a UTF-8-mode scorer"
                )
        else:  # a plain KenLM model (.arpa or .binary): any spelling is allowed
            self.utf8_mode, default_alpha, default_beta = bool(char_based), None, None
        self.alpha = default_alpha if alpha is None else alpha
        self.beta = default_beta if beta is None else beta
        if alphabet.space_index is None and not self.utf8_mode:
            raise ScorerError(f"{path}: a word scorer needs a space label in the alphabet")
        self.space = -1 if alphabet.space_index is None else alphabet.space_index
        self.alphabet = alphabet
        if header is not None:
            self.next_state, self.final, self.start = _read_const_fst(data, header + 25, alphabet.size, path)
        else:
            self.next_state, self.final, self.start = None, None, 0

    def word_score(self, ngram: tuple[str, ...]) -> float:
        """alpha * ln P(last word | previous words) + beta for the last `order` words of a prefix that a
        space is about to end (fewer near the start, which is then the sentence start, as in Coqui)."""
        if self.alphabet.is_bytes:  # a bytes model's words arrive as one character per byte
            ngram = tuple(word.encode("latin-1").decode("utf-8", "replace") for word in ngram)
        return self.alpha * self.log_probability(ngram, bos=len(ngram) < self.order) + self.beta

    def log_probability(self, words: Sequence[str], bos: bool) -> float:
        """Natural-log probability of the last word given the others, as Coqui's get_log_cond_prob."""
        state = self._context(words[:-1], bos)
        return OOV_SCORE if state is None else self._next_log_probability(state, words[-1])

    def _context(self, words, bos: bool):
        """KenLM's state after `words` (from the sentence start, or from no context); None if one is OOV."""
        state, out = self._kenlm.State(), self._kenlm.State()
        if bos:
            self.lm.BeginSentenceWrite(state)
        else:
            self.lm.NullContextWrite(state)
        for word in words:
            if word not in self.lm:
                return None
            self.lm.BaseScore(state, word, out)
            state, out = out, state
        return state

    def _next_log_probability(self, state, word: str) -> float:
        if word not in self.lm:
            return OOV_SCORE
        return self.lm.BaseScore(state, word, self._kenlm.State()) / LOG10_E

    # Character scoring (UTF-8 mode), a whole beam at a time: see _CharStates.
    def char_scores(self, states: np.ndarray) -> np.ndarray:
        """[len(states), labels]: what extending each prefix by each label adds to its score; -inf where
        the bytes cannot continue UTF-8."""
        return self._char_states.scores(states, self.alpha, self.beta)

    def char_next(self, state: int, label: int) -> int:
        return self._char_states.next(state, label)

    def char_end_scores(self, states: np.ndarray) -> np.ndarray:
        """What ending the transcript adds to each prefix: its last word's end, an unfinished character's
        OOV score (as Coqui), or nothing after a space."""
        return self._char_states.end_scores(states, self.alpha, self.beta)


class _CharStates:
    """What a character scorer needs to know of a prefix: the last order-1 characters of the word being
    spelled, whether that word has begun, and the bytes of an unfinished character. There are few such
    states (a few per character in the vocabulary for a small order), so each gets a number, and its
    log-probabilities for every label are computed once, with alpha and beta applied on each lookup
    (lm_optimize changes them between trials)."""

    SCORED, WAITING, INVALID = 1, 0, -1  # a label completes a scored unit, starts or continues one, or is not UTF-8

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.keys: list[tuple[tuple[str, ...], bool, bytes]] = []
        self.ids: dict = {}
        self.transitions: dict[tuple[int, int], int] = {}
        size = scorer.alphabet.size
        self.log_prob = np.zeros((64, size))  # grown by doubling
        self.kind = np.zeros((64, size), np.int8)
        self.end_log_prob = np.zeros(64)
        self.end_beta = np.zeros(64)  # 1 where ending adds beta too (an unfinished character, as in Coqui)
        self.intern(((), False, b""))  # state 0: the start of the transcript

    def intern(self, key) -> int:
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.keys)
            self.keys.append(key)
            if found == len(self.kind):
                self.log_prob, self.kind, self.end_log_prob, self.end_beta = (
                    np.concatenate([a, np.zeros_like(a)])
                    for a in (self.log_prob, self.kind, self.end_log_prob, self.end_beta)
                )
            self.log_prob[found], self.kind[found], self.end_log_prob[found], self.end_beta[found] = self._row(*key)
        return found

    def _unit(self, pending: bytes, label: int) -> tuple[int, str | bytes]:
        """(kind, the completed unit or the still-unfinished bytes) of appending `label`."""
        alphabet = self.scorer.alphabet
        if not alphabet.is_bytes:
            return self.SCORED, alphabet.labels[label]
        piece = pending + bytes([label + 1])
        need = _utf8_length(piece[0])
        if need == 0 or (len(piece) > 1 and not 0x80 <= piece[-1] < 0xC0):
            return self.INVALID, b""
        if len(piece) < need:
            return self.WAITING, piece
        try:
            return self.SCORED, piece.decode("utf-8")
        except UnicodeDecodeError:  # overlong forms and surrogates
            return self.INVALID, b""

    def _row(self, context, begun, pending):
        scorer, size = self.scorer, self.scorer.alphabet.size
        log_prob, kind = np.zeros(size), np.zeros(size, np.int8)
        state = scorer._context(context, bos=len(context) < scorer.order - 1)
        score = (lambda unit: OOV_SCORE) if state is None else (lambda unit: scorer._next_log_probability(state, unit))
        for label in range(size):
            if label == scorer.space:
                kind[label] = self.INVALID if pending else self.SCORED
                log_prob[label] = 0.0 if pending else score("</s>")
                continue
            kind[label], unit = self._unit(pending, label)
            if kind[label] == self.SCORED:
                log_prob[label] = score(unit)
        if pending:
            return log_prob, kind, OOV_SCORE, 1.0
        return log_prob, kind, score("</s>") if begun else 0.0, 0.0

    def next(self, state: int, label: int) -> int:
        found = self.transitions.get((state, label))
        if found is None:
            context, begun, pending = self.keys[state]
            key: tuple[tuple[str, ...], bool, bytes]
            if label == self.scorer.space:
                key = ((), False, b"")
            else:
                kind, unit = self._unit(pending, label)
                if kind == self.WAITING:
                    assert isinstance(unit, bytes)  # the character's bytes so far
                    key = (context, begun, unit)
                elif kind == self.SCORED:
                    assert isinstance(unit, str)  # the completed character
                    keep = self.scorer.order - 1
                    key = ((context + (unit,))[-keep:] if keep else (), True, b"")
                else:  # never extended (its score is -inf)
                    key = self.keys[state]
            found = self.transitions[(state, label)] = self.intern(key)
        return found

    def scores(self, states: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        kind = self.kind[states]
        return np.where(
            kind == self.SCORED, alpha * self.log_prob[states] + beta, np.where(kind == self.WAITING, 0.0, -np.inf)
        )

    def end_scores(self, states: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        return alpha * self.end_log_prob[states] + beta * self.end_beta[states]


def _utf8_length(first_byte: int) -> int:
    """Bytes in the UTF-8 sequence that starts with `first_byte`; 0 if it cannot start one."""
    if first_byte < 0x80:
        return 1
    if 0xC2 <= first_byte < 0xE0:
        return 2
    if 0xE0 <= first_byte < 0xF0:
        return 3
    if 0xF0 <= first_byte < 0xF5:
        return 4
    return 0


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
    return bytes(data[offset + 4 : offset + 4 + length]).decode("ascii", "replace"), offset + 4 + length


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
        align = lambda o: o + (-o % 16) if flags & 4 or version == 1 else o
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


def load_scorer(path: str, alphabet: AnyAlphabet, alpha: float | None, beta: float | None) -> Scorer | None:
    """The scorer at --scorer_path ("": none), weighted by --lm_alpha and --lm_beta as Coqui's training tools
    do (None: the package's own defaults, which Coqui's native client used)."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise ScorerError(f"{path}: scorer file not found (--scorer_path)")
    return Scorer(path, alphabet, alpha, beta)
