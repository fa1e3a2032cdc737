"""Checked samples to training and evaluation batches: Coqui's order and batching, audio decoded and
features computed in DataLoader workers (or taken from the feature cache), padded into tensors.

Batches are consecutive runs of the data set's order (sorted by size); training drops the incomplete
last batch and, with --shuffle_batches, shuffles whole batches, as Coqui does. In a distributed run each
process gets its slice of every global training batch, and a share of the evaluation batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import signals
from .dataset import Sample, load_sample_audio, sample_key
from .distributed import World, shard_batches, split_global_batches
from .feature_cache import FeatureCache
from .features import N_INPUT, FeatureSettings, mfcc

MIN_BATCHES_FOR_WORKERS = 8


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are made (the flags of the same names)."""

    features: FeatureSettings = FeatureSettings()
    feature_cache: str = ""  # directory of the feature cache ("": none)
    cache_for_epochs: int = 0  # a fresh cache generation every N epochs (0: never)
    data_workers: int = 1  # worker processes (0: in the calling process)
    shuffle_batches: bool = False
    shuffle_start: int = 1  # first epoch whose batches are shuffled
    random_seed: int = 4568


@dataclass
class Batch:
    features: torch.Tensor  # [B, T, 26], zero-padded
    feature_lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [sum of label lengths], concatenated
    label_lengths: torch.Tensor  # [B]
    samples: list[Sample]


def make_batches(n_samples: int, batch_size: int, drop_last: bool) -> list[list[int]]:
    """Consecutive batches in data-set order; training drops the incomplete last batch, as Coqui does."""
    stop = n_samples - n_samples % batch_size if drop_last else n_samples
    return [list(range(i, min(i + batch_size, stop))) for i in range(0, stop, batch_size)]


def pad_features(each: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of several signals [frames_i, 26] as one zero-padded batch [B, T, 26] and the frame counts."""
    lengths = torch.tensor([len(f) for f in each])
    padded = torch.zeros(len(each), int(lengths.max()) if len(each) else 0, N_INPUT)
    for i, f in enumerate(each):
        padded[i, : len(f)] = torch.from_numpy(f)
    return padded, lengths


class Collate:
    """Reads audio and computes features for one batch, or takes them from the feature cache (runs in
    DataLoader workers when there are any)."""

    def __init__(self, samples: list[Sample], features: FeatureSettings, cache: FeatureCache | None = None):
        self.samples, self.features, self.cache = samples, features, cache

    def __call__(self, indices: list[int]) -> Batch:
        batch = [self.samples[i] for i in indices]
        each = []
        for sample in batch:
            features = self.cache.get(sample.audio_path, sample_key(sample)) if self.cache else None
            if features is None:
                features = self.compute(sample)
                if self.cache:
                    self.cache.put(sample.audio_path, sample_key(sample), features)
            each.append(features)
        padded, feature_lengths = pad_features(each)
        labels = torch.tensor([label for s in batch for label in s.labels or []], dtype=torch.long)
        label_lengths = torch.tensor([len(s.labels or []) for s in batch], dtype=torch.long)
        return Batch(padded, feature_lengths, labels, label_lengths, batch)

    def compute(self, sample: Sample) -> np.ndarray:
        return mfcc(load_sample_audio(sample, self.features.sample_rate), self.features)


def data_loader(
    samples: list[Sample],
    batch_size: int,
    settings: LoaderSettings,
    train: bool,
    epoch: int = 0,
    skip: int = 0,
    world: World = World(),
) -> torch.utils.data.DataLoader:
    """Batches of one epoch; `skip` leaves out its first batches (a resumed run has done them). In a
    distributed run, training batches are global (batch_size per rank) and each rank gets its slice of
    every one; evaluation batches are dealt out whole."""
    batches = make_batches(len(samples), batch_size * world.size if train else batch_size, drop_last=train)
    if train and settings.shuffle_batches and epoch >= settings.shuffle_start:
        # Coqui shuffles whole batches, never samples across batches; seeded per epoch so reruns agree.
        order = np.random.default_rng(settings.random_seed + epoch).permutation(len(batches))
        batches = [batches[i] for i in order]
    batches = batches[skip:]
    if world.distributed:
        batches = split_global_batches(batches, batch_size, world) if train else shard_batches(batches, world)
    cache = None
    if settings.feature_cache:
        generation = epoch // settings.cache_for_epochs if settings.cache_for_epochs > 0 else 0
        cache = FeatureCache(settings.feature_cache, settings.features, generation)
    collate = Collate(samples, settings.features, cache)
    # Workers start anew each epoch (a fork, about 0.1 s): for a handful of batches that costs more than
    # the features it would compute ahead.
    workers = settings.data_workers if len(batches) >= MIN_BATCHES_FOR_WORKERS else 0
    # Its own generator: a DataLoader draws a seed each time it is iterated, and from torch's global
    # generator that draw would shift the dropout masks of a resumed run against an uninterrupted one.
    return _DataLoader(
        batches,  # type: ignore[arg-type]
        batch_size=None,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        worker_init_fn=signals.ignore_stop_signals,
        generator=torch.Generator().manual_seed(settings.random_seed + epoch),
    )


class _DataLoader(torch.utils.data.DataLoader):
    def __iter__(self):
        with signals.deferred():  # the workers start here
            return super().__iter__()
