import os
import shutil

import numpy as np
import torch

from coqui_stt_training import train
from coqui_stt_training.data.samples import load_data_set
from coqui_stt_training.feeding import batches
from coqui_stt_training.feeding.augment import parse_augmentations
from coqui_stt_training.feeding.batches import LoaderSettings
from coqui_stt_training.feeding.feature_cache import FeatureCache, FeaturesInMemory
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings
from tests.helpers import ALPHABET, SMOKE


def samples_in(folder):
    for name in ("LDC93S1.wav", "LDC93S1.flac", "LDC93S1_pcms16le_1_8000.wav"):
        shutil.copy(os.path.join(SMOKE, name), folder / name)
    csv_path = folder / "set.csv"
    csv_path.write_text(
        "wav_filename,wav_filesize,transcript\n"
        + "".join(
            f"{name},{i},she had your dark suit\n"
            for i, name in enumerate(("LDC93S1.wav", "LDC93S1.flac", "LDC93S1_pcms16le_1_8000.wav"))
        )
    )
    return str(csv_path)


def one_batch(samples, settings):
    return next(iter(batches.data_loader(samples, 3, settings, train=False)))


def counting_computes(monkeypatch):
    computed = []
    original = batches.Collate.compute

    def compute(self, sample, *where):
        computed.append(sample.wav_filename)
        return original(self, sample, *where)

    monkeypatch.setattr(batches.Collate, "compute", compute)
    return computed


def test_cached_features_are_the_computed_ones_and_are_reused(tmp_path, monkeypatch):
    csv_path, cache = samples_in(tmp_path), str(tmp_path / "cache")
    computed = counting_computes(monkeypatch)
    plain = LoaderSettings(data_workers=0)
    cached = LoaderSettings(data_workers=0, feature_cache=cache)
    samples = load_data_set([csv_path], load_alphabet(ALPHABET), FeatureSettings(), "dev")
    reference = one_batch(samples, plain)
    first, second = one_batch(samples, cached), one_batch(samples, cached)
    assert len(computed) == 3 + 3 + 0  # without the cache, filling it, then all from it
    for batch in (first, second):
        assert torch.equal(batch.features, reference.features)
        assert torch.equal(batch.feature_lengths, reference.feature_lengths)

    # other feature settings use another cache; an edited audio file is computed again
    one_batch(samples, LoaderSettings(FeatureSettings(win_step_ms=10), data_workers=0, feature_cache=cache))
    assert len(computed) == 9
    assert len(os.listdir(cache)) == 2
    os.utime(tmp_path / "LDC93S1.flac", ns=(1, 1))
    one_batch(samples, cached)
    assert computed[-1] == "LDC93S1.flac"
    assert len(computed) == 10
    # a damaged cache file is recomputed, not trusted (the entry in use: the edited file's old one is not)
    entry = FeatureCache(cache, cached.features).path(str(tmp_path / "LDC93S1.wav"), str(tmp_path / "LDC93S1.wav"))
    assert os.path.isfile(entry)
    with open(entry, "wb") as f:
        f.write(b"\x93NUMPY garbage")
    again = one_batch(samples, cached)
    assert len(computed) == 11
    assert torch.equal(again.features, reference.features)


def test_cache_for_epochs_starts_a_new_generation(tmp_path, monkeypatch):
    csv_path, cache = samples_in(tmp_path), str(tmp_path / "cache")
    computed = counting_computes(monkeypatch)
    settings = LoaderSettings(data_workers=0, feature_cache=cache, cache_for_epochs=2)
    samples = load_data_set([csv_path], load_alphabet(ALPHABET), FeatureSettings(), "train")
    for epoch in range(4):
        list(batches.data_loader(samples, 3, settings, train=True, epoch=epoch))
    assert len(computed) == 6  # epochs 0 and 2 compute, 1 and 3 reuse


def test_training_with_the_cache_and_a_worker_gives_the_same_losses(tmp_path, cli):
    csv_path = samples_in(tmp_path)
    base = ["--alphabet_config_path", ALPHABET, "--n_hidden", "24", "--show_progressbar", "false", "--train_files",
            csv_path, "--dev_files", csv_path, "--epochs", "3", "--train_batch_size", "2"]  # fmt: skip
    logs = []
    for extra in (["--data_workers", "0"], ["--data_workers", "1", "--feature_cache", str(tmp_path / "cache")]):
        status, log = cli(train.main, base + extra + ["--checkpoint_dir", str(tmp_path / extra[1])])
        assert status == 0, log
        logs.append([line.split(" - loss: ")[1] for line in log.splitlines() if " - loss: " in line])
    assert len(logs[0]) == 6
    assert logs[0] == logs[1]
    cache = tmp_path / "cache"
    assert len([f for d in os.listdir(cache) for f in os.listdir(cache / d) if f.endswith(".npy")]) == 3
    assert np.isfinite([float(x) for x in logs[0]]).all()


def nine_samples(folder):
    """Nine files (enough batches of one for a data worker), the one LDC93S1 recording under other names."""
    for i in range(9):
        shutil.copy(os.path.join(SMOKE, "LDC93S1.wav"), folder / f"{i}.wav")
    csv_path = folder / "nine.csv"
    csv_path.write_text("wav_filename,wav_filesize,transcript\n" + "".join(f"{i}.wav,1,she had\n" for i in range(9)))
    return load_data_set([str(csv_path)], load_alphabet(ALPHABET), FeatureSettings(), "train")


def test_features_kept_in_memory_make_the_next_epochs_in_process(tmp_path, monkeypatch):
    samples = nine_samples(tmp_path)
    settings = LoaderSettings(data_workers=1)
    memory = FeaturesInMemory(budget=10**9)
    first = batches.data_loader(samples, 1, settings, train=True, epoch=0, memory=memory)
    assert first.num_workers == 1
    computed_then = list(first)
    assert len(memory.entries) == 9 and memory.used == sum(f.nbytes for f in memory.entries.values())

    computed = counting_computes(monkeypatch)
    later = batches.data_loader(samples, 1, settings, train=True, epoch=1, memory=memory)
    assert later.num_workers == 0  # nothing to compute: no worker to take a core from the step
    from_memory = list(later)
    assert computed == []
    for a, b in zip(computed_then, from_memory, strict=True):
        assert torch.equal(a.features, b.features) and torch.equal(a.feature_lengths, b.feature_lengths)
    # what the step receives is a copy: changing it leaves what memory holds
    from_memory[0].features.zero_()
    again = next(iter(batches.data_loader(samples, 1, settings, train=True, epoch=2, memory=memory)))
    assert torch.equal(again.features, computed_then[0].features)


def test_features_in_memory_stop_at_their_budget_and_skip_changing_audio(tmp_path):
    samples = nine_samples(tmp_path)
    one = next(iter(batches.data_loader(samples, 1, LoaderSettings(data_workers=0), train=False))).features[0]
    memory = FeaturesInMemory(budget=2 * one.numpy().nbytes)
    list(batches.data_loader(samples, 1, LoaderSettings(data_workers=0), train=True, memory=memory))
    assert len(memory.entries) == 2 and memory.used <= memory.budget
    # not all held: the next epoch computes the rest in a worker, as before
    assert batches.data_loader(samples, 1, LoaderSettings(data_workers=1), train=True, memory=memory).num_workers == 1

    # augmentations before the features make them differ each epoch: none are kept, none are served
    augmented = LoaderSettings(data_workers=0, augmentations=tuple(parse_augmentations(["volume"])), epochs=2)
    empty = FeaturesInMemory(budget=10**9)
    list(batches.data_loader(samples, 1, augmented, train=True, memory=empty))
    assert empty.entries == {}
