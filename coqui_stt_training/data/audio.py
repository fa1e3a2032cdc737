"""Audio files to float32 mono samples at the model's rate (docs/compatibility.md, "Audio").

Every format libsndfile reads is decoded (through soundfile): WAV, FLAC, Ogg Vorbis and Opus, MP3, AIFF and
the rest; a file is judged by what the decoder makes of it, never by its name. Integer PCM is read
as int16 and scaled by 1/32767 as Coqui does (TensorFlow's decode_wav would use 1/32768); other
encodings arrive as floats from the decoder. Channels are averaged. Other rates are resampled with
soxr, a band-limited resampler of the same quality class as Coqui's resampy "kaiser_fast".
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

import numpy as np
import soundfile
import soxr

from ..system.errors import UserError

# What a folder scan (transcribe --src DIR) picks up: the usual names of formats libsndfile reads. Files
# named in a CSV or passed one by one are read whatever their names.
AUDIO_EXTENSIONS = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".snd", ".caf",
    ".w64", ".rf64", ".sph", ".nist", ".voc",
)  # fmt: skip
INT16_MAX = np.float32(np.iinfo(np.int16).max)  # Coqui divides by 32767


class AudioError(UserError):
    pass


def audio_info(path: str) -> soundfile._SoundFileInfo:
    """The header of an audio file, checked: a missing, unreadable or empty file is an AudioError."""
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    if os.path.getsize(path) == 0:  # (libsndfile would call it a format it does not recognise)
        raise AudioError(f"empty audio {path} (0 bytes)")
    try:
        info = soundfile.info(path)
    except Exception as e:  # soundfile raises several types for bad headers
        raise AudioError(f"unreadable audio {path} ({_decoder_problem(e, path)})") from None
    if info.frames <= 0:
        raise AudioError(f"empty audio {path}")
    require_whole_wav(path)
    return info


def require_whole_wav(path: str) -> None:
    """A WAV file cut short (a copy or download that stopped) still opens, and libsndfile reads what is there
    without a word: its header's data size, against the bytes the file holds after it, says what is missing.
    (A streamed WAV's header may give 0 or 0xFFFFFFFF for an unknown length: not a promise.)"""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        order, size, at = "<" if head[:4] == b"RIFF" else ">", os.fstat(f.fileno()).st_size, 12
        while at + 8 <= size:
            f.seek(at)
            chunk, length = f.read(4), struct.unpack(order + "I", f.read(4))[0]
            if chunk == b"data":
                held = size - at - 8
                if held < length != 0xFFFFFFFF:
                    raise AudioError(
                        f"truncated audio {path}: its header promises {length} bytes of samples, the file holds {held}"
                    )
                return
            at += 8 + length + (length & 1)


def read_audio(path: str | BinaryIO) -> tuple[np.ndarray, int]:
    """Float32 mono samples in [-1, 1] and the file's own sample rate (`path` may be an open file: an SDB's
    WAV chunk)."""
    if isinstance(path, str) and os.path.isfile(path):
        require_whole_wav(path)
    try:
        with soundfile.SoundFile(path) as f:
            rate = f.samplerate
            # 8- and 16-bit PCM: read the integers so the 1/32767 scale is exact
            as_int16 = f.subtype.startswith("PCM_") and f.subtype not in ("PCM_24", "PCM_32")
            samples = _read_all(f, "int16" if as_int16 else "float32")
            if as_int16:
                samples = samples.astype(np.float32) / INT16_MAX
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise AudioError(f"unreadable audio {path} ({_decoder_problem(e, path)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"empty audio {path}")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def _decoder_problem(e: Exception, path: str | BinaryIO) -> str:
    """libsndfile's first line; its MP3 probe says a file "does not exist" when it only is not audio."""
    text = str(e).splitlines()[0]
    if "File does not exist or is not a regular file" in text and isinstance(path, str) and os.path.isfile(path):
        return f"Error opening {path!r}: Format not recognised."
    return text


def _read_all(f: soundfile.SoundFile, dtype: str) -> np.ndarray:
    """[frames, channels] of everything the decoder gives, read in blocks of about 4 MiB: a damaged header
    can claim billions of frames, and reading it in one call would allocate what it claims."""
    block = max(1, (4 << 20) // (4 * f.channels))
    pieces = []
    while len(piece := f.read(block, dtype=dtype, always_2d=True)):
        pieces.append(piece)
        if len(piece) < block:
            break
    return np.concatenate(pieces) if pieces else np.zeros((0, f.channels), dtype)


def problem_kind(e: AudioError) -> str:
    """The kind of an AudioError, as reports group them: not found, empty, truncated or unreadable."""
    text = str(e)
    if text.startswith("audio file not found"):
        return "audio file not found"
    if text.startswith("truncated"):
        return "truncated audio"
    return "empty audio" if text.startswith("empty") else "unreadable audio"


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit PCM, scaled by 32767 as they are read (and clipped)."""
    return np.clip(np.round(samples * INT16_MAX), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def resampled_length(n_samples: int, from_rate: int, to_rate: int) -> int:
    """How many samples `resample` returns, known without decoding (for the CTC feasibility check)."""
    if from_rate == to_rate:
        return n_samples
    return round(n_samples * to_rate / from_rate)


def load_audio(path: str, sample_rate: int) -> np.ndarray:
    """What the feature pipeline consumes: mono float32 at `sample_rate`."""
    samples, rate = read_audio(path)
    return resample(samples, rate, sample_rate)
