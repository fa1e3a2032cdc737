"""--feature_cache DIR: each sample's MFCC features computed once, reused by every later epoch and run.

Coqui's flag named a tf.data cache file; here it names a directory holding one `.npy` file per sample
(float32 [frames, 26], read with allow_pickle=False), under a subdirectory named by the feature
settings, so that changing --audio_sample_rate, --feature_win_len or --feature_win_step starts a new
cache instead of reusing wrong features. A sample's key covers its path, size and modification time:
an edited audio file is recomputed. Files are written under temporary names and renamed, so several
processes (data workers, distributed ranks) share one cache safely. --cache_for_epochs N starts a
fresh generation of the cache every N epochs (Coqui used it to refresh augmented features).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..data.shards import URL
from ..model.features import N_INPUT, FeatureSettings
from ..system import log
from ..system.atomic_files import write_atomically, write_file_atomically
from ..system.memory import available_memory


class FeatureCache:
    def __init__(self, directory: str, features: FeatureSettings, generation: int = 0):
        settings = {
            "sample_rate": features.sample_rate,
            "win_len_ms": features.win_len_ms,
            "win_step_ms": features.win_step_ms,
            "coefficients": N_INPUT,
            "generation": generation,
            "version": 1,
        }
        name = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = os.path.join(directory, name)
        self.writable = True
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, exist_ok=True)
            write_file_atomically(os.path.join(self.directory, "settings.json"), json.dumps(settings, indent=2))
            others = [d for d in os.listdir(directory) if d != name and os.path.isdir(os.path.join(directory, d))]
            if others:
                log.info(
                    f"Feature settings differ from those of the {len(others)} cache(s) in {directory}: "
                    f"starting a new one in {self.directory}"
                )

    def path(self, audio_path: str, name: str) -> str:
        """The entry of the audio `name` in file `audio_path` (the file itself, or a sample of an SDB or a
        shard); a shard at a URL is taken as unchanging, as a published data set is."""
        if audio_path.startswith(URL):
            key = name
        else:
            stat = os.stat(audio_path)
            key = f"{os.path.abspath(name)}\0{stat.st_size}\0{stat.st_mtime_ns}"
        return os.path.join(self.directory, hashlib.sha1(key.encode()).hexdigest() + ".npy")

    def get(self, audio_path: str, name: str) -> np.ndarray | None:
        path = self.path(audio_path, name)
        try:
            features = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # damaged (a disk error): compute again and replace it
            return None
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != N_INPUT:
            return None
        return features

    def put(self, audio_path: str, name: str, features: np.ndarray) -> None:
        if not self.writable:
            return
        array = np.ascontiguousarray(features, dtype=np.float32)
        try:
            # not flushed to disk: an entry lost in a crash is computed again
            write_atomically(self.path(audio_path, name), lambda tmp: _save(tmp, array), durable=False)
        except OSError as e:  # a full disk makes the cache useless, not the run
            log.warn(
                f"cannot write to the feature cache {self.directory} ({e.strerror or e}); uncached features "
                "are computed each time"
            )
            self.writable = False


def _save(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


class FeaturesInMemory:
    """Each sample's features kept in the training process once a batch has brought them, up to `budget` bytes
    (the first samples to come, then no more). When every sample of an epoch is held, its batches are made from
    here in the training process: no decoding, no MFCC, no data worker competing with the step for the cores.
    Only for features that are the same every epoch (no augmentation before them); the key is sample_key."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self.entries: dict[str, np.ndarray] = {}

    @classmethod
    def for_this_process(cls, share: float = 0.1) -> FeaturesInMemory:
        """A `share` of the memory this process may use now (--max_batch_memory's default takes 80 %)."""
        return cls(int(share * (available_memory() or 0)))

    def get(self, key: str) -> np.ndarray | None:
        return self.entries.get(key)

    def holds_all(self, keys: list[str]) -> bool:
        return all(k in self.entries for k in keys)

    def keep(self, key: str, features: np.ndarray) -> None:
        if key in self.entries or self.used + features.nbytes > self.budget:
            return
        self.entries[key] = features
        self.used += features.nbytes
