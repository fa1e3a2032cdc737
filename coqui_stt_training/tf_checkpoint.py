"""TensorFlow V2 checkpoints (as TF 1.15 / Coqui STT 1.4 write them) without TensorFlow.

A checkpoint `<prefix>` is two files:
  <prefix>.index                 an SSTable (LevelDB table format, no compression) mapping each
                                 variable name to a BundleEntryProto; the key "" holds a BundleHeaderProto
  <prefix>.data-00000-of-00001   the tensors' raw little-endian bytes, back to back
plus a text-proto state file ('checkpoint', 'best_dev_checkpoint') naming the newest prefix.
Protobuf messages are decoded and encoded by hand so that no protobuf or TensorFlow is needed.
"""

import os
import re
import struct
from dataclasses import dataclass

import numpy as np


class TFCheckpointError(ValueError):
    """A checkpoint or state file that cannot be read; the message names the file and the problem."""


class _FormatError(Exception):
    """Raised by the low-level decoders, which don't know the file name; readers add it."""


# ---- CRC32C (Castagnoli) ---------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF
_CRC_DELTA = 0xA282EAD8


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0x82F63B78 if reg & 1 else reg >> 1
        table.append(reg)
    return table


_CRC_TABLE = _make_crc_table()
_CRC_TABLE_NP = np.array(_CRC_TABLE, dtype=np.uint32)
_LANES = 8192  # the numpy path runs this many independent CRCs side by side, one per chunk
_SEGMENT = _LANES * 1024  # 8 MiB at a time through the numpy path


def _crc_register_bytewise(reg: int, data) -> int:
    table = _CRC_TABLE
    for byte in data:
        reg = table[(reg ^ byte) & 0xFF] ^ (reg >> 8)
    return reg


def _crc_register_lanes(reg: int, data: memoryview) -> int:
    """Advance the CRC register over data[:_LANES * L] with numpy, L = len(data) // _LANES.

    The register update is linear over GF(2), so the CRC of chunk i can be computed from a zero
    register in parallel with the others and then folded in: reg' = shift_L(reg) ^ crc0(chunk).
    shift_L (pushing L zero bytes through) is found by running 32 extra lanes that start at the
    unit vectors and see only zero bytes."""
    length = len(data) // _LANES
    chunks = np.frombuffer(data, np.uint8, count=_LANES * length).reshape(_LANES, length)
    columns = np.zeros((length, _LANES + 32), np.uint8)
    columns[:, :_LANES] = chunks.T
    regs = np.zeros(_LANES + 32, np.uint32)
    regs[_LANES:] = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for column in columns:
        regs = _CRC_TABLE_NP[(regs ^ column) & 0xFF] ^ (regs >> 8)
    # shift_L as four lookup tables, one per register byte: entry v XORs the images of v's set bits
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    unit_images = regs[_LANES:].astype(np.int64)
    t0, t1, t2, t3 = (np.bitwise_xor.reduce(bits * unit_images[8 * k : 8 * k + 8], axis=1).tolist() for k in range(4))
    for chunk_crc in regs[:_LANES].tolist():
        reg = t0[reg & 0xFF] ^ t1[(reg >> 8) & 0xFF] ^ t2[(reg >> 16) & 0xFF] ^ t3[reg >> 24] ^ chunk_crc
    return reg


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of data; pass a previous result as crc to continue it over more data."""
    view = memoryview(data).cast("B")
    reg = crc ^ _MASK32
    done = 0
    while len(view) - done >= _LANES * 16:  # below this the plain loop is as quick as setting up numpy
        # in segments: the numpy path makes a transposed copy of what it is given, and a release
        # model's LSTM kernel is 128 MiB
        segment = view[done : done + _SEGMENT]
        reg = _crc_register_lanes(reg, segment)
        done += len(segment) // _LANES * _LANES
    return _crc_register_bytewise(reg, view[done:]) ^ _MASK32


def masked_crc32c(data: bytes) -> int:
    """CRC as TFRecord and SSTable trailers store it: rotated and offset, so CRCs of CRCs stay strong."""
    return _mask(crc32c(data))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _CRC_DELTA) & _MASK32


def _unmask(masked: int) -> int:
    rotated = (masked - _CRC_DELTA) & _MASK32
    return ((rotated >> 17) | (rotated << 15)) & _MASK32


# ---- protobuf wire format ---------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise _FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _FormatError("varint longer than 10 bytes")


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 are sent as their 64-bit two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs; a value is an int, or bytes for length-delimited fields."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > len(buf):
                raise _FormatError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise _FormatError("truncated length-delimited field")
            value, pos = bytes(buf[pos : pos + length]), pos + length
        else:
            raise _FormatError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""  # proto3 leaves out zeros


def _message_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


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
    for number, value in _proto_fields(buf):
        if number == 3 and value:
            raise _FormatError("tensor shape of unknown rank")
        if number == 2:
            size = dict(_proto_fields(value)).get(1, 0)
            dims.append(_int64(size))
    if any(d < 0 for d in dims):
        raise _FormatError(f"tensor shape {dims} has unknown dimensions")
    return tuple(dims)


def _parse_entry(buf: bytes) -> BundleEntry:
    fields = {1: 0, 2: b"", 3: 0, 4: 0, 5: 0, 6: 0}
    sliced = False
    for number, value in _proto_fields(buf):
        if number == 7:
            sliced = True
        elif number in fields:
            fields[number] = value
    shape, offset, size = _parse_shape(fields[2]), _int64(fields[4]), _int64(fields[5])
    return BundleEntry(fields[1], shape, fields[3], offset, size, fields[6], sliced)


def _encode_entry(entry: BundleEntry) -> bytes:
    shape = b"".join(_message_field(2, _varint_field(1, dim)) for dim in entry.shape)
    return (
        _varint_field(1, entry.dtype_code)
        + _message_field(2, shape)  # TF always sets the shape, so even a scalar's empty one is written
        + _varint_field(3, entry.shard_id)
        + _varint_field(4, entry.offset)
        + _varint_field(5, entry.size)
        + (struct.pack("<BI", 6 << 3 | 5, entry.masked_crc) if entry.masked_crc else b"")
    )


# ---- SSTable blocks ---------------------------------------------------------------------------

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic
_BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C of contents and type
TF_TABLE_BLOCK_SIZE = 262144  # tensorflow/core/lib/io/table_options.h default, used by BundleWriter
_RESTART_INTERVAL = 16


def _parse_block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _read_varint(buf, pos)
    size, pos = _read_varint(buf, pos)
    return (offset, size), pos


def _read_block(table: bytes, handle: tuple[int, int]) -> bytes:
    offset, size = handle
    if offset + size + _BLOCK_TRAILER_SIZE > len(table) - _FOOTER_SIZE:
        raise _FormatError(f"block at {offset}+{size} runs past the end of the table")
    contents = table[offset : offset + size]
    compression, stored_crc = struct.unpack_from("<BI", table, offset + size)
    if _unmask(stored_crc) != crc32c(table[offset : offset + size + 1]):
        raise _FormatError(f"block at offset {offset} fails its CRC32C check")
    if compression == 1:
        raise _FormatError("snappy-compressed blocks are not supported")
    if compression != 0:
        raise _FormatError(f"unknown block compression type {compression}")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block; keys share prefixes with their predecessor except at restarts."""
    if len(block) < 4:
        raise _FormatError("block too short for its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    entries_end = len(block) - 4 - 4 * num_restarts
    if entries_end < 0:
        raise _FormatError("block restart array larger than the block")
    entries, key, pos = [], b"", 0
    while pos < entries_end:
        shared, pos = _read_varint(block, pos)
        unshared, pos = _read_varint(block, pos)
        value_length, pos = _read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_length > entries_end:
            raise _FormatError("corrupt block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _table_entries(table: bytes) -> list[tuple[bytes, bytes]]:
    if len(table) < _FOOTER_SIZE:
        raise _FormatError(f"{len(table)} bytes is too short for an SSTable footer")
    if struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
        raise _FormatError("bad SSTable magic number (not a checkpoint index, or truncated)")
    footer = table[len(table) - _FOOTER_SIZE :]
    _metaindex_handle, pos = _parse_block_handle(footer, 0)
    index_handle, _ = _parse_block_handle(footer, pos)
    entries = []
    for _separator, handle_bytes in _block_entries(_read_block(table, index_handle)):
        entries += _block_entries(_read_block(table, _parse_block_handle(handle_bytes, 0)[0]))
    keys = [key for key, _ in entries]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise _FormatError("keys are not in strictly increasing order")
    return entries


# ---- reader -----------------------------------------------------------------------------------


def read_range(path: str, offset: int, size: int) -> bytearray:
    """Bytes offset..offset+size of a file (fewer if it ends first), read straight into a bytearray:
    one copy, and numpy arrays over it are writable, so torch.from_numpy needs no other."""
    data = bytearray(size)
    with open(path, "rb") as f:
        f.seek(offset)
        got = f.readinto(data)
    del data[got:]
    return data


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
                raise _FormatError("no bundle header (the entry with the empty key)")
            header = dict(_proto_fields(entries.pop(b"")))
            self.num_shards = header.get(1, 0)
            if self.num_shards < 1:
                raise _FormatError(f"bundle header says {self.num_shards} data shards")
            if header.get(2, 0) != 0:
                raise _FormatError("big-endian checkpoints are not supported")
            version = dict(_proto_fields(header.get(3, b"")))
            if version.get(2, 0) > _TENSOR_BUNDLE_VERSION:
                raise _FormatError(f"bundle needs a reader of version {version[2]} or newer")
            # keys starting with NUL are the slices of partitioned variables, not variables
            self._entries = {k.decode(): _parse_entry(v) for k, v in entries.items() if not k.startswith(b"\0")}
        except (_FormatError, UnicodeDecodeError) as e:
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
        if verify and crc32c(data) != _unmask(entry.masked_crc):
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
        self.buffer += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
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
    handle = _varint(len(table)) + _varint(len(contents))
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


def write_atomically(path: str, write) -> None:
    """`write(tmp_path)` fills a temporary file beside `path`, which replaces `path` only once it is
    complete and on disk: a crash leaves the old file or the new one, never half of one."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(os.path.dirname(os.path.abspath(path)))  # makes the rename itself durable
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


TMP_MARK = ".tmp-"  # write_atomically's temporary files are <final name>.tmp-<pid>


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform lets a directory be opened; the rename is atomic regardless
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: str, chunks) -> None:
    with open(path, "wb") as f:
        f.writelines(chunks)


def write_file_atomically(path: str, data: bytes | str) -> None:
    """A small file written whole (text as UTF-8), replacing `path` only once complete."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomically(path, lambda p: _write_bytes(p, [payload]))


def write_tf_checkpoint(prefix: str, tensors: dict[str, np.ndarray], *, block_size: int = TF_TABLE_BLOCK_SIZE) -> None:
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
                entry = BundleEntry(code, array.shape, 0, offset, len(data), _mask(crc32c(data)), sliced=False)
                entries.append((name.encode(), _encode_entry(entry)))
                f.write(data)
                offset += len(data)

    # data first: a reader that finds the new index must also find the data it points into
    write_atomically(_data_path(prefix, 0, 1), write_data)
    header = _varint_field(1, 1) + _message_field(3, _varint_field(1, _TENSOR_BUNDLE_VERSION))
    index = _build_table([(b"", header)] + entries, block_size)
    write_file_atomically(prefix + ".index", index)


# ---- state files ('checkpoint', 'best_dev_checkpoint') -------------------------------------------

_STATE_LINE = re.compile(r"""\s*(\w+)\s*:\s*(.*?)\s*""")
_QUOTED = re.compile(r"""(["'])((?:(?!\1)[^\\]|\\.)*)\1""")
_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))")


def _unescape(text: str) -> str:
    """Undo text-format C escaping; non-ASCII path bytes arrive as octal escapes of their UTF-8."""
    raw, pos = bytearray(), 0
    for match in _ESCAPE.finditer(text):
        raw += text[pos : match.start()].encode()
        octal, hexa, char = match.groups()
        if char is not None and char not in _ESCAPES:
            raise _FormatError(f"unknown escape \\{char}")
        code = int(octal, 8) if octal else int(hexa, 16) if hexa else _ESCAPES[char]
        if code > 0xFF:
            raise _FormatError(f"escape {match.group()} is not a byte")
        raw.append(code)
        pos = match.end()
    raw += text[pos:].encode()
    return raw.decode()


_TEXT_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("'"): "\\'", 10: "\\n", 13: "\\r", 9: "\\t"}


def _escape(text: str) -> str:
    # bytes outside printable ASCII become octal escapes, as TF's text_format writes them
    return "".join(_TEXT_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in text.encode())


def _parse_state_file(path: str) -> tuple[str | None, list[str]] | None:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise TFCheckpointError(f"{path}: cannot read checkpoint state file ({e})") from None
    directory = os.path.dirname(path)
    latest, every = None, []
    try:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            match = _STATE_LINE.fullmatch(line)
            if not match:
                raise _FormatError(f"line {number} is not 'field: value'")
            field, value = match.groups()
            if field not in ("model_checkpoint_path", "all_model_checkpoint_paths"):
                continue  # e.g. the timestamps newer TF versions add
            quoted = _QUOTED.fullmatch(value)
            if not quoted:
                raise _FormatError(f"line {number}: {field} is not a quoted string")
            resolved = os.path.join(directory, _unescape(quoted.group(2)))
            if field == "model_checkpoint_path":
                latest = resolved
            else:
                every.append(resolved)
    except (_FormatError, UnicodeDecodeError) as e:
        raise TFCheckpointError(f"{path}: {e}") from None
    return latest, every


def read_state_file(path: str) -> str | None:
    """The newest checkpoint prefix a state file names (relative paths taken from its directory)."""
    state = _parse_state_file(path)
    if state is None:
        return None
    if state[0] is None:
        raise TFCheckpointError(f"{path}: checkpoint state file has no model_checkpoint_path")
    return state[0]


def read_state_file_all(path: str) -> list[str]:
    state = _parse_state_file(path)
    return [] if state is None else state[1]


def write_state_file(path: str, latest_prefix: str, all_prefixes: list[str]) -> None:
    """Write a state file as TF's Saver does; prefixes inside its directory are stored relative."""
    directory = os.path.dirname(os.path.abspath(path))

    def stored(prefix: str) -> str:
        relative = os.path.relpath(os.path.abspath(prefix), directory)
        inside = relative != os.pardir and not relative.startswith(os.pardir + os.sep)
        return relative if inside else os.path.abspath(prefix)

    every = list(all_prefixes)
    if not every or os.path.abspath(every[-1]) != os.path.abspath(latest_prefix):
        every.append(latest_prefix)  # TF keeps the latest as the last of all paths
    lines = [f'model_checkpoint_path: "{_escape(stored(latest_prefix))}"']
    lines += [f'all_model_checkpoint_paths: "{_escape(stored(p))}"' for p in every]
    write_file_atomically(path, "\n".join(lines) + "\n")
