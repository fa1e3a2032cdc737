"""Audio samples to the model's input: MFCC features exactly as Coqui computes them with TensorFlow's
AudioSpectrogram and Mfcc ops (docs/compatibility.md, "Features"), and the context windows over them.

Periodic Hann window, FFT of the next power of two, only full windows (no padding), power spectrum,
then the Mfcc op: square root back to magnitude, a 40-channel triangular mel bank from 20 Hz to
rate/2 that excludes DC, natural log floored at 1e-12, and a DCT-II scaled by sqrt(2/40) for every
coefficient (not orthonormal). TensorFlow computes in double and hands the spectrogram between the
two ops as float32; so do we, so features agree with TensorFlow's to float32 rounding.

numpy alone: training (in the data workers), transcription and the torch-free ONNX inference all
compute features here, one signal at a time (docs/benchmarks.md compares it with a batched torch version).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

N_INPUT = 26  # MFCC coefficients per frame
N_CONTEXT = 9  # frames of context on each side of a window's centre
MEL_CHANNELS = 40
LOWER_FREQUENCY_HZ = 20.0
LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class FeatureSettings:
    """What turns samples into frames: the model's sample rate and the analysis window, in milliseconds
    (--audio_sample_rate, --feature_win_len, --feature_win_step)."""

    sample_rate: int = 16000
    win_len_ms: int = 32
    win_step_ms: int = 20

    @property
    def window(self) -> int:
        return window_samples(self.sample_rate, self.win_len_ms)

    @property
    def stride(self) -> int:
        return window_samples(self.sample_rate, self.win_step_ms)

    def frames(self, n_samples: int) -> int:
        """Feature frames of a signal of n_samples (only full windows count)."""
        return 0 if n_samples < self.window else 1 + (n_samples - self.window) // self.stride


def window_samples(sample_rate: int, milliseconds: int) -> int:
    return int(sample_rate * milliseconds / 1000)


def hertz_to_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    n_bins: int, sample_rate: int, upper_hz: float, channels: int = MEL_CHANNELS, lower_hz: float = LOWER_FREQUENCY_HZ
) -> np.ndarray:
    """[n_bins, channels] float64 weights of TF's MfccMelFilterbank.

    Each bin in range sits between two of the `channels + 1` mel-spaced centres and splits its
    magnitude between the channel that ends at the upper centre (weight w) and the one that starts
    there (1 - w). Below the first centre only the second share exists; past the last only the first."""
    mel_low, mel_high = hertz_to_mel(lower_hz), hertz_to_mel(upper_hz)
    centres = mel_low + (mel_high - mel_low) / (channels + 1) * np.arange(1, channels + 2)
    hz_per_bin = 0.5 * sample_rate / (n_bins - 1)
    first, last = int(1.5 + lower_hz / hz_per_bin), int(upper_hz / hz_per_bin)
    bank = np.zeros((n_bins, channels))
    for i in range(first, min(last, n_bins - 1) + 1):
        mel = hertz_to_mel(i * hz_per_bin)
        upper = int(np.searchsorted(centres[:channels], mel, side="left"))  # first centre >= mel
        lower = upper - 1
        below = centres[lower] if lower >= 0 else mel_low
        weight = (centres[upper] - mel) / (centres[upper] - below)
        if lower >= 0:
            bank[i, lower] += weight
        if upper < channels:
            bank[i, upper] += 1.0 - weight
    return bank


@functools.lru_cache(maxsize=4)
def dct_matrix(n_inputs: int = MEL_CHANNELS, n_outputs: int = N_INPUT) -> np.ndarray:
    """[n_inputs, n_outputs]: out[k] = sqrt(2/n) * sum_j x[j] cos(pi k (j + 0.5) / n), the same scale for k = 0."""
    j = np.arange(n_inputs)[:, None] + 0.5
    k = np.arange(n_outputs)[None, :]
    return math.sqrt(2.0 / n_inputs) * np.cos(math.pi / n_inputs * j * k)


def power_spectrogram(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """[frames, fft/2 + 1] float32 power of one signal, as AudioSpectrogram(magnitude_squared) gives it."""
    window, stride = settings.window, settings.stride
    fft_length = 1 << (window - 1).bit_length()
    if len(samples) < window:
        return np.zeros((0, fft_length // 2 + 1), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(samples, np.float64), window)[::stride]
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(window, dtype=np.float64) / window)
    spectrum = np.fft.rfft(frames * hann, n=fft_length)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _sparse_filterbank(n_bins: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mel_filterbank's nonzero weights grouped by channel: (bins, weights, each channel's first entry)."""
    bank = mel_filterbank(n_bins, sample_rate, sample_rate / 2)
    bins, channels = np.nonzero(bank)
    order = np.lexsort((bins, channels))
    bins, channels = bins[order], channels[order]
    return bins, bank[bins, channels], np.searchsorted(channels, np.arange(bank.shape[1]))


def mfcc(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """[frames, 26] float32 features of one signal.

    No BLAS call: each bin feeds at most two mel channels, so the filterbank is applied as sums over its
    nonzero weights (as fast as a matrix product here), and the small DCT by einsum. A BLAS product would
    wake numpy's BLAS threads, which then spin on the cores torch trains on (twice the time of a small
    model's training step on two cores, measured in docs/benchmarks.md)."""
    return mfcc_from_power(power_spectrogram(samples, settings), settings)


def mfcc_from_power(power: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """[frames, 26] float32 features of a power spectrogram (the second half of mfcc)."""
    bins, weights, starts = _sparse_filterbank(power.shape[-1], settings.sample_rate)
    magnitude = np.sqrt(power.astype(np.float64))
    mel = np.add.reduceat(magnitude[:, bins] * weights, starts, axis=1) if len(power) else np.zeros((0, MEL_CHANNELS))
    logs = np.log(np.maximum(mel, LOG_FLOOR))
    return np.einsum("tc,ck->tk", logs, dct_matrix(MEL_CHANNELS, N_INPUT)).astype(np.float32)


def context_windows(features: Any) -> Any:
    """[B, T, 26] -> [B, T, 19, 26]: frames t-9..t+9 around each frame t, zeros beyond the ends (the order
    of Coqui's `input_node` windows). Takes numpy arrays and torch tensors alike: the model makes its
    windows on its own device, the torch-free ONNX client in numpy. Only making the zeros and the strided
    window view are spelled differently; the result is a view of the padded features (no copy yet)."""
    batch, time, width = features.shape
    if time == 0:
        return features.reshape(batch, 0, 2 * N_CONTEXT + 1, width)
    shape = (batch, time + 2 * N_CONTEXT, width)
    if isinstance(features, np.ndarray):
        padded = np.zeros(shape, features.dtype)
        padded[:, N_CONTEXT : N_CONTEXT + time] = features
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * N_CONTEXT + 1, axis=1)
    else:
        padded = features.new_zeros(shape)
        padded[:, N_CONTEXT : N_CONTEXT + time] = features
        windows = padded.unfold(1, 2 * N_CONTEXT + 1, 1)
    return windows.swapaxes(2, 3)  # [B, T, 26, 19] -> [B, T, 19, 26]
