"""CRC32C (Castagnoli), the checksum of TF checkpoints, SSTable blocks and TFRecords, computed by the
google-crc32c package (hardware instructions where the CPU has them: a release checkpoint's 700 MB are
checked in a fraction of a second), and the masked form those files store."""

from __future__ import annotations

import google_crc32c

_MASK32 = 0xFFFFFFFF
_CRC_DELTA = 0xA282EAD8


_PIECE = 4 << 20  # google-crc32c takes only bytes: other buffers go through it in copies of this size


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C of data; pass a previous result as crc to continue it over more data."""
    if isinstance(data, bytes):
        return int(google_crc32c.extend(crc, data))
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _PIECE):
        crc = int(google_crc32c.extend(crc, bytes(view[start : start + _PIECE])))
    return crc


def mask(crc: int) -> int:
    """A CRC as TFRecord and SSTable trailers store it: rotated and offset, so that CRCs of CRCs stay strong."""
    return (((crc >> 15) | (crc << 17)) + _CRC_DELTA) & _MASK32


def unmask(masked: int) -> int:
    rotated = (masked - _CRC_DELTA) & _MASK32
    return ((rotated >> 17) | (rotated << 15)) & _MASK32


def masked_crc32c(data: bytes | bytearray) -> int:
    return mask(crc32c(data))
