"""Speech to text from a checkpoint: one file whole (Coqui's --one_shot_infer), or a recording of any length
split at its silences and transcribed in batches (Coqui's transcribe).

Coqui split with WebRTC's VAD; ours is an energy detector with the same shape: 30 ms frames, a frame is
speech when it is loud enough above the file's own noise floor (--vad_aggressiveness 0 to 3 asks for
6 to 15 dB more), and a piece starts when 90 % of a 300 ms window is speech and ends when 90 % of it
is silence; each piece keeps up to 300 ms more of the silence around it.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoints.load import LoadedModel
from ..data.audio import AudioError, audio_info, load_audio
from ..data.samples import DataError
from ..feeding.batches import pad_features
from ..model.features import FeatureSettings, mfcc
from .beam_search import DecodeOptions, beam_search_decode
from .scorer import Scorer

FRAME_MS = 30
PADDING_FRAMES = 10
TRIGGER = 0.9


def speech_segments(samples: np.ndarray, rate: int, aggressiveness: int = 3) -> list[tuple[int, int]]:
    """[start, end) sample ranges of the speech in `samples`, separated by silence."""
    frame = rate * FRAME_MS // 1000
    n_frames = len(samples) // frame
    if n_frames == 0:
        return [(0, len(samples))] if len(samples) else []
    frames = samples[: n_frames * frame].reshape(n_frames, frame).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    floor = np.percentile(level, 10)
    speech = level > max(floor + 6 + 3 * min(max(aggressiveness, 0), 3), -60.0)
    segments: list[tuple[int, int]] = []
    window: deque[bool] = deque(maxlen=PADDING_FRAMES)
    start: int | None = None
    for i, voiced in enumerate(speech):
        window.append(voiced)
        if start is None and sum(window) >= TRIGGER * PADDING_FRAMES:
            start = max(i - len(window) + 1, 0)
            window.clear()
        elif (
            start is not None
            and len(window) == PADDING_FRAMES
            and PADDING_FRAMES - sum(window) >= TRIGGER * PADDING_FRAMES
        ):
            segments.append((start * frame, (i + 1) * frame))
            start = None
            window.clear()
    if start is not None:
        segments.append((start * frame, len(samples)))
    # Models learn from utterances with some silence around them: give each piece up to one more window
    # of it on both sides, without reaching into its neighbours.
    pad = PADDING_FRAMES * frame
    gaps = [(a_end + b_start) // 2 for (_, a_end), (b_start, _) in itertools.pairwise(segments)]
    bounds = [0] + gaps + [len(samples)]
    return [(max(bounds[i], a - pad), min(bounds[i + 1], b + pad)) for i, (a, b) in enumerate(segments)]


@dataclass(frozen=True)
class Segmentation:
    """How a long file is cut and batched (transcribe's flags of the same names)."""

    vad_aggressiveness: int = 3  # how readily quiet audio counts as silence, 0 to 3
    batch_size: int = 40  # pieces per batch
    outlier_duration_ms: int = 10000  # pieces longer than this are batched apart,
    outlier_batch_size: int = 1  # this many at a time


def decode_signals(
    signals: list[np.ndarray],
    loaded: LoadedModel,
    features: FeatureSettings,
    options: DecodeOptions,
    scorer: Scorer | None,
) -> list[str]:
    """The transcripts of several signals at the model's rate, run through the model as one batch."""
    batch, lengths = pad_features([mfcc(s, features) for s in signals])
    with torch.no_grad():
        logits = loaded.model.eval().infer(batch.to(loaded.device))
    return beam_search_decode(logits, lengths, loaded.alphabet, options, scorer)


def transcribe_file(
    path: str,
    loaded: LoadedModel,
    features: FeatureSettings,
    options: DecodeOptions,
    scorer: Scorer | None,
    segmentation: Segmentation,
) -> list[dict]:
    """Coqui's .tlog entries of one file: {"start": ms, "end": ms, "transcript": text} per piece, in order."""
    rate = features.sample_rate
    audio_info(path)  # the checks train's data check makes: missing, unreadable, empty
    samples = load_audio(path, rate)
    if features.frames(len(samples)) < 1:
        raise AudioError(
            f"{path} is too short to transcribe: {len(samples) * 1000 // rate} ms, less than one feature window "
            f"({features.win_len_ms} ms)"
        )
    pieces = speech_segments(samples, rate, segmentation.vad_aggressiveness)
    outlier = segmentation.outlier_duration_ms * rate // 1000
    pieces.sort(key=lambda p: p[1] - p[0])
    normal = [p for p in pieces if p[1] - p[0] <= outlier]
    long = [p for p in pieces if p[1] - p[0] > outlier]
    size, outlier_size = segmentation.batch_size, segmentation.outlier_batch_size
    batches = [normal[i : i + size] for i in range(0, len(normal), size)]
    batches += [long[i : i + outlier_size] for i in range(0, len(long), outlier_size)]
    results = []
    for batch in batches:
        texts = decode_signals([samples[a:b] for a, b in batch], loaded, features, options, scorer)
        results += [
            {"start": a * 1000 // rate, "end": b * 1000 // rate, "transcript": text}
            for (a, b), text in zip(batch, texts)
        ]
    return sorted(results, key=lambda r: r["start"])


def one_shot_infer(
    path: str, loaded: LoadedModel, features: FeatureSettings, options: DecodeOptions, scorer: Scorer | None
) -> str:
    """Coqui's --one_shot_infer: the transcript of one audio file, decoded whole with --beam_width (not
    --export_beam_width) and the --scorer_path scorer, if any. Unlike Coqui, which read the WAV at its own
    rate, the audio is resampled to --audio_sample_rate, and any format the data sets accept is read."""
    if not os.path.isfile(path):
        raise DataError(f"Path specified in --one_shot_infer is not a valid file: {path}")
    return decode_signals([load_audio(path, features.sample_rate)], loaded, features, options, scorer)[0]
