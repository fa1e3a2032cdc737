"""TensorBoard scalars without TensorFlow: event files are TFRecords of `Event` protocol buffers.

Record: uint64 length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes.
Event: wall_time (field 1, double), step (2, int64), file_version (3, string) or summary (5);
Summary.value (1): tag (1, string), simple_value (2, float).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import BinaryIO

from .crc32c import masked_crc32c
from .protobuf import field, message_field, varint


def _event(step: int, body: bytes) -> bytes:
    return field(1, 1, struct.pack("<d", time.time())) + field(2, 0, varint(step)) + body


def scalar_event(tag: str, value: float, step: int) -> bytes:
    summary_value = message_field(1, tag.encode("utf-8")) + field(2, 5, struct.pack("<f", value))
    return _event(step, message_field(5, message_field(1, summary_value)))


def record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class SummaryWriter:
    """One events file per run and per kind (train, dev, metrics), as Coqui's summaries/<kind>/ folders."""

    def __init__(self, directory: str):
        self.directory = directory
        self.files: dict[str, BinaryIO] = {}

    def _file(self, kind: str) -> BinaryIO:
        if kind not in self.files:
            folder = os.path.join(self.directory, kind)
            os.makedirs(folder, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
            f = open(os.path.join(folder, name), "ab")  # noqa: SIM115 (open until close())
            f.write(record(_event(0, message_field(3, b"brain.Event:2"))))
            self.files[kind] = f
        return self.files[kind]

    def scalar(self, kind: str, tag: str, value: float, step: int) -> None:
        f = self._file(kind)
        f.write(record(scalar_event(tag, value, step)))
        f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
