"""Audio files to float32 mono samples at the model's rate (docs/compatibility.md, "Audio").

WAV, FLAC, Ogg Vorbis and Ogg Opus are decoded by libsndfile (through soundfile). Integer PCM is read
as int16 and scaled by 1/32767 as Coqui does (TensorFlow's decode_wav would use 1/32768); other
encodings arrive as floats from the decoder. Channels are averaged. Other rates are resampled with
soxr, a band-limited resampler of the same quality class as Coqui's resampy "kaiser_fast".
"""

from __future__ import annotations

import numpy as np
import soundfile
import soxr

from .errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus")
INT16_MAX = np.float32(np.iinfo(np.int16).max)  # Coqui divides by 32767


class AudioError(UserError):
    pass


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Float32 mono samples in [-1, 1] and the file's own sample rate."""
    try:
        with soundfile.SoundFile(path) as f:
            rate = f.samplerate
            # 8- and 16-bit PCM: read the integers so the 1/32767 scale is exact
            as_int16 = f.subtype.startswith("PCM_") and f.subtype not in ("PCM_24", "PCM_32")
            samples = _read_all(f, "int16" if as_int16 else "float32")
            if as_int16:
                samples = samples.astype(np.float32) / INT16_MAX
    except (RuntimeError, soundfile.LibsndfileError, OSError) as e:
        raise AudioError(f"unreadable audio {path} ({str(e).splitlines()[0]})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"empty audio {path}")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), rate


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
