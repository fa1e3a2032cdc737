"""Coqui's external scorer: a `.scorer` package read as it is, for beam search with a language model.

A package (built by Coqui's generate_scorer_package, or ours) is a KenLM binary, then Coqui's own block
where KenLM's data ends (formats/kenlm_binary.py finds it there, as Coqui's decoder does): int32 magic
'TRIE' (bytes "EIRT" on disk), int32 version 6, a one-byte UTF-8-mode flag, float64 default alpha and
beta, then an OpenFST ConstFst (the vocabulary; formats/const_fst.py). KenLM ignores what follows its own
data, so the `kenlm` package opens the file directly; the vocabulary FST is read here into a dense table
[state, label] -> next state, which the beam search looks labels up in. A plain KenLM `.arpa` or
`.binary` file works too (beyond Coqui, whose decoder refuses it): its words are scored, and no spelling
is ruled out.

A word package (UTF-8 flag off) spells each word in alphabet labels + 1, then the space label; a UTF-8-mode
package (for --bytes_output_mode models) spells each vocabulary unit in its UTF-8 bytes, and its language
model is over characters. How the beam search scores them is Coqui's decoder's (beam_search.py); this
module answers its one question, ln P(last unit | the units before it) as Coqui's Scorer::get_log_cond_prob
does: KenLM's log10 score of the last unit after the others (from the sentence start when there are fewer
than the model's order), over log10(e), and -1000 if any unit is not in the model's vocabulary. As in Coqui,
a UTF-8-mode vocabulary has no space, so no space is ever put in such a model's transcript.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator

import numba
import numpy as np

from ..formats.const_fst import read_const_fst
from ..formats.kenlm_binary import read_kenlm_header
from ..model.alphabet import AnyAlphabet
from ..system import log
from ..system.errors import UserError

MAGIC = b"EIRT"  # int32 'TRIE' in little-endian order
VERSION = 6
OOV_SCORE = -1000.0
LOG10_E = float(np.float32(0.4342944819))  # Coqui's NUM_FLT_LOGE: log10(e) as a C++ float
MAX_CACHED = 1 << 20  # word scores kept for later searches, about 200 MB at most


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
            with kenlm_output() as said:
                self.lm = kenlm.Model(path)
            for line in said:
                log.info(f"KenLM: {line}")
        except (OSError, RuntimeError, ValueError) as e:  # random bytes: a UnicodeDecodeError
            what = (
                "its language model"
                if self.next_state is not None
                else "it: neither a Coqui scorer package nor a KenLM model"
            )
            raise ScorerError(f"{path}: KenLM cannot read {what} ({str(e).splitlines()[0]})") from None
        if self.next_state is not None and not self.utf8_mode:
            self._check_alphabet(path)
        if self.alpha is None or self.beta is None:
            raise ScorerError(
                f"{path}: a plain KenLM model has no default alpha and beta; give --lm_alpha and --lm_beta"
            )
        self.order = self.lm.order
        self._kenlm = kenlm
        self._states: dict = {}  # KenLM states after sequences of units, kept for the longer ones
        self._scratch = kenlm.State()
        self.scores_by_key = typed_scores()  # the beam search's own cache, keyed by its hash of the labels
        self._scored = 0
        names = [] if alphabet.is_bytes else alphabet.labels
        single = bool(names) and all(len(name) == 1 for name in names)
        self._codepoints = np.array([ord(name) for name in names], np.uint32) if single else None

    def _read_package(self, path: str, data, alphabet, alpha, beta, char_based) -> None:
        header = _find_header(data, path)
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
        # through a C++ float, as Coqui's reset_params(float alpha, float beta) takes them
        chosen_alpha, chosen_beta = (
            (default_alpha if alpha is None else alpha),
            (default_beta if beta is None else beta),
        )
        self.alpha = None if chosen_alpha is None else float(np.float32(chosen_alpha))
        self.beta = None if chosen_beta is None else float(np.float32(chosen_beta))
        if alphabet.space_index is None and not self.utf8_mode:
            raise ScorerError(f"{path}: a word scorer needs a space label in the alphabet")
        self.space = -1 if alphabet.space_index is None else alphabet.space_index
        self.alphabet = alphabet
        if header is not None:
            self.next_state, self.final, self.start = _read_const_fst(data, header + 25, alphabet.size, path)
        else:
            self.next_state, self.final, self.start = None, None, 0

    def _check_alphabet(self, path: str, tried: int = 200) -> None:
        """A package's vocabulary, spelled in this alphabet, must be its language model's words: one built for
        another alphabet spells nonsense here (Coqui's decoder would silently find no word)."""
        assert self.next_state is not None
        words = vocabulary_sample(self.next_state, self.start, self.space, tried)
        names = self.alphabet.labels
        unknown = sum(1 for word in words if "".join(names[label] for label in word) not in self.lm)
        if len(words) >= 10 and unknown > len(words) // 2:
            raise ScorerError(
                f"{path}: built for another alphabet: {unknown} of the first {len(words)} words of its vocabulary, "
                "spelled in this model's alphabet, are not in its language model"
            )

    def set_weights(self, alpha: float, beta: float) -> None:
        """lm_optimize's trials: new weights, through a C++ float as Coqui's reset_params takes them."""
        self.alpha, self.beta = float(np.float32(alpha)), float(np.float32(beta))

    def unit_texts(self, labels: np.ndarray, starts: np.ndarray) -> list[str | bytes]:
        """Words' (UTF-8 mode: characters') labels as the language model's text: unit u is
        labels[starts[u]:starts[u + 1]]. Bytes that are no UTF-8 (a character still unfinished) stay bytes,
        which no vocabulary holds. All units are decoded in one go: the beam search asks for thousands."""
        bounds = starts.tolist()
        if self.utf8_mode and self.alphabet.is_bytes:
            raw = (labels + 1).astype(np.uint8).tobytes()
            return [_utf8_or_bytes(raw[a:b]) for a, b in itertools.pairwise(bounds)]
        if self._codepoints is not None:  # one codepoint a label: the whole text at once, then sliced
            text = self._codepoints[labels].tobytes().decode("utf-32-le")
            return [text[a:b] for a, b in itertools.pairwise(bounds)]
        names = self.alphabet.labels
        return ["".join(names[label] for label in labels[a:b]) for a, b in itertools.pairwise(bounds)]

    def word_scores(self, texts: list[str | bytes], bounds: list[int]) -> np.ndarray:
        """log_cond_prob of each of a beam search's n-grams, n-gram i being texts[bounds[i]:bounds[i + 1]],
        from the sentence start where it is shorter than the model's order (Coqui's make_ngram)."""
        out = np.empty(len(bounds) - 1)
        self._scored += len(out)  # (about what the search adds to scores_by_key: asking numba its size is slow)
        if self._scored >= MAX_CACHED:  # a long test set: start the caches afresh rather than grow on
            self._states.clear()
            self.scores_by_key.clear()
            self._scored = len(out)
        for i in range(len(out)):
            units = tuple(texts[bounds[i] : bounds[i + 1]])
            out[i] = self.log_cond_prob(units, len(units) < self.order)
        return out

    def log_cond_prob(self, units: tuple[str | bytes, ...], bos: bool) -> float:
        """Coqui's get_log_cond_prob: ln P(last unit | the others), from the sentence start if `bos`, else
        from no context; OOV_SCORE if any unit is out of the vocabulary (an empty sequence scores 0)."""
        if not units:
            return 0.0
        state = self._context(units[:-1], bos)
        last = units[-1]
        if state is None or isinstance(last, bytes) or last not in self.lm:
            return OOV_SCORE
        return self.lm.BaseScore(state, last, self._scratch) / LOG10_E

    def _context(self, units: tuple[str | bytes, ...], bos: bool):
        """KenLM's state after `units` (from the sentence start if `bos`, else from no context), kept for
        every longer sequence that starts with them; None if one is out of the vocabulary."""
        key = (units, bos)
        if key in self._states:
            return self._states[key]
        if not units:
            state = self._kenlm.State()
            if bos:
                self.lm.BeginSentenceWrite(state)
            else:
                self.lm.NullContextWrite(state)
        else:
            before, last = self._context(units[:-1], bos), units[-1]
            state = None
            if before is not None and not isinstance(last, bytes) and last in self.lm:
                state = self._kenlm.State()
                self.lm.BaseScore(before, last, state)
        self._states[key] = state
        return state


def vocabulary_sample(next_state: np.ndarray, start: int, space: int, limit: int) -> list[list[int]]:
    """Up to `limit` words of a vocabulary FST ([state, label] -> next state), as label lists, depth first."""
    words: list[list[int]] = []
    stack: list[tuple[int, list[int]]] = [(start, [])]
    while stack and len(words) < limit:
        state, spelled = stack.pop()
        for label in np.flatnonzero(next_state[state] >= 0)[::-1].tolist():
            if label == space:
                if spelled:
                    words.append(spelled)
            elif len(spelled) < 64:
                stack.append((int(next_state[state, label]), [*spelled, label]))
    return words


def _utf8_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def typed_scores():
    """An empty numba dictionary int64 -> float64, which compiled code reads without Python."""
    return numba.typed.Dict.empty(key_type=numba.types.int64, value_type=numba.types.float64)


def _find_header(data, path: str) -> int | None:
    """Offset of Coqui's block: where KenLM's tables end, as Coqui's decoder looks for it (GetEndOfSearchOffset);
    None for a plain KenLM model (an ARPA file, or a binary with nothing after its data)."""
    try:
        kenlm_header = read_kenlm_header(data)
    except ValueError:
        return None  # ARPA text, or no language model at all, which KenLM says when it opens the file
    at = kenlm_header.end_of_search_offset
    tag = MAGIC + struct.pack("<i", VERSION)
    if kenlm_header.has_vocabulary:
        # the vocabulary strings follow KenLM's tables; a block after them is one Coqui's decoder never finds
        if data.find(tag, at) >= 0:
            raise ScorerError(
                f"{path}: its KenLM model stores its vocabulary, so Coqui's decoder cannot find the vocabulary "
                "block (error 0x2008): rebuild the package from a binary built with build_binary -v"
            )
        return None
    if at == len(data):
        return None
    if bytes(data[at : at + 4]) != MAGIC:
        raise ScorerError(f"{path}: {len(data) - at} bytes after KenLM's data, and they are no Coqui scorer block")
    (version,) = struct.unpack_from("<i", data, at + 4)
    if version != VERSION:
        raise ScorerError(f"{path}: scorer block version {version}; Coqui STT 1.4 reads version {VERSION}")
    return at


def _read_const_fst(data, offset: int, n_labels: int, path: str):
    """(next_state [states, n_labels] int32 (-1: no arc), final [states] bool, start state) of the package's
    vocabulary FST."""
    try:
        fst, _ = read_const_fst(data, offset)
    except ValueError as e:
        raise ScorerError(f"{path}: damaged vocabulary FST ({e})") from None
    next_state = np.full((fst.num_states, n_labels), -1, np.int32)
    usable = (fst.ilabel >= 1) & (fst.ilabel <= n_labels)  # label -1: Coqui's space in an alphabet without one
    next_state[fst.arc_states()[usable], fst.ilabel[usable] - 1] = fst.next_state[usable]
    return next_state, fst.is_final, fst.start


def load_scorer(path: str, alphabet: AnyAlphabet, alpha: float | None, beta: float | None) -> Scorer | None:
    """The scorer at --scorer_path ("": none), weighted by --lm_alpha and --lm_beta as Coqui's training tools
    do (None: the package's own defaults, which Coqui's native client used)."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise ScorerError(f"{path}: scorer file not found (--scorer_path)")
    return Scorer(path, alphabet, alpha, beta)


_PROGRESS = re.compile(r"^(Reading .*|[-0-9]*|\**)$")  # KenLM's "Reading <file>" and its progress bar


@contextlib.contextmanager
def kenlm_output() -> Iterator[list[str]]:
    """What KenLM writes to the C-level stderr while loading, held back: its progress bar is noise, and before a
    one-line error it buries the line. Its other lines (such as the hint to build a binary) are given to the caller
    once the load succeeded."""
    sys.stderr.flush()
    said: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            said += [line for line in text.splitlines() if line.strip() and not _PROGRESS.match(line.strip())]
