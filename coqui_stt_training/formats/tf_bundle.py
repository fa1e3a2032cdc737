"""TensorFlow V2 checkpoints (as TF 1.15 / Coqui STT 1.4 write them) without TensorFlow.

A checkpoint `<prefix>` is two files:
  <prefix>.index                 an SSTable (LevelDB table format, no compression) mapping each
                                 variable name to a BundleEntryProto; the key "" holds a BundleHeaderProto
  <prefix>.data-00000-of-00001   the tensors' raw little-endian bytes, back to back
The text-proto state files that name the newest prefix are tf_state_file.py's.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..system.atomic_files import read_range, write_atomically, write_file_atomically
from ..system.errors import UserError
from . import protobuf
from .crc32c import crc32c, mask, masked_crc32c, unmask
from .protobuf import FormatError


class TFCheckpointError(UserError):
    """A checkpoint or state file that cannot be read; the message names the file and the problem."""


# TF DataType enum -> numpy dtype of the stored little-endian bytes.
_DTYPES = {
    code: np.dtype(spec)
    for code, spec in {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}.items()
}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_UNSUPPORTED_DTYPE_NAMES = {7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128", 21: "variant"}
_TENSOR_BUNDLE_VERSION = 1  # the BundleHeaderProto version TF 1.15 writes and reads


@dataclass(frozen=True)
class BundleEntry:
    dtype_code: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc: int
    sliced: bool  # partitioned variables store slices under other keys; we don't read those


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in protobuf.fields(buf):
        if number == 3 and value:
            raise FormatError("tensor shape of unknown rank")
        if number == 2:
            size = protobuf.Message(protobuf.message(value, "TensorShapeProto.dim"), "Dim").integer(1)
            dims.append(protobuf.int64(size))
    if any(d < 0 for d in dims):
        raise FormatError(f"tensor shape {dims} has unknown dimensions")
    return tuple(dims)


def _parse_entry(buf: bytes) -> BundleEntry:
    entry = protobuf.Message(buf, "BundleEntryProto")
    return BundleEntry(
        dtype_code=entry.integer(1),
        shape=_parse_shape(entry.message(2)),
        shard_id=entry.integer(3),
        offset=protobuf.int64(entry.integer(4)),
        size=protobuf.int64(entry.integer(5)),
        masked_crc=entry.integer(6),
        sliced=7 in entry,
    )


def _encode_entry(entry: BundleEntry) -> bytes:
    shape = b"".join(protobuf.message_field(2, protobuf.varint_field(1, dim)) for dim in entry.shape)
    return (
        protobuf.varint_field(1, entry.dtype_code)
        + protobuf.message_field(2, shape)  # TF always sets the shape, so even a scalar's empty one is written
        + protobuf.varint_field(3, entry.shard_id)
        + protobuf.varint_field(4, entry.offset)
        + protobuf.varint_field(5, entry.size)
        + (struct.pack("<BI", 6 << 3 | 5, entry.masked_crc) if entry.masked_crc else b"")
    )


# ---- SSTable blocks ---------------------------------------------------------------------------

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C of contents and type
TF_TABLE_BLOCK_SIZE = 262144  # tensorflow/core/lib/io/table_options.h default, used by BundleWriter
_RESTART_INTERVAL = 16


def _parse_block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = protobuf.read_varint(buf, pos)
    size, pos = protobuf.read_varint(buf, pos)
    return (offset, size), pos


def _read_block(table: bytes, handle: tuple[int, int]) -> bytes:
    offset, size = handle
    if offset + size + _BLOCK_TRAILER_SIZE > len(table) - _FOOTER_SIZE:
        raise FormatError(f"block at {offset}+{size} runs past the end of the table")
    contents = table[offset : offset + size]
    compression, stored_crc = struct.unpack_from("<BI", table, offset + size)
    if unmask(stored_crc) != crc32c(table[offset : offset + size + 1]):
        raise FormatError(f"block at offset {offset} fails its CRC32C check")
    if compression == 1:
        raise FormatError("snappy-compressed blocks are not supported")
    if compression != 0:
        raise FormatError(f"unknown block compression type {compression}")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block; keys share prefixes with their predecessor except at restarts."""
    if len(block) < 4:
        raise FormatError("block too short for its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    entries_end = len(block) - 4 - 4 * num_restarts
    if entries_end < 0:
        raise FormatError("block restart array larger than the block")
    entries, key, pos = [], b"", 0
    while pos < entries_end:
        shared, pos = protobuf.read_varint(block, pos)
        unshared, pos = protobuf.read_varint(block, pos)
        value_length, pos = protobuf.read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_length > entries_end:
            raise FormatError("corrupt block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _table_entries(table: bytes) -> list[tuple[bytes, bytes]]:
    if len(table) < _FOOTER_SIZE:
        raise FormatError(f"{len(table)} bytes is too short for an SSTable footer")
    if struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
        raise FormatError("bad SSTable magic number (not a checkpoint index, or truncated)")
    footer = table[len(table) - _FOOTER_SIZE :]
    _metaindex_handle, pos = _parse_block_handle(footer, 0)
    index_handle, _ = _parse_block_handle(footer, pos)
    entries = []
    for _separator, handle_bytes in _block_entries(_read_block(table, index_handle)):
        entries += _block_entries(_read_block(table, _parse_block_handle(handle_bytes, 0)[0]))
    keys = [key for key, _ in entries]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise FormatError("keys are not in strictly increasing order")
    return entries


# ---- reader -----------------------------------------------------------------------------------


def _data_path(prefix: str, shard_id: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


class TFCheckpointReader:
    """Variables of a TF V2 checkpoint; tensors are read from the data shard only when asked for."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        index_path = prefix + ".index"
        try:
            with open(index_path, "rb") as f:
                table = f.read()
        except OSError as e:
            raise TFCheckpointError(f"{index_path}: cannot read checkpoint index ({e.strerror})") from None
        try:
            entries = dict(_table_entries(table))
            if b"" not in entries:
                raise FormatError("no bundle header (the entry with the empty key)")
            header = protobuf.Message(entries.pop(b""), "BundleHeaderProto")
            self.num_shards = header.integer(1)
            if self.num_shards < 1:
                raise FormatError(f"bundle header says {self.num_shards} data shards")
            if header.integer(2) != 0:
                raise FormatError("big-endian checkpoints are not supported")
            needed = protobuf.Message(header.message(3), "VersionDef").integer(2)
            if needed > _TENSOR_BUNDLE_VERSION:
                raise FormatError(f"bundle needs a reader of version {needed} or newer")
            # keys starting with NUL are the slices of partitioned variables, not variables
            self._entries = {k.decode(): _parse_entry(v) for k, v in entries.items() if not k.startswith(b"\0")}
        except (FormatError, UnicodeDecodeError) as e:
            raise TFCheckpointError(f"{index_path}: {e}") from None

    def __contains__(self, name) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> BundleEntry:
        if name not in self._entries:
            raise KeyError(f"{self.prefix}: no tensor named {name!r} in the checkpoint")
        return self._entries[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entry(name).shape

    def dtype(self, name: str) -> np.dtype:
        code = self.entry(name).dtype_code
        if code not in _DTYPES:
            kind = _UNSUPPORTED_DTYPE_NAMES.get(code, f"DataType {code}")
            raise TFCheckpointError(f"{self.prefix}.index: tensor {name!r} has unsupported dtype {kind}")
        return _DTYPES[code]

    def get(self, name: str, verify: bool = True) -> np.ndarray:
        entry, dtype = self.entry(name), self.dtype(name)
        problem = f"{self.prefix}.index: tensor {name!r}"
        if entry.sliced:
            raise TFCheckpointError(f"{problem} is partitioned into slices (unsupported)")
        if entry.shard_id >= self.num_shards:
            raise TFCheckpointError(f"{problem} is in shard {entry.shard_id}, but there are {self.num_shards}")
        expected_size = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected_size:
            raise TFCheckpointError(f"{problem} has {entry.size} bytes, its shape needs {expected_size}")
        path = _data_path(self.prefix, entry.shard_id, self.num_shards)
        try:
            data = read_range(path, entry.offset, entry.size)
        except OSError as e:
            raise TFCheckpointError(f"{path}: cannot read tensor {name!r} ({e.strerror})") from None
        if len(data) != entry.size:
            end = entry.offset + entry.size
            raise TFCheckpointError(f"{path}: truncated, tensor {name!r} needs bytes {entry.offset}..{end}")
        if verify and crc32c(data) != unmask(entry.masked_crc):
            raise TFCheckpointError(f"{path}: tensor {name!r} fails its CRC32C check (data corrupt)")
        return np.frombuffer(data, dtype).reshape(entry.shape)


# ---- writer -----------------------------------------------------------------------------------


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.buffer = bytearray()
        self.restarts = [0]
        self.since_restart = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.since_restart < self.restart_interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.since_restart = 0
        self.buffer += (
            protobuf.varint(shared)
            + protobuf.varint(len(key) - shared)
            + protobuf.varint(len(value))
            + key[shared:]
            + value
        )
        self.last_key = key
        self.since_restart += 1

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buffer) + struct.pack(f"<{len(self.restarts) + 1}I", *self.restarts, len(self.restarts))


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key >= start and < limit, for the index entry of the block that ends with start."""
    common = 0
    while common < min(len(start), len(limit)) and start[common] == limit[common]:
        common += 1
    if common < min(len(start), len(limit)):
        byte = start[common]
        if byte < 0xFF and byte + 1 < limit[common]:
            return start[:common] + bytes([byte + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def _append_block(table: bytearray, contents: bytes) -> bytes:
    """Append block and trailer; returns the encoded handle that points at it."""
    handle = protobuf.varint(len(table)) + protobuf.varint(len(contents))
    table += contents + struct.pack("<BI", 0, masked_crc32c(contents + b"\0"))
    return handle


def _build_table(items: list[tuple[bytes, bytes]], block_size: int) -> bytes:
    """SSTable bytes laid out as TF's TableBuilder lays them out: data blocks, metaindex, index, footer."""
    table, index, block = bytearray(), _BlockBuilder(1), _BlockBuilder(_RESTART_INTERVAL)
    pending_handle, last_key = None, b""
    for key, value in items:
        if pending_handle is not None:  # the separator can only be chosen once the next key is known
            index.add(_shortest_separator(last_key, key), pending_handle)
            pending_handle = None
        block.add(key, value)
        last_key = key
        if block.size_estimate() >= block_size:
            pending_handle, block = _append_block(table, block.finish()), _BlockBuilder(_RESTART_INTERVAL)
    if block.buffer:
        pending_handle = _append_block(table, block.finish())
    if pending_handle is not None:
        index.add(_short_successor(last_key), pending_handle)
    handles = _append_block(table, _BlockBuilder(_RESTART_INTERVAL).finish())  # empty metaindex
    handles += _append_block(table, index.finish())
    return bytes(table) + handles.ljust(_FOOTER_SIZE - 8, b"\0") + struct.pack("<Q", _TABLE_MAGIC)


def write_tf_checkpoint(
    prefix: str, tensors: Mapping[str, np.ndarray], *, block_size: int = TF_TABLE_BLOCK_SIZE
) -> None:
    """Write tensors as a single-shard V2 checkpoint that TF 1.15 (and Coqui STT 1.4) can restore.

    Tensors go into the data file in sorted name order, as TF's Saver writes them, so the output
    is byte-identical to TF's for the same tensors. The data file is written one tensor at a time,
    so a large checkpoint is never held twice in memory, and `tensors` may be any mapping that reads
    its values lazily."""
    names = sorted(tensors, key=str.encode)
    for name in names:
        if not name or name.startswith("\0"):
            raise ValueError(f"{name!r} cannot be a checkpoint tensor name")
    entries = []

    def write_data(path: str) -> None:
        offset = 0
        with open(path, "wb") as f:
            for name in names:
                array = np.asarray(tensors[name])
                code = _DTYPE_CODES.get(array.dtype.newbyteorder("<"))
                if code is None:
                    raise ValueError(f"tensor {name!r}: dtype {array.dtype} cannot be written to a TF checkpoint")
                data = np.ascontiguousarray(array, _DTYPES[code]).reshape(-1).view(np.uint8)
                entry = BundleEntry(code, array.shape, 0, offset, len(data), mask(crc32c(data.data)), False)
                entries.append((name.encode(), _encode_entry(entry)))
                f.write(data.data)
                offset += len(data)

    # data first: a reader that finds the new index must also find the data it points into
    write_atomically(_data_path(prefix, 0, 1), write_data)
    header = protobuf.varint_field(1, 1) + protobuf.message_field(3, protobuf.varint_field(1, _TENSOR_BUNDLE_VERSION))
    index = _build_table([(b"", header)] + entries, block_size)
    write_file_atomically(prefix + ".index", index)
