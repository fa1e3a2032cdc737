"""MFCC features exactly as Coqui computes them with TensorFlow's AudioSpectrogram and Mfcc ops (spec §3).

Periodic Hann window, FFT of the next power of two, only full windows (no padding), power spectrum,
then the Mfcc op: square root back to magnitude, a 40-channel triangular mel bank from 20 Hz to
rate/2 that excludes DC, natural log floored at 1e-12, and a DCT-II scaled by sqrt(2/40) for every
coefficient (not orthonormal). TensorFlow computes in double and hands the spectrogram between the
two ops as float32; we do the same so features agree to float32 rounding.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

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
def mel_filterbank(n_bins: int, sample_rate: int, upper_hz: float, channels: int = MEL_CHANNELS,
                   lower_hz: float = LOWER_FREQUENCY_HZ) -> np.ndarray:
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


def power_spectrogram(audio: torch.Tensor, sample_rate: int, win_len_ms: int = 32,
                      win_step_ms: int = 20) -> torch.Tensor:
    """[..., N] float samples -> [..., frames, fft/2 + 1] float32 power, as AudioSpectrogram(magnitude_squared)."""
    window, stride = window_samples(sample_rate, win_len_ms), window_samples(sample_rate, win_step_ms)
    fft_length = 1 << (window - 1).bit_length()
    if audio.shape[-1] < window:
        return audio.new_zeros((*audio.shape[:-1], 0, fft_length // 2 + 1), dtype=torch.float32)
    frames = audio.to(torch.float64).unfold(-1, window, stride)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(window, dtype=torch.float64, device=audio.device) / window)
    spectrum = torch.fft.rfft(frames * hann, n=fft_length)
    return (spectrum.real.square() + spectrum.imag.square()).to(torch.float32)


def mfcc_from_power(power: torch.Tensor, sample_rate: int, n_coefficients: int = 26) -> torch.Tensor:
    bank = torch.from_numpy(mel_filterbank(power.shape[-1], sample_rate, sample_rate / 2)).to(power.device)
    dct = torch.from_numpy(dct_matrix(MEL_CHANNELS, n_coefficients)).to(power.device)
    mel = power.to(torch.float64).sqrt() @ bank
    return (mel.clamp_min(LOG_FLOOR).log() @ dct).to(torch.float32)


def mfcc(audio: torch.Tensor, lengths: torch.Tensor | None, sample_rate: int, win_len_ms: int = 32,
         win_step_ms: int = 20, n_coefficients: int = 26) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of a padded batch [B, N] (or one signal [N]) and their frame counts.

    Frames that reach into a signal's padding are zeroed, so each row equals its signal's own
    features followed by zeros, which is what Coqui's padded batches hold."""
    single = audio.dim() == 1
    if single:
        audio = audio[None]
    if lengths is None:
        lengths = torch.full((audio.shape[0],), audio.shape[-1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    features = mfcc_from_power(power_spectrogram(audio, sample_rate, win_len_ms, win_step_ms), sample_rate,
                               n_coefficients)
    frame_lengths = torch.tensor([frame_count(int(n), sample_rate, win_len_ms, win_step_ms) for n in lengths])
    valid = torch.arange(features.shape[1])[None, :] < frame_lengths[:, None]
    features = features * valid[..., None].to(features.device)
    return (features[0], frame_lengths[0]) if single else (features, frame_lengths)
