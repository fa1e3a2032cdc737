"""Coqui's Sample DataBase files (`.sdb`, docs/compatibility.md "Data"): read as a data source, and written.

An SDB is one file of samples (all integers big-endian):

    b"SAMPLEDB" | int64 n | n bytes of JSON metadata: {"schema": [{"content": "speech", "mime-type": ...},
                                                               {"content": "transcript", "mime-type": "text/plain"}]}
    int64 (bytes from here to the index) | int64 sample count | the samples: each an int32 entry length, then
          per schema column an int32 chunk length and the chunk (the audio, then the UTF-8 transcript)
    int64 (bytes from here to the end) | int64 sample count | one int64 absolute offset per sample

The audio chunk is a WAV file ("audio/wav") or Coqui's Opus container ("application/vnd.mozilla.opus"): uint32
PCM byte length, uint32 sample rate, uint8 channels, uint8 sample width, then per 60 ms frame a uint16 length
and a raw Opus packet (the last frame zero-padded). libopus comes from PyAV (FFmpeg's bindings, the `sdb`
extra): maintained, with wheels that carry libopus for every platform, where the Python bindings made for
libopus alone (opuslib, Coqui's choice) are unmaintained and need a system library.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import soundfile

from ..system.atomic_files import write_atomically
from ..system.errors import UserError
from . import audio

MAGIC = b"SAMPLEDB"
OPUS = "application/vnd.mozilla.opus"
WAV = "audio/wav"
AUDIO_TYPES = {"opus": OPUS, "wav": WAV}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus encodes; other rates are resampled to 48 kHz
OPUS_FRAME_MS = 60
OPUS_HEADER_SIZE = 10  # uint32 PCM bytes, uint32 rate, uint8 channels, uint8 width


class SDBError(UserError):
    pass


@dataclass
class SDBEntry:
    index: int
    offset: int  # of the sample's entry
    audio: tuple[int, int]  # (offset, size) of its audio chunk
    transcript: str


@dataclass
class SDB:
    path: str
    mime: str  # of the audio chunks
    entries: list[SDBEntry]


def read_sdb(path: str) -> SDB:
    """An SDB's schema and entries (transcripts read, audio left in the file), every length checked against
    the file: a damaged SDB is an SDBError naming the file and the offset."""
    try:
        with open(path, "rb") as f:
            return _read(f, path, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise SDBError(f"{path}: cannot read ({e.strerror or e})") from None


def _read(f: BinaryIO, path: str, size: int) -> SDB:
    def fail(offset: int, problem: str) -> SDBError:
        return SDBError(f"{path}, offset {offset}: {problem}")

    def integers(offset: int, fmt: str) -> tuple[int, ...]:
        f.seek(offset)
        data = f.read(struct.calcsize(fmt))
        if len(data) < struct.calcsize(fmt):
            raise fail(offset, f"truncated: the file ends at {size} bytes")
        return struct.unpack(fmt, data)

    f.seek(0)
    if f.read(8) != MAGIC:
        raise SDBError(f"{path}: not a Sample Database (it does not start with SAMPLEDB)")
    (meta_size,) = integers(8, ">q")
    if not 0 < meta_size <= size - 16:
        raise fail(8, f"metadata length {meta_size} does not fit the file ({size} bytes)")
    try:
        meta = json.loads(f.read(meta_size).decode("utf-8"))
        schema = meta["schema"]
        kinds = [(column["content"], column["mime-type"]) for column in schema]
    except (ValueError, KeyError, TypeError):
        raise fail(16, "metadata is not Coqui's JSON with a schema of content and mime-type") from None
    speech = [i for i, (content, _) in enumerate(kinds) if content == "speech"]
    text = [i for i, (content, _) in enumerate(kinds) if content == "transcript"]
    if not speech:
        raise fail(16, "no speech data (missing in schema)")
    if not text:
        raise fail(16, "no transcripts (missing in schema): an unlabeled SDB cannot train or test")
    mime = kinds[speech[0]][1]
    if mime not in (OPUS, WAV):
        raise fail(16, f"audio of type {mime!r}: only {OPUS} and {WAV} are read")
    section = 16 + meta_size
    section_size, count = integers(section, ">qq")
    index = section + 8 + section_size
    if section_size < 8 or index + 16 > size:
        raise fail(section, f"truncated: the samples ({section_size} bytes) end beyond the file ({size} bytes)")
    index_size, index_count = integers(index, ">qq")
    if index_count != count or index_size != 8 + 8 * count or index + 8 + index_size != size:
        raise fail(index, f"damaged index: {index_count} offsets for {count} samples, {size - index} bytes left")
    offsets = integers(index + 16, f">{count}q") if count else ()
    entries = []
    for i, offset in enumerate(offsets):
        if not section + 16 <= offset < index:
            raise fail(index + 16 + 8 * i, f"sample {i}'s offset {offset} is outside the sample section")
        (entry_size,) = integers(offset, ">i")
        end = offset + 4 + entry_size
        if end > index:
            raise fail(offset, f"sample {i}'s entry ({entry_size} bytes) runs into the index")
        chunks, at = [], offset + 4
        for _ in kinds:
            (chunk_size,) = integers(at, ">i")
            if chunk_size < 0 or at + 4 + chunk_size > end:
                raise fail(at, f"sample {i}: a chunk of {chunk_size} bytes does not fit its entry")
            chunks.append((at + 4, chunk_size))
            at += 4 + chunk_size
        f.seek(chunks[text[0]][0])
        try:
            transcript = f.read(chunks[text[0]][1]).decode("utf-8")
        except UnicodeDecodeError:
            raise fail(chunks[text[0]][0], f"sample {i}'s transcript is not UTF-8") from None
        entries.append(SDBEntry(i, offset, chunks[speech[0]], transcript))
    return SDB(path, mime, entries)


# ---- audio chunks -------------------------------------------------------------------------------


def chunk_frames(data: bytes, mime: str) -> tuple[int, int]:
    """(frames, sample rate) of an audio chunk, from its header (Coqui's Opus container, or any audio file:
    an SDB's WAV, a WebDataset member)."""
    if mime == OPUS:
        pcm_bytes, rate, channels, width = struct.unpack(">IIBB", data[:OPUS_HEADER_SIZE])
        return pcm_bytes // max(1, channels * width), rate
    info = soundfile.info(io.BytesIO(data))
    return info.frames, info.samplerate


def decode_chunk(data: bytes, mime: str) -> tuple[np.ndarray, int]:
    """Float32 mono samples and their rate."""
    if mime != OPUS:
        return audio.read_audio(io.BytesIO(data))
    pcm_bytes, rate, channels, width = struct.unpack(">IIBB", data[:OPUS_HEADER_SIZE])
    frames = pcm_bytes // max(1, channels * width)
    decoder = _codec("r", channels=channels)
    pieces, at = [], OPUS_HEADER_SIZE
    while at + 2 <= len(data):
        (size,) = struct.unpack(">H", data[at : at + 2])
        packet = _av().Packet(data[at + 2 : at + 2 + size])
        # s16 samples, interleaved: [1, frames * channels]
        pieces += [frame.to_ndarray().reshape(-1, channels).mean(axis=1) for frame in decoder.decode(packet)]
        at += 2 + size
    decoded = np.concatenate(pieces).astype(np.float32) / audio.INT16_MAX if pieces else np.zeros(0, np.float32)
    samples = audio.resample(decoded, 48000, rate)  # FFmpeg's libopus decoder gives 48 kHz
    return np.ascontiguousarray(samples[:frames]), rate


def encode_chunk(samples: np.ndarray, rate: int, mime: str, bitrate: int) -> bytes:
    """Mono float32 samples as an SDB audio chunk (Opus at `bitrate` bits per second, or 16-bit WAV)."""
    pcm = audio.to_pcm16(samples)
    if mime == WAV:
        out = io.BytesIO()
        soundfile.write(out, pcm, rate, format="WAV", subtype="PCM_16")
        return out.getvalue()
    if rate not in OPUS_RATES:
        samples, rate = audio.resample(samples, rate, 48000), 48000
        pcm = audio.to_pcm16(samples)
    av = _av()
    encoder = _codec("w", rate, bitrate)
    frame_size = OPUS_FRAME_MS * rate // 1000
    padded = np.zeros(-(-len(pcm) // frame_size) * frame_size, np.int16)
    padded[: len(pcm)] = pcm  # zero-padded, as Coqui pads the last frame
    packets = []
    for start in range(0, len(padded), frame_size):
        frame = av.AudioFrame.from_ndarray(padded[None, start : start + frame_size], format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    # one packet per frame, as Coqui's container has (FFmpeg's flush adds one for the codec's look-ahead)
    packets = packets[: len(padded) // frame_size]
    return struct.pack(">IIBB", 2 * len(pcm), rate, 1, 2) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def _av() -> Any:
    try:
        import av  # the optional `sdb` extra
    except ImportError:
        raise SDBError(
            "Opus audio in SDB files needs PyAV: pip install 'coqui-stt-torch[sdb]' (or use --audio_type wav)"
        ) from None
    return av


def _codec(mode: str, rate: int = 48000, bitrate: int = 16000, channels: int = 1) -> Any:
    codec = _av().CodecContext.create("libopus", mode)
    codec.sample_rate, codec.layout = rate, "stereo" if channels == 2 else "mono"
    if mode == "w":
        codec.format, codec.bit_rate = "s16", bitrate
        codec.options = {"frame_duration": str(OPUS_FRAME_MS), "application": "audio"}
    return codec


# ---- writing ------------------------------------------------------------------------------------


def write_sdb(path: str, samples: Iterable[tuple[bytes, str]], mime: str) -> int:
    """An SDB of (audio chunk, transcript) pairs, written beside `path` and renamed once complete; the count."""
    count = [0]

    def write(tmp: str) -> None:
        meta = json.dumps(
            {"schema": [{"content": "speech", "mime-type": mime}, {"content": "transcript", "mime-type": "text/plain"}]}
        ).encode()
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack(">q", len(meta)) + meta)
            section = f.tell()
            f.write(bytes(16))  # its length and count, known at the end
            offsets = []
            for chunk, transcript in samples:
                text = transcript.encode("utf-8")
                offsets.append(f.tell())
                f.write(struct.pack(">ii", 8 + len(chunk) + len(text), len(chunk)) + chunk)
                f.write(struct.pack(">i", len(text)) + text)
            index = f.tell()
            f.write(struct.pack(">qq", 8 + 8 * len(offsets), len(offsets)))
            f.write(struct.pack(f">{len(offsets)}q", *offsets))
            f.seek(section)
            f.write(struct.pack(">qq", index - section - 8, len(offsets)))
        count[0] = len(offsets)

    write_atomically(path, write)
    return count[0]
