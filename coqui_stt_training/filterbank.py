"""The numbers behind the MFCC features, in numpy alone: window sizes, TensorFlow's mel filterbank and
DCT, and the whole MFCC of one signal. features.py computes the same features in batches with torch;
this module is what the ONNX inference path (no torch) uses.
"""

from __future__ import annotations

import functools
import math

import numpy as np

MEL_CHANNELS = 40
LOWER_FREQUENCY_HZ = 20.0
LOG_FLOOR = 1e-12


def window_samples(sample_rate: int, win_len_ms: int) -> int:
    return int(sample_rate * win_len_ms / 1000)


def frame_count(n_samples: int, sample_rate: int, win_len_ms: int = 32, win_step_ms: int = 20) -> int:
    window, stride = window_samples(sample_rate, win_len_ms), window_samples(sample_rate, win_step_ms)
    return 0 if n_samples < window else 1 + (n_samples - window) // stride


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
def dct_matrix(n_inputs: int = MEL_CHANNELS, n_outputs: int = 26) -> np.ndarray:
    """[n_inputs, n_outputs]: out[k] = sqrt(2/n) * sum_j x[j] cos(pi k (j + 0.5) / n), the same scale for k = 0."""
    j = np.arange(n_inputs)[:, None] + 0.5
    k = np.arange(n_outputs)[None, :]
    return math.sqrt(2.0 / n_inputs) * np.cos(math.pi / n_inputs * j * k)


def mfcc_numpy(
    samples: np.ndarray, sample_rate: int, win_len_ms: int = 32, win_step_ms: int = 20, n_coefficients: int = 26
) -> np.ndarray:
    """[frames, 26] float32 features of one signal, computed as features.mfcc computes them (float64
    spectrum handed on as float32, as TensorFlow does)."""
    window, stride = window_samples(sample_rate, win_len_ms), window_samples(sample_rate, win_step_ms)
    fft_length = 1 << (window - 1).bit_length()
    if len(samples) < window:
        return np.zeros((0, n_coefficients), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(samples, np.float64), window)[::stride]
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(window, dtype=np.float64) / window)
    spectrum = np.fft.rfft(frames * hann, n=fft_length)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = np.sqrt(power.astype(np.float64)) @ mel_filterbank(power.shape[-1], sample_rate, sample_rate / 2)
    return (np.log(np.maximum(mel, LOG_FLOOR)) @ dct_matrix(MEL_CHANNELS, n_coefficients)).astype(np.float32)
