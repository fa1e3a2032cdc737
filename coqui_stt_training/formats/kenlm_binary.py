"""KenLM's binary language models (build_binary's output, format version 5): the header, and where KenLM's
own data ends, which is where a Coqui scorer package's block starts.

Coqui's decoder asks KenLM for GetEndOfSearchOffset() and reads its 'TRIE' block there. KenLM does not write
that offset down: it follows from the n-gram counts and a few configuration bytes stored inside the data,
computed here as KenLM computes the sizes of its tables. The layout (little-endian, as x86-64 and aarch64
builds write it, which KenLM checks with its 88-byte "sanity" block):

    0    the sanity block: "mmap lm http://kheafield.com/code format version 5\\n\\0", NUL-padded to 56 bytes;
         float32 0.0, 1.0, -0.5; uint32 1, 0xFFFFFFFF, 0; uint64 1
    88   uint8 order, 3 bytes padding, float32 probing multiplier, int32 model type, uint8 has_vocabulary,
         3 bytes padding, uint32 search version
    108  uint64 n-gram counts, one per order; then padding to a multiple of 8
         the vocabulary table, the search structure (the n-gram tables), and only when build_binary ran
         without -v the vocabulary strings ("<unk>" first, each NUL-terminated)

Model types: 0 probing, 1 rest probing, 2 trie, 3 quantised trie, 4 trie with compressed pointers (-a),
5 both. A probing vocabulary is a hash table of 12-byte entries after an 8-byte header; a trie's is a count
and 8 bytes per word. A quantised trie starts its search structure with a version byte (2) and the
probability and backoff bits; compressed pointers store a version byte (0) and the pointer bits after the
unigrams.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

MAGIC = b"mmap lm http://kheafield.com/code format version 5\n\0"
MAGIC_UNFINISHED = b"mmap lm http://kheafield.com/code incomplete\n"  # build_binary was stopped mid-write
MAGIC_ANY_VERSION = b"mmap lm http://kheafield.com/code"
MODEL_TYPES = ("probing", "rest_probing", "trie", "quant_trie", "array_trie", "quant_array_trie")
QUANTISED = {"quant_trie", "quant_array_trie"}
COMPRESSED_POINTERS = {"array_trie", "quant_array_trie"}
PROBING_SEARCH_VERSION, TRIE_SEARCH_VERSION = 0, 1
QUANTISATION_VERSION, POINTER_COMPRESSION_VERSION = 2, 0
_PARAMETERS = struct.Struct("<B3xfi?3xI")  # order, probing multiplier, model type, has_vocabulary, search version

Buffer = bytes | bytearray | memoryview | mmap.mmap


def _align8(n: int) -> int:
    return -(-n // 8) * 8


# what KenLM writes first and compares byte for byte when it opens a binary
SANITY = MAGIC.ljust(_align8(len(MAGIC) + 1), b"\0") + struct.pack("<fffIIIQ", 0.0, 1.0, -0.5, 1, 0xFFFFFFFF, 0, 1)
PARAMETERS_AT = len(SANITY)  # 88
COUNTS_AT = PARAMETERS_AT + _PARAMETERS.size  # 108


@dataclass(frozen=True)
class KenLMHeader:
    """What a KenLM binary says of itself. `has_vocabulary`: the vocabulary strings are stored (build_binary
    without -v). `end_of_search_offset`: where KenLM's tables end (Coqui's GetEndOfSearchOffset): the
    strings start there when stored, a scorer package's block otherwise."""

    order: int
    model_type: str
    counts: tuple[int, ...]
    has_vocabulary: bool
    end_of_search_offset: int


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _probing_buckets(entries: int, multiplier: float) -> int:
    # KenLM sizes a probing table as max(entries + 1, (uint64)(float(multiplier) * float(entries)))
    return max(entries + 1, int(_f32(_f32(multiplier) * _f32(float(entries)))))


def _bit_packed_size(entries: int, max_vocab: int, remaining_bits: int) -> int:
    bits = (max_vocab.bit_length() + remaining_bits) & 0xFF  # KenLM keeps the total in a uint8
    return ((1 + entries) * bits + 7) // 8 + 8


def _chop_bits(max_offset: int, max_next: int, pointer_bits: int) -> int:
    # the compressed pointers' split: the first of the cheapest choices, in KenLM's int64 arithmetic
    required = max_next.bit_length()
    best, lowest = 0, (1 << 63) - 1
    for chop in range(min(required, pointer_bits) + 1):
        change = ((max_next >> (required - chop)) * 64 - max_offset * chop) & ((1 << 64) - 1)
        change = change - (1 << 64) if change >= 1 << 63 else change
        if change < lowest:
            best, lowest = chop, change
    return best


def _pointer_table(compressed: bool, max_offset: int, max_next: int, pointer_bits: int) -> tuple[int, int]:
    """(bytes of the pointer table before a middle order's n-grams, pointer bits kept in each entry)."""
    required = max_next.bit_length()
    if not compressed:
        return 0, required
    chop = _chop_bits(max_offset, max_next, pointer_bits)
    return 8 * (2 + (max_next >> (required - chop))) + 7, required - chop


def _bytes_at(data: Buffer, offset: int, size: int, what: str) -> bytes:
    if offset + size > len(data):
        raise ValueError(f"cut short: the file ends before its {what} (byte {offset})")
    return bytes(data[offset : offset + size])


def read_kenlm_header(data: Buffer) -> KenLMHeader:
    """The header of the KenLM binary in `data` (the whole file, or a map of it) and where its tables end. A
    ValueError says what is wrong (not a KenLM binary, unfinished, damaged); the caller names the file."""
    head = bytes(data[: len(SANITY)])
    if head != SANITY:
        if head.startswith(MAGIC_UNFINISHED):
            raise ValueError("an unfinished KenLM binary: build_binary did not complete it")
        if head.startswith(MAGIC_ANY_VERSION):
            raise ValueError("a KenLM binary of another format version or byte order than version 5, little-endian")
        raise ValueError("not a KenLM binary")
    order, multiplier, type_id, has_vocabulary, search_version = _PARAMETERS.unpack(
        _bytes_at(data, PARAMETERS_AT, _PARAMETERS.size, "parameters")
    )
    if not 0 <= type_id < len(MODEL_TYPES):
        raise ValueError(f"unknown KenLM model type {type_id}")
    model_type = MODEL_TYPES[type_id]
    probing = type_id < 2
    if order < 2 or (probing and multiplier < 1.0):
        raise ValueError(f"damaged KenLM header (order {order}, probing multiplier {multiplier})")
    if search_version != (PROBING_SEARCH_VERSION if probing else TRIE_SEARCH_VERSION):
        raise ValueError(f"damaged KenLM header ({model_type} with search version {search_version})")
    counts = struct.unpack(f"<{order}Q", _bytes_at(data, COUNTS_AT, 8 * order, "n-gram counts"))
    vocabulary_at = _align8(COUNTS_AT + 8 * order)
    if probing:
        search_at = vocabulary_at + 8 + 12 * _probing_buckets(counts[0], multiplier)
        end = search_at + _probing_search_size(counts, multiplier, model_type == "rest_probing")
    else:
        search_at = vocabulary_at + 8 + 8 * counts[0]
        end = search_at + _trie_search_size(data, search_at, counts, model_type)
    if end > len(data):
        raise ValueError(f"cut short: {len(data)} bytes, but KenLM's tables end at byte {end}")
    return KenLMHeader(
        order=order,
        model_type=model_type,
        counts=tuple(counts),
        has_vocabulary=bool(has_vocabulary),
        end_of_search_offset=end,
    )


def _probing_search_size(counts: tuple[int, ...], multiplier: float, rest: bool) -> int:
    # unigrams: probability and backoff (and rest) per word plus one; middle orders: a hash table of key and
    # weights; the longest order: key and probability
    size = (counts[0] + 1) * (12 if rest else 8)
    size += sum(_probing_buckets(c, multiplier) * (20 if rest else 16) for c in counts[1:-1])
    return size + _probing_buckets(counts[-1], multiplier) * 12


def _trie_search_size(data: Buffer, search_at: int, counts: tuple[int, ...], model_type: str) -> int:
    order = len(counts)
    quantisation = 0
    middle_bits, longest_bits = 63, 31  # unquantised: float probability and backoff, less their sign bits
    if model_type in QUANTISED:
        version, prob_bits, backoff_bits = _bytes_at(data, search_at, 3, "quantisation header")
        if version != QUANTISATION_VERSION:
            raise ValueError(f"damaged KenLM binary: quantisation version {version}")
        quantisation = ((order - 2) * ((1 << backoff_bits) + (1 << prob_bits)) + (1 << prob_bits)) * 4 + 8
        middle_bits, longest_bits = prob_bits + backoff_bits, prob_bits
    unigrams = (counts[0] + 2) * 16  # probability, backoff and next pointer; one more for <unk>, one to end
    compressed = model_type in COMPRESSED_POINTERS
    pointer_bits = 0
    if compressed and order > 2:
        version, pointer_bits = _bytes_at(data, search_at + quantisation + unigrams, 2, "pointer header")
        if version != POINTER_COMPRESSION_VERSION:
            raise ValueError(f"damaged KenLM binary: pointer compression version {version}")
    size = quantisation + unigrams
    for i in range(1, order - 1):
        table, inline_bits = _pointer_table(compressed, counts[i] + 1, counts[i + 1], pointer_bits)
        size += table + _bit_packed_size(counts[i], counts[0], middle_bits + inline_bits)
    return size + _bit_packed_size(counts[-1], counts[0], longest_bits)
