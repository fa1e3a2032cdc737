"""Checked samples to training and evaluation batches: Coqui's order and batching, audio decoded and
features computed in DataLoader workers (or taken from the feature cache, or from the training process's
memory once every sample of the epoch is held there), padded into tensors.

Batches are consecutive runs of the data set's order (sorted by size); training drops the incomplete
last batch and, with --shuffle_batches, shuffles whole batches, as Coqui does. In a distributed run each
process gets its slice of every global training batch, and a share of the evaluation batches.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.samples import Sample, ctc_min_frames, load_sample_audio, sample_key
from ..model.features import N_INPUT, FeatureSettings, mfcc_from_power, power_spectrogram
from ..system import log, signals
from ..system.distributed import World, shard_batches, split_global_batches
from . import augment
from .augment import SAMPLE, SIGNAL, SPECTROGRAM, Augmentation, in_domain
from .augment_audio import augment_audio
from .augment_batch import Utterance
from .feature_cache import FeatureCache, FeaturesInMemory

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
    augmentations: tuple[Augmentation, ...] = ()  # --augment, for training batches
    epochs: int = 0  # of the whole run: the augmentations' clock
    rehearsal_augment: bool = False  # --augment applies to rehearsal samples too


@dataclass
class Batch:
    features: torch.Tensor  # [B, T, 26], zero-padded
    feature_lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [sum of label lengths], concatenated
    label_lengths: torch.Tensor  # [B]
    samples: list[Sample]
    # with --augment: what the graph augmentations start from, the training clock and each sample's seed
    utterances: list[Utterance] | None = None
    clock: float = 0.0
    seeds: list[np.random.SeedSequence | None] | None = None  # None for a sample left unaugmented


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
    """Reads audio and computes features for one batch, or takes them from memory or the feature cache (runs
    in DataLoader workers when there are any). Training batches with --augment get the sample-domain
    augmentations here, and carry what the later domains start from (augment_batch.py); the samples at the
    positions in `plain` (rehearsal samples, feeding/rehearsal.py) are never augmented."""

    def __init__(
        self,
        samples: list[Sample],
        features: FeatureSettings,
        cache: FeatureCache | None = None,
        augmentations: tuple[Augmentation, ...] = (),
        timing: tuple[int, int, int, int] = (0, 0, 1, 0),  # random seed, epoch, batches per epoch, epochs
        plain: frozenset[int] = frozenset(),
        memory: FeaturesInMemory | None = None,
    ):
        self.samples, self.features, self.cache, self.memory, self.plain = samples, features, cache, memory, plain
        self.augmentations, self.timing = list(augmentations), timing
        self.graph_augmentations = [a for a in augmentations if a.domain != SAMPLE]  # (on the training device)

    def __call__(self, item: tuple[int, list[int]]) -> Batch:
        position, indices = item
        batch = [self.samples[i] for i in indices]
        random_seed, epoch, per_epoch, epochs = self.timing
        clock = augment.clock(epoch, position, per_epoch, epochs)
        each, utterances = [], []
        for index, sample in zip(indices, batch):
            features = self.memory.get(sample_key(sample)) if self.memory else None
            if features is None and self.cache:
                features = self.cache.get(sample.audio_path, sample_key(sample))
            signal = power = None
            if features is None:
                features, signal, power = self.compute(sample, index, clock)
                if self.cache:
                    self.cache.put(sample.audio_path, sample_key(sample), features)
            if self.graph_augmentations:
                kept = (None, None) if index in self.plain else (signal, power)
                utterances.append(self.utterance(features, *kept, sample))
            each.append(features)
        padded, feature_lengths = pad_features(each)
        labels = torch.tensor([label for s in batch for label in s.labels or []], dtype=torch.long)
        label_lengths = torch.tensor([len(s.labels or []) for s in batch], dtype=torch.long)
        if not self.graph_augmentations:
            return Batch(padded, feature_lengths, labels, label_lengths, batch)
        seeds = [None if i in self.plain else augment.seed(random_seed, epoch, i, SPECTROGRAM) for i in indices]
        return Batch(padded, feature_lengths, labels, label_lengths, batch, utterances, clock, seeds)

    def compute(self, sample: Sample, index: int, clock: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of a sample (and the signal and power spectrogram they come from)."""
        signal = load_sample_audio(sample, self.features.sample_rate)
        if in_domain(self.augmentations, SAMPLE) and index not in self.plain:
            rng = np.random.default_rng(augment.seed(self.timing[0], self.timing[1], index, SAMPLE))
            signal = augment_audio(signal, self.features.sample_rate, self.augmentations, clock, rng)
        power = power_spectrogram(signal, self.features)
        return mfcc_from_power(power, self.features), signal, power

    def utterance(
        self, features: np.ndarray, signal: np.ndarray | None, power: np.ndarray | None, sample: Sample
    ) -> Utterance:
        keep_signal = signal is not None and in_domain(self.augmentations, SIGNAL)
        keep_power = power is not None and in_domain(self.augmentations, SPECTROGRAM)
        return Utterance(
            torch.from_numpy(features),
            torch.from_numpy(np.asarray(signal, np.float32)) if keep_signal else None,
            torch.from_numpy(power) if keep_power else None,
            ctc_min_frames(sample.labels or []),
        )


def data_loader(
    samples: list[Sample],
    batch_size: int,
    settings: LoaderSettings,
    train: bool,
    epoch: int = 0,
    skip: int = 0,
    world: World = World(),
    plain: frozenset[int] = frozenset(),
    memory: FeaturesInMemory | None = None,
) -> torch.utils.data.DataLoader:
    """Batches of one epoch; `skip` leaves out its first batches (a resumed run has done them). In a
    distributed run, training batches are global (batch_size per rank) and each rank gets its slice of
    every one; evaluation batches are dealt out whole. The samples at the positions in `plain` get no
    augmentation. With `memory`, the features the batches bring are kept there, and an epoch whose samples
    are all held is made from it in this process."""
    batches = make_batches(len(samples), batch_size * world.size if train else batch_size, drop_last=train)
    if train and settings.shuffle_batches and epoch >= settings.shuffle_start:
        # Coqui shuffles whole batches, never samples across batches; seeded per epoch so reruns agree.
        order = np.random.default_rng(settings.random_seed + epoch).permutation(len(batches))
        batches = [batches[i] for i in order]
    per_epoch, positions, batches = len(batches), range(skip, len(batches)), batches[skip:]
    if world.distributed:
        batches = split_global_batches(batches, batch_size, world) if train else shard_batches(batches, world)
    # (position in the epoch, indices): the augmentations' clock follows the position
    items = list(zip(positions, batches)) if train else list(enumerate(batches))
    augmentations = settings.augmentations if train else ()
    cache = None
    features_fixed = not changes_audio(augmentations)  # the same every epoch: they may be kept
    memory = memory if features_fixed else None
    if settings.feature_cache and features_fixed:
        generation = epoch // settings.cache_for_epochs if settings.cache_for_epochs > 0 else 0
        cache = FeatureCache(settings.feature_cache, settings.features, generation)
    timing = (settings.random_seed, epoch, per_epoch, settings.epochs)
    collate = Collate(samples, settings.features, cache, augmentations, timing, plain, memory)
    # Workers start anew each epoch (a fork, about 0.1 s): for a handful of batches that costs more than
    # the features it would compute ahead. Batches from memory cost a copy: a worker would only take a
    # core from the step.
    held = memory is not None and memory.holds_all([sample_key(samples[i]) for _, b in items for i in b])
    workers = settings.data_workers if len(items) >= MIN_BATCHES_FOR_WORKERS and not held else 0
    # Its own generator: a DataLoader draws a seed each time it is iterated, and from torch's global
    # generator that draw would shift the dropout masks of a resumed run against an uninterrupted one.
    return _DataLoader(items, collate, workers, settings.random_seed + epoch, None if held else memory)


def changes_audio(augmentations: tuple[Augmentation, ...] | list[Augmentation]) -> bool:
    """Augmentations before the features: features cached from one epoch would freeze them for the next."""
    return any(a.domain != augment.FEATURES for a in augmentations)


def warn_if_cache_unused(settings: LoaderSettings) -> None:
    if settings.feature_cache and changes_audio(settings.augmentations):
        names = " ".join(sorted({a.name for a in settings.augmentations if a.domain != augment.FEATURES}))
        log.warn(
            f"--feature_cache is not used for the training set: --augment {names} changes each epoch what the "
            "features are computed from (dev and test sets are still cached)"
        )


class _DataLoader(torch.utils.data.DataLoader):
    """Batches made by `collate` from (position, indices) items; their features kept in `memory` if given."""

    def __init__(
        self,
        items: list[tuple[int, list[int]]],
        collate: Collate,
        workers: int,
        seed: int,
        memory: FeaturesInMemory | None,
    ):
        super().__init__(
            items,  # type: ignore[arg-type]
            batch_size=None,
            collate_fn=collate,  # type: ignore[arg-type]  # (called with one (position, indices) item)
            num_workers=workers,
            prefetch_factor=4 if workers else None,
            worker_init_fn=signals.ignore_stop_signals,
            generator=torch.Generator().manual_seed(seed),
        )
        self.memory = memory

    def __iter__(self):
        if sys.excepthook is not _quiet_broken_handover:
            _hooks[:] = [sys.excepthook]
            sys.excepthook = _quiet_broken_handover
        with signals.deferred():  # the workers start here
            batches = super().__iter__()
        return batches if self.memory is None else _kept(batches, self.memory)


def _kept(batches: Iterator[Batch], memory: FeaturesInMemory) -> Iterator[Batch]:
    """The batches, each sample's features kept in `memory` on the way (copies: a worker's batch lies in
    shared memory, one open file each, and the step may change its tensors)."""
    for batch in batches:
        for features, length, sample in zip(batch.features, batch.feature_lengths.tolist(), batch.samples):
            memory.keep(sample_key(sample), features[:length].numpy().copy())
        yield batch


_hooks: list = []  # the excepthook _quiet_broken_handover passes everything else to


def _quiet_broken_handover(kind, value, trace) -> None:
    """A data worker killed (the OOM killer) while handing a batch's shared memory over leaves the standard
    library's file-descriptor thread (multiprocessing.resource_sharer, which reports through sys.excepthook) a
    broken connection; its traceback would follow the trainer's one line about the dead worker, and says nothing
    more. Everything else goes to the hook that was there."""
    frames = traceback.extract_tb(trace) if trace else []
    if not (issubclass(kind, (EOFError, OSError)) and frames and frames[0].filename.endswith("resource_sharer.py")):
        _hooks[0](kind, value, trace)
