"""OpenFST's ConstFst of standard arcs (`ConstFst<StdArc>`), read and written byte for byte: the vocabulary
a Coqui scorer package carries after its KenLM model.

The file (little-endian) is OpenFST's header, then a table of states and a table of arcs:

    int32 magic 2125659606; the type "const" and the arc type "standard", each an int32 length and its
    bytes; int32 version (1: aligned, 2: unaligned); int32 flags (1 and 2: symbol tables follow, 4:
    aligned); uint64 properties; int64 start state (-1: none), number of states, number of arcs
    states: float32 final weight (+inf: not final), uint32 first arc, number of arcs, of arcs with input
            label 0 and of arcs with output label 0
    arcs:   int32 input label, int32 output label, float32 weight, int32 next state

An aligned file pads with NUL bytes before each table until the stream's position is a multiple of 16. The
position is the writer's `tellp()`, so inside a scorer package it counts from the start of the package, not
of the FST: the same machine is written with different padding after KenLM models of different lengths.
Every OpenFST writer lays the arcs out state by state, so a state's first arc is the sum of the arc counts
before it; this module relies on that and refuses a file that does not.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

import numpy as np

FST_MAGIC = 2125659606
FST_TYPE = "const"
ARC_TYPE = "standard"  # StdArc: int32 labels, a float32 tropical weight
ALIGNED_VERSION = 1  # ConstFstImpl's kAlignedFileVersion
UNALIGNED_VERSION = 2  # ConstFstImpl's kFileVersion
HAS_INPUT_SYMBOLS, HAS_OUTPUT_SYMBOLS, IS_ALIGNED = 1, 2, 4  # FstHeader's flags
ALIGNMENT = 16
NO_STATE = -1  # kNoStateId: the start of a machine without states
TROPICAL_ONE, TROPICAL_ZERO = 0.0, float("inf")  # a final state's weight; a state that is not final
MAX_TYPE_NAME = 64  # longer type names are damage, not a type OpenFST knows

# OpenFST's property bits (fst/properties.h) that a vocabulary FST sets one way or the other
EXPANDED = 0x1
ACCEPTOR, NOT_ACCEPTOR = 0x10000, 0x20000
I_DETERMINISTIC, NON_I_DETERMINISTIC = 0x40000, 0x80000
O_DETERMINISTIC, NON_O_DETERMINISTIC = 0x100000, 0x200000
EPSILONS, NO_EPSILONS = 0x400000, 0x800000
I_EPSILONS, NO_I_EPSILONS = 0x1000000, 0x2000000
O_EPSILONS, NO_O_EPSILONS = 0x4000000, 0x8000000
I_LABEL_SORTED, NOT_I_LABEL_SORTED = 0x10000000, 0x20000000
O_LABEL_SORTED, NOT_O_LABEL_SORTED = 0x40000000, 0x80000000
UNWEIGHTED = 0x200000000
ACYCLIC = 0x800000000
INITIAL_ACYCLIC = 0x2000000000
TOP_SORTED, NOT_TOP_SORTED = 0x4000000000, 0x8000000000
ACCESSIBLE = 0x10000000000
CO_ACCESSIBLE = 0x40000000000
STRING, NOT_STRING = 0x100000000000, 0x200000000000
UNWEIGHTED_CYCLES = 0x800000000000

STATE_RECORD = np.dtype(
    [("final", "<f4"), ("first_arc", "<u4"), ("arcs", "<u4"), ("input_epsilons", "<u4"), ("output_epsilons", "<u4")]
)
ARC_RECORD = np.dtype([("ilabel", "<i4"), ("olabel", "<i4"), ("weight", "<f4"), ("next_state", "<i4")])
_HEADER_TAIL = struct.Struct("<iiQqqq")  # version, flags, properties, start, states, arcs

Buffer = bytes | bytearray | memoryview | mmap.mmap


@dataclass(frozen=True)
class ConstFst:
    """A ConstFst<StdArc> as its file holds it. Per state (index = state id): `final_weight` (float32, +inf
    where the state is not final) and `arc_count`; per arc, in state order: `ilabel`, `olabel` (int32),
    `weight` (float32) and `next_state` (int32). `properties` is the header's word, kept as it was read
    or as the builder computed it: OpenFST trusts it, so it is part of the bytes."""

    start: int
    final_weight: np.ndarray
    arc_count: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray
    next_state: np.ndarray
    properties: int

    @property
    def num_states(self) -> int:
        return len(self.final_weight)

    @property
    def num_arcs(self) -> int:
        return len(self.ilabel)

    @property
    def is_final(self) -> np.ndarray:
        return np.isfinite(self.final_weight)  # TropicalWeight's Zero, "not final", is +inf

    @property
    def first_arc(self) -> np.ndarray:
        """Each state's first arc: the arcs lie state by state."""
        first = np.zeros(self.num_states, np.int64)
        np.cumsum(self.arc_count[:-1], out=first[1:])
        return first

    def arc_states(self) -> np.ndarray:
        """The state each arc leaves."""
        return np.repeat(np.arange(self.num_states, dtype=np.int64), np.asarray(self.arc_count, np.int64))

    def epsilon_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Each state's arcs with input label 0, and with output label 0 (what the state table stores)."""
        before = np.zeros(self.num_arcs + 1, np.int64)
        bounds = np.concatenate([self.first_arc, [self.num_arcs]])
        counts = []
        for labels in (self.ilabel, self.olabel):
            np.cumsum(np.asarray(labels) == 0, out=before[1:])
            counts.append(before[bounds[1:]] - before[bounds[:-1]])
        return counts[0], counts[1]


def _padding(position: int, aligned: bool) -> int:
    return -position % ALIGNMENT if aligned else 0


def _type_name(data: Buffer, offset: int, what: str) -> tuple[str, int]:
    if offset + 4 > len(data):
        raise ValueError(f"the FST header ends before its {what}")
    (length,) = struct.unpack_from("<i", data, offset)
    if not 0 <= length <= MAX_TYPE_NAME or offset + 4 + length > len(data):
        raise ValueError(f"the FST header's {what} has a length of {length} bytes")
    raw = bytes(data[offset + 4 : offset + 4 + length])
    return raw.decode("ascii", "replace"), offset + 4 + length


def read_const_fst(data: Buffer, offset: int) -> tuple[ConstFst, int]:
    """The ConstFst<StdArc> at `offset` of `data` (a whole file, or a map of one: the alignment counts from
    its start), and the offset just after it. A ValueError says what is damaged; the caller names the
    file. The counts are checked against the bytes there before anything is allocated."""
    if offset < 0 or offset + 4 > len(data):
        raise ValueError(f"no FST at byte {offset}: the file ends first")
    (magic,) = struct.unpack_from("<i", data, offset)
    if magic != FST_MAGIC:
        raise ValueError(f"no OpenFST magic number at byte {offset}")
    fst_type, position = _type_name(data, offset + 4, "type")
    arc_type, position = _type_name(data, position, "arc type")
    if (fst_type, arc_type) != (FST_TYPE, ARC_TYPE):
        raise ValueError(f"a {fst_type!r} FST of {arc_type!r} arcs, not a {FST_TYPE!r} FST of {ARC_TYPE!r} arcs")
    if position + _HEADER_TAIL.size > len(data):
        raise ValueError("the FST header is cut short")
    version, flags, properties, start, num_states, num_arcs = _HEADER_TAIL.unpack_from(data, position)
    position += _HEADER_TAIL.size
    if version not in (ALIGNED_VERSION, UNALIGNED_VERSION):
        raise ValueError(f"ConstFst version {version} (OpenFST writes 1 or 2)")
    if flags & (HAS_INPUT_SYMBOLS | HAS_OUTPUT_SYMBOLS):
        raise ValueError("the FST carries symbol tables, which a scorer's vocabulary never has")
    aligned = version == ALIGNED_VERSION or bool(flags & IS_ALIGNED)  # OpenFST's rule: version 1 is aligned
    if not 0 <= num_states < 2**31 or not 0 <= num_arcs < 2**32:
        raise ValueError(f"the FST header counts {num_states} states and {num_arcs} arcs")
    if not NO_STATE <= start < num_states:
        raise ValueError(f"start state {start} of {num_states} states")
    states_at = position + _padding(position, aligned)
    arcs_at = states_at + num_states * STATE_RECORD.itemsize
    arcs_at += _padding(arcs_at, aligned)
    end = arcs_at + num_arcs * ARC_RECORD.itemsize
    if end > len(data):
        raise ValueError(
            f"the FST's {num_states} states and {num_arcs} arcs need {end - offset} bytes; the file ends first"
        )
    # copies, not views: a reader's map of the file may close once it has the machine
    states = np.frombuffer(data, STATE_RECORD, num_states, states_at).copy()
    arcs = np.frombuffer(data, ARC_RECORD, num_arcs, arcs_at).copy()
    fst = ConstFst(
        start=int(start),
        final_weight=states["final"],
        arc_count=states["arcs"].astype(np.int64),
        ilabel=arcs["ilabel"],
        olabel=arcs["olabel"],
        weight=arcs["weight"],
        next_state=arcs["next_state"],
        properties=int(properties),
    )
    _check_tables(fst, states)
    return fst, end


def _check_tables(fst: ConstFst, states: np.ndarray) -> None:
    if int(fst.arc_count.sum()) != fst.num_arcs:
        raise ValueError(f"the states' arc counts add up to {int(fst.arc_count.sum())}, not {fst.num_arcs} arcs")
    if not np.array_equal(states["first_arc"], fst.first_arc):
        raise ValueError("the arcs do not lie state by state")
    if fst.num_arcs and not ((fst.next_state >= 0) & (fst.next_state < fst.num_states)).all():
        raise ValueError("an arc leads to a state the FST does not have")
    input_epsilons, output_epsilons = fst.epsilon_counts()
    if not (np.array_equal(states["input_epsilons"], input_epsilons)
            and np.array_equal(states["output_epsilons"], output_epsilons)):  # fmt: skip
        raise ValueError("the states' epsilon counts do not match their arcs")


def write_const_fst(fst: ConstFst, file_offset: int) -> bytes:
    """`fst` as OpenFST writes a ConstFst<StdArc> with alignment (FstWriteOptions::align, as Coqui saves its
    vocabulary), for a stream at `file_offset`: the padding makes each table start at a multiple of 16
    counted from the start of the file."""
    arc_count = np.asarray(fst.arc_count, np.int64)
    arrays = (fst.olabel, fst.weight, fst.next_state)
    if len(arc_count) != fst.num_states or any(len(a) != fst.num_arcs for a in arrays):
        raise ValueError("the FST's per-state or per-arc arrays differ in length")
    if int(arc_count.sum()) != fst.num_arcs:
        raise ValueError(f"the states' arc counts add up to {int(arc_count.sum())}, not {fst.num_arcs} arcs")
    if not NO_STATE <= fst.start < fst.num_states:
        raise ValueError(f"start state {fst.start} of {fst.num_states} states")
    header = b"".join(
        [
            struct.pack("<i", FST_MAGIC),
            _type_string(FST_TYPE),
            _type_string(ARC_TYPE),
            _HEADER_TAIL.pack(ALIGNED_VERSION, IS_ALIGNED, fst.properties, fst.start, fst.num_states, fst.num_arcs),
        ]
    )
    out = bytearray(header)
    out += bytes(_padding(file_offset + len(out), True))
    states = np.zeros(fst.num_states, STATE_RECORD)
    states["final"] = fst.final_weight
    states["first_arc"] = fst.first_arc
    states["arcs"] = arc_count
    states["input_epsilons"], states["output_epsilons"] = fst.epsilon_counts()
    out += states.tobytes()
    out += bytes(_padding(file_offset + len(out), True))
    arcs = np.zeros(fst.num_arcs, ARC_RECORD)
    arcs["ilabel"], arcs["olabel"] = fst.ilabel, fst.olabel
    arcs["weight"], arcs["next_state"] = fst.weight, fst.next_state
    out += arcs.tobytes()
    return bytes(out)


def _type_string(name: str) -> bytes:
    raw = name.encode("ascii")
    return struct.pack("<i", len(raw)) + raw
