"""Coqui's native client's streaming (native_client/stt.cc, StreamingState), buffer for buffer: audio in, the
best transcripts out, whenever asked.

int16 samples become float32 by / 32768. Each full analysis window (win_len samples, every win_step) gives one
MFCC frame; the frames, after 9 zero frames, give a 19-frame context window each; every n_steps windows go
through the acoustic model, the LSTM state carried, and the softmax into the beam search. So an intermediate
decode sees only whole batches, as libstt's does. Finishing computes one last frame from the samples left
(zero-padded to a window), adds 9 zero frames and runs the last partial batch. The decoder is Coqui's
(beam_search.PrefixBeamSearch) with the client's settings: cutoff_prob 1, cutoff_top_n 40.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..model.features import N_CONTEXT, N_INPUT, FeatureSettings, mfcc
from .beam_search import Candidate, DecodeOptions, PrefixBeamSearch
from .scorer import Scorer

CLIENT_CUTOFF_TOP_N = 40  # what libstt's streams decode with (cutoff_prob 1.0)
N_STEPS = 16  # windows per call of the acoustic model, as Coqui's exports take them
WINDOW_FRAMES = 2 * N_CONTEXT + 1


class AcousticModel(Protocol):
    n_classes: int

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]: ...

    def step(
        self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]: ...


class ClientStream:
    """One utterance being transcribed as it comes (Coqui's StreamingState)."""

    def __init__(
        self,
        model: AcousticModel,
        features: FeatureSettings,
        beam_width: int,
        scorer: Scorer | None = None,
        hot_words: tuple[tuple[str, float], ...] = (),
    ):
        self.model, self.features = model, features
        self.audio = np.zeros(0, np.float32)  # samples not yet past a window's step
        self.frames = np.zeros((N_CONTEXT, N_INPUT), np.float32)  # the last frames, less than a window's worth
        self.windows: list[np.ndarray] = []  # context windows waiting for a batch
        self.state = model.zero_state()
        options = DecodeOptions(beam_width, 1.0, CLIENT_CUTOFF_TOP_N, hot_words)
        self.search = PrefixBeamSearch(model.n_classes, options, scorer)

    def feed(self, samples: np.ndarray) -> None:
        """int16 samples (any number, a few or a whole recording)."""
        audio = np.concatenate([self.audio, np.asarray(samples, np.int16).astype(np.float32) / np.float32(32768)])
        count = self.features.frames(len(audio))
        if count:
            used = (count - 1) * self.features.stride + self.features.window
            self._push_frames(mfcc(audio[:used], self.features))
            audio = audio[count * self.features.stride :]
        self.audio = audio

    def _push_frames(self, frames: np.ndarray) -> None:
        frames = np.concatenate([self.frames, frames])
        if len(frames) >= WINDOW_FRAMES:
            windows = np.lib.stride_tricks.sliding_window_view(frames, WINDOW_FRAMES, axis=0).swapaxes(1, 2)
            self.windows.extend(windows)  # [19, 26] views of `frames`, which stays alive with them
            frames = frames[len(frames) - WINDOW_FRAMES + 1 :]
        self.frames = frames
        while len(self.windows) >= N_STEPS:
            self._run(self.windows[:N_STEPS])
            del self.windows[:N_STEPS]

    def _run(self, windows: list[np.ndarray]) -> None:
        probs, self.state = self.model.step(np.stack(windows), self.state)
        self.search.next(probs)

    def flush(self, final: bool = False) -> None:
        """libstt's flushBuffers: one frame from the samples in the window buffer (zero-padded; they stay there
        for the next window, as libstt keeps them), 9 zero frames if `final`, then the partial batch. (libstt's
        intermediateDecodeFlushBuffers flushes this way mid-stream, and so adds frames no later window replaces.)"""
        window = np.zeros(self.features.window, np.float32)
        window[: len(self.audio)] = self.audio[: self.features.window]
        frames = mfcc(window, self.features)
        if final:
            frames = np.concatenate([frames, np.zeros((N_CONTEXT, N_INPUT), np.float32)])
        self._push_frames(frames)
        if self.windows:
            self._run(self.windows)
            self.windows = []

    def finish(self) -> None:
        """libstt's finishStream: flushBuffers(true), the stream's last frames and batch."""
        self.flush(final=True)

    def decode(self, num_results: int = 1) -> list[Candidate]:
        return self.search.decode(num_results)
