"""The protocol-buffer wire format, as far as checkpoints and event files need it: varints, fixed-width
fields and length-delimited fields, decoded into (field number, value) pairs and encoded back."""

from __future__ import annotations


class FormatError(Exception):
    """Raised by the low-level decoders, which do not know the file name; readers add it."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise FormatError("varint longer than 10 bytes")


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 are sent as their 64-bit two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int64(value: int) -> int:
    """A varint's uint64 read as the int64 it encodes."""
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs; a value is an int, or bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > len(buf):
                raise FormatError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire_type == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise FormatError("truncated length-delimited field")
            value, pos = bytes(buf[pos : pos + length]), pos + length
        else:
            raise FormatError(f"unsupported protobuf wire type {wire_type}")
        out.append((number, value))
    return out


def integer(value: int | bytes, what: str) -> int:
    """A field's value that must be an integer (varint or fixed width)."""
    if isinstance(value, bytes):
        raise FormatError(f"{what} is length-delimited, not an integer")
    return value


def message(value: int | bytes, what: str) -> bytes:
    """A field's value that must be length-delimited (a string or an embedded message)."""
    if not isinstance(value, bytes):
        raise FormatError(f"{what} is an integer, not a message")
    return value


class Message:
    """A decoded message's fields by number (the last value wins, as protobuf merges a repeated scalar),
    read with the type the schema gives them."""

    def __init__(self, buf: bytes, name: str):
        self.name, self.values = name, dict(fields(buf))

    def __contains__(self, number: int) -> bool:
        return number in self.values

    def integer(self, number: int, default: int = 0) -> int:
        return integer(self.values.get(number, default), f"{self.name} field {number}")

    def message(self, number: int) -> bytes:
        return message(self.values.get(number, b""), f"{self.name} field {number}")


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """A field's tag followed by its already-encoded payload."""
    return varint(number << 3 | wire_type) + payload


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""  # proto3 leaves out zeros


def message_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload
