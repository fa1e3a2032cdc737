"""MFCC features exactly as Coqui computes them with TensorFlow's AudioSpectrogram and Mfcc ops (spec §3).

Periodic Hann window, FFT of the next power of two, only full windows (no padding), power spectrum,
then the Mfcc op: square root back to magnitude, a 40-channel triangular mel bank from 20 Hz to
rate/2 that excludes DC, natural log floored at 1e-12, and a DCT-II scaled by sqrt(2/40) for every
coefficient (not orthonormal). TensorFlow computes in double and hands the spectrogram between the
two ops as float32; we do the same so features agree to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .filterbank import LOG_FLOOR, MEL_CHANNELS, dct_matrix, frame_count, mel_filterbank, window_samples


def power_spectrogram(
    audio: torch.Tensor, sample_rate: int, win_len_ms: int = 32, win_step_ms: int = 20
) -> torch.Tensor:
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


def mfcc(
    audio: torch.Tensor,
    lengths: torch.Tensor | None,
    sample_rate: int,
    win_len_ms: int = 32,
    win_step_ms: int = 20,
    n_coefficients: int = 26,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of a padded batch [B, N] (or one signal [N]) and their frame counts.

    Frames that reach into a signal's padding are zeroed, so each row equals its signal's own
    features followed by zeros, which is what Coqui's padded batches hold."""
    single = audio.dim() == 1
    if single:
        audio = audio[None]
    if lengths is None:
        lengths = torch.full((audio.shape[0],), audio.shape[-1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    features = mfcc_from_power(
        power_spectrogram(audio, sample_rate, win_len_ms, win_step_ms), sample_rate, n_coefficients
    )
    frame_lengths = torch.tensor([frame_count(int(n), sample_rate, win_len_ms, win_step_ms) for n in lengths])
    valid = torch.arange(features.shape[1])[None, :] < frame_lengths[:, None]
    features = features * valid[..., None].to(features.device)
    return (features[0], frame_lengths[0]) if single else (features, frame_lengths)


def mfcc_of_signals(
    signals: list[np.ndarray], sample_rate: int, win_len_ms: int = 32, win_step_ms: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B, T, 26] and frame counts of signals of different lengths, zero-padded into one batch."""
    lengths = torch.tensor([len(s) for s in signals])
    padded = torch.zeros(len(signals), int(lengths.max()))
    for i, signal in enumerate(signals):
        padded[i, : len(signal)] = torch.from_numpy(np.asarray(signal, dtype=np.float32))
    return mfcc(padded, lengths, sample_rate, win_len_ms, win_step_ms)
