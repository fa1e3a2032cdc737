"""TensorBoard scalars without TensorFlow: event files are TFRecords of `Event` protocol buffers.

Record: uint64 length, masked crc32c of the length, the bytes, masked crc32c of the bytes.
Event: wall_time (field 1, double), step (2, int64), file_version (3, string) or summary (5);
Summary.value (1): tag (1, string), simple_value (2, float).
"""

from __future__ import annotations

import os
import socket
import struct
import time

from .tf_checkpoint import _message_field, _varint, masked_crc32c  # the same protobuf wire format


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _event(step: int, body: bytes) -> bytes:
    return _field(1, 1, struct.pack("<d", time.time())) + _field(2, 0, _varint(step)) + body


def scalar_event(tag: str, value: float, step: int) -> bytes:
    summary_value = _message_field(1, tag.encode("utf-8")) + _field(2, 5, struct.pack("<f", value))
    return _event(step, _message_field(5, _message_field(1, summary_value)))


def record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class SummaryWriter:
    """One events file per run and per kind (train, dev, metrics), as Coqui's summaries/<kind>/ folders."""

    def __init__(self, directory: str):
        self.directory = directory
        self.files = {}

    def _file(self, kind: str):
        if kind not in self.files:
            folder = os.path.join(self.directory, kind)
            os.makedirs(folder, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
            f = open(os.path.join(folder, name), "ab")
            f.write(record(_event(0, _message_field(3, b"brain.Event:2"))))
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
