"""Rehearsal: fine-tuning that keeps drawing on the source domain, so the model keeps what it knew (issue 32).

Each epoch trains on every --train_files sample plus a draw from --rehearsal_files, sized so that the drawn
samples are --rehearsal_fraction of the epoch (0.2 of an epoch over 800 target samples: 200 drawn). The draw is
fresh each epoch and a pure function of --random_seed, the epoch and the rehearsal set, so a resumed run, every
rank of a distributed run and every data worker get the same epoch. Within a draw no sample repeats unless the
rehearsal set is smaller than the draw. The epoch's samples are then in size order, as one data set's are, and
batches are cut from them as from any training set (feeding/batches.py).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ..data.samples import Sample

REHEARSAL_STREAM = 0x52  # keeps the draw's generator apart from the augmentations' (their last word is 0 to 3)


@dataclass
class TrainingSet:
    """The checked training samples, and the rehearsal samples each epoch draws its share from."""

    target: list[Sample]
    rehearsal: list[Sample] = field(default_factory=list)
    fraction: float = 0.0  # of each epoch's samples, drawn from `rehearsal`

    @property
    def drawn_per_epoch(self) -> int:
        if not self.rehearsal or self.fraction <= 0.0:
            return 0
        return max(1, round(len(self.target) * self.fraction / (1.0 - self.fraction)))

    def __len__(self) -> int:
        """Samples per epoch."""
        return len(self.target) + self.drawn_per_epoch

    def epoch(self, random_seed: int, epoch: int) -> tuple[list[Sample], frozenset[int]]:
        """The epoch's samples, in size order, and the positions among them of the rehearsal ones."""
        count = self.drawn_per_epoch
        if not count:
            return self.target, frozenset()
        rng = np.random.default_rng([random_seed, epoch, REHEARSAL_STREAM])
        n = len(self.rehearsal)
        picks = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
        drawn = sorted((self.rehearsal[i] for i in picks), key=lambda s: s.duration)  # stable: ties in draw order
        merged = list(
            heapq.merge(
                ((s, False) for s in self.target), ((s, True) for s in drawn), key=lambda pair: pair[0].duration
            )
        )
        return [s for s, _ in merged], frozenset(i for i, (_, rehearsed) in enumerate(merged) if rehearsed)

    def longest(self, size: int) -> list[Sample]:
        """The dummy run's batch: the training set's last (as Coqui takes it), or with rehearsal the `size` longest
        samples any epoch can hold."""
        if not self.drawn_per_epoch:
            return self.target[-size:]
        return sorted(self.target + self.rehearsal, key=lambda s: s.duration)[-size:]
