"""Coqui's scorer packages written as its generate_scorer_package writes them, with the checks it leaves to
the decoder that later fails to load the result.

A package is the KenLM binary, copied whole, then Coqui's block: the bytes "EIRT" (int32 'TRIE'), int32
version 6, one byte of UTF-8 mode, the default alpha and beta as float64 (each parsed as a C++ float first),
then the vocabulary FST (vocabulary_fst.py) as an aligned ConstFst, whose padding counts from the start of
the package. Coqui's decoder finds the block where KenLM's tables end, so the binary must end there too:
built with build_binary -v, which leaves out the vocabulary strings.
"""

from __future__ import annotations

import mmap
import shutil
import struct
from collections.abc import Iterable

import numpy as np

from ..formats.const_fst import ConstFst, write_const_fst
from ..formats.kenlm_binary import KenLMHeader, read_kenlm_header
from ..model.alphabet import AnyAlphabet
from ..system.atomic_files import write_atomically
from ..system.errors import UserError
from .vocabulary_fst import SPECIAL_TOKENS, spell_vocabulary, vocabulary_fst

MAGIC = b"EIRT"  # int32 'TRIE' as a little-endian machine stores it
VERSION = 6
_BLOCK_HEADER = struct.Struct("<4si?dd")  # magic, version, UTF-8 mode, alpha, beta: 25 bytes
ARPA_START = b"\\data\\"
# A vocabulary of which this share or more is unknown to the language model was made for another model.
# generate_lm's vocabulary is its model's own top-k words, so every word is known; a few unknown words are a
# hand-edited vocabulary (they can be spelled, but score as out of vocabulary, -1000: harmless, and useless);
# half or more is the vocabulary of another corpus, or another model's, whose package would rule out most
# of what the model can score.
MISMATCH_SHARE = 0.5


class PackageError(UserError):
    pass


def block_header(utf8_mode: bool, alpha: float, beta: float) -> bytes:
    """The 25 bytes before the FST. Coqui's tool parses alpha and beta as C++ floats and stores them widened
    to double, so 0.1 is stored as 0.10000000149011612."""
    return _BLOCK_HEADER.pack(MAGIC, VERSION, utf8_mode, float(np.float32(alpha)), float(np.float32(beta)))


def trie_block(fst: ConstFst, utf8_mode: bool, alpha: float, beta: float, lm_size: int) -> bytes:
    """Coqui's block for a package whose KenLM binary is `lm_size` bytes long."""
    header = block_header(utf8_mode, alpha, beta)
    return header + write_const_fst(fst, lm_size + len(header))


def package_tail(words: Iterable[str | bytes], alphabet: AnyAlphabet, alpha: float, beta: float, lm_size: int) -> bytes:
    """What generate_scorer_package appends to a KenLM binary of `lm_size` bytes for `words`: UTF-8 mode
    with the UTF-8 alphabet (bytes output mode), word mode with a character alphabet."""
    fst = vocabulary_fst(spell_vocabulary(words, alphabet).spellings)
    return trie_block(fst, alphabet.is_bytes, alpha, beta, lm_size)


def read_vocabulary(path: str) -> set[bytes]:
    """The words of a vocabulary file as Coqui reads them (`fin >> word` into a set): runs of bytes between
    ASCII whitespace, as bytes, since Coqui takes them as it finds them."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise PackageError(f"{path}: vocabulary file not found (--vocab)") from None
    except OSError as e:
        raise PackageError(f"{path}: cannot read the vocabulary file ({e.strerror or e})") from None
    words = set(data.split())  # bytes.split() splits where C's isspace does: space, \t, \n, \v, \f, \r
    if not words:
        raise PackageError(
            f"{path}: the vocabulary file holds no words (--vocab): give the vocab-<top_k>.txt generate_lm wrote"
        )
    return words


def looks_char_based(words: Iterable[bytes]) -> bool:
    """Coqui's guess of bytes output mode: no word of more than one code point (bytes that do not continue
    a UTF-8 sequence, counted as Coqui counts them, so bytes that are not UTF-8 count too)."""
    return not any(sum(1 for b in word if b & 0xC0 != 0x80) > 1 for word in words)


def check_language_model(path: str) -> KenLMHeader:
    """The header of the KenLM binary at --lm, refused unless Coqui's decoder could read a package of it: a
    binary (not ARPA), built with -v, with nothing after KenLM's tables."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise PackageError(f"{path}: the language model file is empty (--lm)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                try:
                    header = read_kenlm_header(data)
                except ValueError as e:
                    raise PackageError(f"{path}: {e}{_not_binary_hint(data)} (--lm)") from None
                after = bytes(data[header.end_of_search_offset : header.end_of_search_offset + 4])
    except FileNotFoundError:
        raise PackageError(f"{path}: language model not found (--lm)") from None
    except OSError as e:
        raise PackageError(f"{path}: cannot read the language model ({e.strerror or e}) (--lm)") from None
    if header.has_vocabulary:
        # Coqui's decoder would look for its block where the vocabulary strings start, and refuse the
        # package as STT_ERR_SCORER_INVALID_TRIE (0x2008)
        raise PackageError(
            f"{path}: this KenLM binary stores its vocabulary strings, which Coqui's decoder cannot read past "
            "(error 0x2008): rebuild it with build_binary -v (generate_lm does)"
        )
    if after == MAGIC:
        raise PackageError(f"{path}: already a scorer package: give the KenLM binary it was built from (--lm)")
    if size != header.end_of_search_offset:
        raise PackageError(
            f"{path}: {size - header.end_of_search_offset} bytes follow KenLM's data, where Coqui's decoder "
            "would look for its block: give the binary as build_binary -v wrote it"
        )
    return header


def _not_binary_hint(data: mmap.mmap) -> str:
    if bytes(data[:4096]).lstrip().startswith(ARPA_START):
        return ": an ARPA file; convert it with build_binary -v trie ARPA BINARY and give the binary"
    return ""


def words_unknown_to_model(lm_path: str, words: Iterable[bytes]) -> list[bytes] | None:
    """The words KenLM does not know, in order; None when the kenlm package is not installed."""
    try:
        import kenlm  # the scorer extra: the check is skipped without it
    except ImportError:
        return None
    config = kenlm.Config()
    config.load_method = kenlm.LoadMethod.LAZY  # mapped: only the vocabulary's pages are read
    try:
        model = kenlm.Model(lm_path, config)
    except (OSError, RuntimeError, ValueError) as e:
        raise PackageError(f"{lm_path}: KenLM cannot read it ({str(e).splitlines()[0]}) (--lm)") from None
    return [word for word in words if word not in SPECIAL_TOKENS and word not in model]


def check_vocabulary_matches(lm_path: str, vocab_path: str, words: set[bytes]) -> list[bytes] | None:
    """Refuse a vocabulary of which MISMATCH_SHARE or more is unknown to the language model; return the
    unknown words (for a warning), or None when kenlm is not there to ask."""
    ordered = sorted(words)
    unknown = words_unknown_to_model(lm_path, ordered)
    if unknown is None:
        return None
    counted = sum(1 for word in ordered if word not in SPECIAL_TOKENS)
    if counted and len(unknown) >= MISMATCH_SHARE * counted:
        raise PackageError(
            f"{vocab_path}: {len(unknown)} of its {counted} words are not in the language model {lm_path} "
            f"(e.g. {_quote(unknown)}): give the vocabulary generate_lm wrote with this model (--vocab, --lm)"
        )
    return unknown


def _quote(words: list[bytes], count: int = 5) -> str:
    return ", ".join(repr(w.decode("utf-8", "backslashreplace")) for w in words[:count])


def write_package(lm_path: str, lm_size: int, tail: bytes, package_path: str) -> None:
    """The KenLM binary (`lm_size` bytes, which the tail's padding was computed for), then `tail`, at
    `package_path`, which appears only once complete."""

    def write(tmp: str) -> None:
        with open(lm_path, "rb") as lm, open(tmp, "wb") as out:
            shutil.copyfileobj(lm, out, 1 << 20)
            if out.tell() != lm_size:
                raise PackageError(f"{lm_path}: the language model changed while the package was built (--lm)")
            out.write(tail)

    write_atomically(package_path, write)
