import os
import shutil

import numpy as np
import torch
from cli import run

from coqui_stt_training import data, train
from coqui_stt_training.alphabet import load_alphabet
from coqui_stt_training.config import Config
from coqui_stt_training.data import load_data_set
from coqui_stt_training.feature_cache import FeatureCache

ROOT = os.path.join(os.path.dirname(__file__), "..")
SMOKE = os.path.join(ROOT, "data", "smoke_test")
ALPHABET = os.path.join(ROOT, "data", "alphabet.txt")


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


def one_batch(samples, config):
    return next(iter(data.data_loader(samples, 3, config, train=False)))


def counting_computes(monkeypatch):
    computed = []
    original = data.Collate.compute

    def compute(self, samples):
        computed.extend(s.wav_filename for s in samples)
        return original(self, samples)

    monkeypatch.setattr(data.Collate, "compute", compute)
    return computed


def test_cached_features_are_the_computed_ones_and_are_reused(tmp_path, monkeypatch):
    csv_path, cache = samples_in(tmp_path), str(tmp_path / "cache")
    computed = counting_computes(monkeypatch)
    plain = Config(data_workers=0)
    cached = Config(data_workers=0, feature_cache=cache)
    samples = load_data_set([csv_path], load_alphabet(ALPHABET), plain, "dev")
    reference = one_batch(samples, plain)
    first, second = one_batch(samples, cached), one_batch(samples, cached)
    assert len(computed) == 3 + 3 + 0  # without the cache, filling it, then all from it
    for batch in (first, second):
        assert torch.equal(batch.features, reference.features)
        assert torch.equal(batch.feature_lengths, reference.feature_lengths)

    # other feature settings use another cache; an edited audio file is computed again
    one_batch(samples, Config(data_workers=0, feature_cache=cache, feature_win_step=10))
    assert len(computed) == 9 and len(os.listdir(cache)) == 2
    os.utime(tmp_path / "LDC93S1.flac", ns=(1, 1))
    one_batch(samples, cached)
    assert computed[-1] == "LDC93S1.flac" and len(computed) == 10
    # a damaged cache file is recomputed, not trusted (the entry in use: the edited file's old one is not)
    entry = FeatureCache(cache, cached.audio_sample_rate, cached.feature_win_len, cached.feature_win_step).path(
        str(tmp_path / "LDC93S1.wav")
    )
    assert os.path.isfile(entry)
    open(entry, "wb").write(b"\x93NUMPY garbage")
    again = one_batch(samples, cached)
    assert len(computed) == 11 and torch.equal(again.features, reference.features)


def test_cache_for_epochs_starts_a_new_generation(tmp_path, monkeypatch):
    csv_path, cache = samples_in(tmp_path), str(tmp_path / "cache")
    computed = counting_computes(monkeypatch)
    config = Config(data_workers=0, feature_cache=cache, cache_for_epochs=2)
    samples = load_data_set([csv_path], load_alphabet(ALPHABET), config, "train")
    for epoch in range(4):
        list(data.data_loader(samples, 3, config, train=True, epoch=epoch))
    assert len(computed) == 6  # epochs 0 and 2 compute, 1 and 3 reuse


def test_training_with_the_cache_and_a_worker_gives_the_same_losses(tmp_path, capsys):
    csv_path = samples_in(tmp_path)
    base = [
        "--alphabet_config_path",
        ALPHABET,
        "--n_hidden",
        "24",
        "--show_progressbar",
        "false",
        "--train_files",
        csv_path,
        "--dev_files",
        csv_path,
        "--epochs",
        "3",
        "--train_batch_size",
        "2",
    ]
    logs = []
    for extra in (["--data_workers", "0"], ["--data_workers", "1", "--feature_cache", str(tmp_path / "cache")]):
        status, log = run(train.main, base + extra + ["--checkpoint_dir", str(tmp_path / extra[1])], capsys)
        assert status == 0, log
        logs.append([line.split(" - loss: ")[1] for line in log.splitlines() if " - loss: " in line])
    assert len(logs[0]) == 6 and logs[0] == logs[1]
    assert (
        len(
            [
                f
                for d in os.listdir(tmp_path / "cache")
                for f in os.listdir(tmp_path / "cache" / d)
                if f.endswith(".npy")
            ]
        )
        == 3
    )
    assert np.isfinite([float(x) for x in logs[0]]).all()
