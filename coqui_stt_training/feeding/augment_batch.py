"""The signal-, spectrogram- and features-domain augmentations, batched in torch on the training device, as
Coqui's util/augmentations.py defines them (docs/compatibility.md "Augmentation").

A training batch with --augment carries each utterance's features (computed in the data workers as always)
and, when an augmentation needs them, its signal or power spectrogram. For each utterance the draws decide
which augmentations fire; where none before the features does, its features are the workers' own, bit for
bit; where one does, the spectrogram (from the augmented signal, if that fired) goes through them and then
through the same MFCC as model/features.py, here in torch (float64, as TensorFlow's op computes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.features import LOG_FLOOR, MEL_CHANNELS, N_INPUT, FeatureSettings, dct_matrix, mel_filterbank
from .augment import FEATURES, SAMPLE, SIGNAL, SPECTROGRAM, Augmentation, in_domain


@dataclass
class Draws:
    """Where one utterance's random values come from: scalars from a numpy generator, tensors from torch's."""

    clock: float
    rng: np.random.Generator
    generator: torch.Generator

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(like.shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def pick(self, a: Augmentation, parameter: str) -> float:
        return a.pick(parameter, self.clock, self.rng)

    def start(self, size: int, limit: int) -> int:
        """A span's first index, uniform in 0 .. limit - size - 1 (as TensorFlow's exclusive maxval)."""
        return int(self.rng.integers(max(1, limit - size)))


@dataclass
class Utterance:
    """One utterance of a training batch: its features, and what the augmentations may start from."""

    features: torch.Tensor  # [T, 26]
    signal: torch.Tensor | None  # [N], when a signal-domain augmentation is on
    power: torch.Tensor | None  # [T, F], when a spectrogram-domain one is
    min_frames: int  # the fewest frames its transcript allows (CTC)


def augment_utterance(
    u: Utterance, augmentations: list[Augmentation], settings: FeatureSettings, draws: Draws
) -> torch.Tensor:
    """[T', 26] features of one utterance after the graph augmentations that fire for it."""
    fired = [a for a in augmentations if a.domain != SAMPLE and draws.rng.random() < a.p]
    signal_fired, spectrogram_fired = in_domain(fired, SIGNAL), in_domain(fired, SPECTROGRAM)
    features = u.features
    if signal_fired or spectrogram_fired:
        if signal_fired:
            assert u.signal is not None
            signal = u.signal
            for a in signal_fired:
                signal = APPLY[a.name](signal, a, draws, settings, u.min_frames, SIGNAL)
            power = power_spectrogram_torch(signal, settings)
        else:
            assert u.power is not None
            power = u.power
        for a in spectrogram_fired:
            power = APPLY[a.name](power, a, draws, settings, u.min_frames, SPECTROGRAM)
        features = mfcc_from_power_torch(power, settings)
    for a in in_domain(fired, FEATURES):
        features = APPLY[a.name](features, a, draws, settings, u.min_frames, FEATURES)
    return features


def augment_features(
    utterances: list[Utterance],
    seeds: list[np.random.SeedSequence | None],
    clock: float,
    augmentations: list[Augmentation],
    settings: FeatureSettings,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch's features [B, T, 26] on `device` and their lengths [B], after the graph augmentations
    (none for an utterance whose seed is None)."""
    each = []
    for u, seed in zip(utterances, seeds):
        if seed is None:
            each.append(u.features.to(device))
            continue
        numbers, tensors = seed.spawn(2)
        draws = Draws(clock, np.random.default_rng(numbers), seeded_generator(tensors, device))
        on_device = Utterance(
            u.features.to(device),
            None if u.signal is None else u.signal.to(device),
            None if u.power is None else u.power.to(device),
            u.min_frames,
        )
        each.append(augment_utterance(on_device, augmentations, settings, draws))
    lengths = torch.tensor([len(f) for f in each])
    padded = torch.zeros(len(each), int(lengths.max()) if each else 0, N_INPUT, device=device)
    for i, f in enumerate(each):
        padded[i, : len(f)] = f
    return padded, lengths


# ---- features in torch (model/features.py's definitions) ---------------------------------------------


def power_spectrogram_torch(signal: torch.Tensor, settings: FeatureSettings) -> torch.Tensor:
    window, stride = settings.window, settings.stride
    fft_length = 1 << (window - 1).bit_length()
    if len(signal) < window:
        return signal.new_zeros((0, fft_length // 2 + 1))
    hann = torch.hann_window(window, periodic=True, dtype=torch.float64, device=signal.device)
    spectrum = torch.fft.rfft(signal.double().unfold(0, window, stride) * hann, n=fft_length)
    return (spectrum.real**2 + spectrum.imag**2).float()


def mfcc_from_power_torch(power: torch.Tensor, settings: FeatureSettings) -> torch.Tensor:
    bank = torch.from_numpy(mel_filterbank(power.shape[-1], settings.sample_rate, settings.sample_rate / 2))
    dct = torch.from_numpy(dct_matrix(MEL_CHANNELS, N_INPUT))
    mel = power.double().clamp(min=0).sqrt() @ bank.to(power.device)
    return (mel.clamp(min=LOG_FLOOR).log() @ dct.to(power.device)).float()


# ---- the augmentations: x is [N] (signal) or [T, F] (spectrogram, features) ---------------------

Apply = Callable[[torch.Tensor, Augmentation, Draws, FeatureSettings, int, str], torch.Tensor]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def pitch(x, a, draws, settings, min_frames, domain):
    """The frequency axis stretched by `pitch`, cut or zero-padded back to its bins."""
    frames, bins = x.shape
    stretched = max(1, int(bins * draws.pick(a, "pitch")))
    if frames == 0:
        return x
    y = resize(x, (frames, stretched))[:, :bins]
    return F.pad(y, (0, bins - y.shape[1]))


def tempo(x, a, draws, settings, min_frames, domain):
    """The time axis resized by 1/`factor`, to at most `max_time` ms, never below what the transcript needs."""
    frames = x.shape[0]
    length = int(frames / max(draws.pick(a, "factor"), 1e-6))
    max_time = float(str(a.settings["max_time"]))
    if max_time > 0:
        length = min(length, int(max_time / settings.win_step_ms))
    length = max(length, min_frames, 1)
    return resize(x, (length, x.shape[1])) if frames else x


def warp(x, a, draws, settings, min_frames, domain):
    """SpecAugment's time (and frequency) warp: smooth random flows, zero at the edges, as Coqui's
    dense_image_warp of bicubically resized normal offsets."""
    frames, bins = x.shape
    num_t, num_f = max(1, int(draws.pick(a, "num_t"))), max(1, int(draws.pick(a, "num_f")))
    if frames < 2 or bins < 2:
        return x
    flows = []
    for n, size, parameter in ((num_t, frames, "warp_t"), (num_f, bins, "warp_f")):
        scale = draws.pick(a, parameter) * size / (2 * (n + 1))
        offsets = draws.normal(x.new_zeros((num_t, num_f), dtype=torch.float32)) * scale  # Coqui's shape
        flows.append(F.pad(offsets, (1, 1, 1, 1)))
    flow = F.interpolate(torch.stack(flows)[None], size=(frames, bins), mode="bicubic", align_corners=False)[0]
    rows = torch.arange(frames, device=x.device, dtype=torch.float32)[:, None] - flow[0]
    columns = torch.arange(bins, device=x.device, dtype=torch.float32)[None, :] - flow[1]
    grid = torch.stack([2 * columns / (bins - 1) - 1, 2 * rows / (frames - 1) - 1], dim=-1)[None]
    warped = F.grid_sample(x[None, None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped[0, 0].to(x.dtype)


def frequency_mask(x, a, draws, settings, min_frames, domain):
    """`n` bands of `size` bins set to zero."""
    bins = x.shape[1]
    x = x.clone()
    for _ in range(max(0, int(draws.pick(a, "n")))):
        size = max(1, min(bins - 1, int(draws.pick(a, "size"))))
        start = draws.start(size, bins)
        x[:, start : start + size] = 0
    return x


def time_mask(x, a, draws, settings, min_frames, domain):
    """`n` spans of `size` ms set to zero (samples in the signal, frames elsewhere)."""
    length = x.shape[0]
    per_ms = settings.sample_rate / 1000.0 if domain == SIGNAL else 1.0 / settings.win_step_ms
    x = x.clone()
    for _ in range(max(0, int(draws.pick(a, "n")))):
        size = max(1, min(length - 1, int(draws.pick(a, "size") * per_ms)))
        start = draws.start(size, length)
        x[start : start + size] = 0
    return x


def dropout(x, a, draws, settings, min_frames, domain):
    """Each value set to zero with probability `rate` (as Coqui documents it; its code kept `rate` instead)."""
    rate = max(0.0, draws.pick(a, "rate"))
    return x * (draws.uniform(x) >= rate)


def add(x, a, draws, settings, min_frames, domain):
    """Gaussian noise of `stddev` added."""
    return x + draws.normal(x) * draws.pick(a, "stddev")


def multiply(x, a, draws, settings, min_frames, domain):
    """Each value times a Gaussian of mean 1 and `stddev`."""
    return x * (1.0 + draws.normal(x) * draws.pick(a, "stddev"))


APPLY: dict[str, Apply] = {
    "pitch": pitch, "tempo": tempo, "warp": warp, "frequency_mask": frequency_mask, "time_mask": time_mask,
    "dropout": dropout, "add": add, "multiply": multiply,
}  # fmt: skip


def seeded_generator(seed: np.random.SeedSequence, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
