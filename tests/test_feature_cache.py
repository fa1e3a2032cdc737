import os
import shutil

import numpy as np
import torch

from coqui_stt_training import train
from coqui_stt_training.data.samples import load_data_set
from coqui_stt_training.feeding import batches
from coqui_stt_training.feeding.batches import LoaderSettings
from coqui_stt_training.feeding.feature_cache import FeatureCache
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
