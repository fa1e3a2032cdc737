"""--augment: Coqui's augmentation CI jobs (bin/run-ci-sample_augmentations.sh through our play tool,
bin/run-ci-graph_augmentations.sh through train), the language's values and errors, each augmentation's
properties, and exact resume with augmentation on."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from coqui_stt_training import play, train
from coqui_stt_training.data.samples import ctc_min_frames, load_data_set
from coqui_stt_training.feeding.augment import PARAMETERS, AugmentationError, parse_augmentation, parse_augmentations
from coqui_stt_training.feeding.augment_batch import augment_features
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings

from .helpers import ALPHABET, LDC, LDC_WAV, repeated_csv, run
from .test_run_state import command, final_tensors, losses, signal_at

SAMPLE_CHECKS = ["reverb[delay=50.0,decay=2.0]", "resample[rate=4000]", "codec[bitrate=4000]", "volume"]


def played(argv, capfdbinary) -> bytes:
    play.main([*argv, "--pipe", "true", "--quiet", "true"])
    return capfdbinary.readouterr().out


def test_run_ci_sample_augmentations(tmp_path, capfdbinary):
    """Each sample-domain augmentation changes LDC93S1 but keeps its length, rate and channels; the same
    seed gives the same bytes (Coqui's job compares with bin/compare_samples.py --if-differ)."""
    samples, rate = sf.read(LDC_WAV, dtype="int16")
    reversed_wav = tmp_path / "LDC93S1_reversed.wav"
    sf.write(reversed_wav, samples[::-1], rate, subtype="PCM_16")
    overlay_csv = tmp_path / "LDC93S1_overlay.csv"
    overlay_csv.write_text(f"wav_filename\n{reversed_wav}")  # as Coqui's job writes it: no transcript column
    original = sf.read(LDC_WAV, dtype="int16")[0]
    for spec in [f"overlay[source={overlay_csv},snr=20]", *SAMPLE_CHECKS]:
        wav = played(["--source", LDC_WAV, "--augment", spec], capfdbinary)
        info = sf.info(io.BytesIO(wav))
        assert (info.frames, info.samplerate, info.channels) == (len(original), rate, 1), spec
        augmented = sf.read(io.BytesIO(wav), dtype="int16")[0]
        assert not np.array_equal(augmented, original), spec
        assert played(["--source", LDC_WAV, "--augment", spec], capfdbinary) == wav, spec
        other_seed = played(["--source", LDC_WAV, "--augment", spec, "--random_seed", "7"], capfdbinary)
        if "~" in spec:  # (a fixed value draws nothing: only ranges depend on the seed)
            assert other_seed != wav


def test_play_writes_numbered_files_and_never_over_one(tmp_path, capsys):
    out = tmp_path / "out"
    status, log = run(play.main, ["--sources", LDC, "--augment", "volume[dbfs=-20~5]", "tempo", "--number", "3",
                                  "--wav", str(out)], capsys)  # fmt: skip
    assert status == 0, log
    assert sorted(os.listdir(out)) == ["0000-LDC93S1.wav", "0001-LDC93S1.wav", "0002-LDC93S1.wav"]
    assert "Not simulated here (they change spectrograms or features, not audio): tempo" in log
    first = (out / "0000-LDC93S1.wav").read_bytes()
    assert first != (out / "0001-LDC93S1.wav").read_bytes()  # each sample draws its own level
    status, log = run(play.main, ["--sources", LDC, "--augment", "volume", "--number", "1", "--wav", str(out)],
                      capsys)  # fmt: skip
    last = log.strip().splitlines()[-1]
    assert status == 1 and last == f"E {out / '0000-LDC93S1.wav'}: exists; give another --wav folder"
    assert (out / "0000-LDC93S1.wav").read_bytes() == first


def test_run_ci_graph_augmentations(tmp_path, capsys):
    argv = ["--alphabet_config_path", ALPHABET, "--show_progressbar", "false", "--early_stop", "false",
            "--train_files", LDC, "--train_batch_size", "1", "--scorer", "", "--n_hidden", "100",
            "--epochs", "1"]  # fmt: skip
    augment = ["--augment", "dropout", "pitch", "tempo", "warp", "time_mask", "frequency_mask", "add", "multiply"]
    status, out = run(train.main, [*argv, *augment, "--checkpoint_dir", str(tmp_path / "a")], capsys)
    assert status == 0, out[-3000:]
    augmented = losses(out, "training")
    status, out = run(train.main, [*argv, "--checkpoint_dir", str(tmp_path / "b")], capsys)
    assert status == 0 and augmented.keys() == {0} and augmented != losses(out, "training")


# ---- the language ---------------------------------------------------------------------------------


def test_values_follow_the_clock_within_their_bounds():
    rng = np.random.default_rng(0)
    a = parse_augmentation("tempo[factor=1.5:0.5~0.1]")
    for clock in np.linspace(0, 1, 21):
        centre = 1.5 - clock
        for _ in range(20):
            assert centre - 0.1 <= a.pick("factor", clock, rng) <= centre + 0.1
    assert parse_augmentation("tempo[factor=1.5:0.5]").pick("factor", 0.0, rng) == 1.5
    assert parse_augmentation("tempo[factor=1.5:0.5]").pick("factor", 1.0, rng) == 0.5
    assert parse_augmentation("tempo[factor=1.5:0.5]").pick("factor", 2.0, rng) == 0.5  # the clock is clamped
    n = parse_augmentation("frequency_mask[n=2:6~1]").values["n"]
    drawn = {n.pick(c, rng) for c in np.linspace(0, 1, 11) for _ in range(30)}
    assert drawn <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0} and all(v == int(v) for v in drawn)
    assert n.bounds == (1.0, 7.0)
    assert [a.name for a in parse_augmentations(["add", "volume", "tempo", "dropout[domain=signal]", "pitch"])] == [
        "volume",
        "dropout",
        "tempo",
        "pitch",
        "add",
    ]  # by domain (sample, signal, spectrogram, features), then in command-line order


@pytest.mark.parametrize(
    "spec, message",
    [
        ("revereb", "Unknown augmentation: Revereb (--augment revereb)"),
        ("tempo[fctor=2]", "--augment tempo[fctor=2]: tempo has no parameter 'fctor' (it takes p, factor, max_time)"),
        ("tempo[factor=fast]",
         "--augment tempo[factor=fast]: factor=fast is not a number or a range (v, v~r, a:b or a:b~r)"),
        ("tempo[p=2]", "--augment tempo[p=2]: p=2 is not a probability (0 to 1)"),
        ("pitch[domain=features]",
         "--augment pitch[domain=features]: pitch has no parameter 'domain' (it takes p, pitch)"),
        ("add[domain=audio]",
         "--augment add[domain=audio]: add runs in the features, signal or spectrogram domain, not 'audio'"),
        ("overlay", "--augment overlay: overlay needs source=..."),
        ("tempo[factor=-1]", "--augment tempo[factor=-1]: factor -1, outside (0, 10]"),
        ("tempo[factor=0]", "--augment tempo[factor=0]: factor 0, outside (0, 10]"),
        ("tempo[factor=1.5~1.6]", "--augment tempo[factor=1.5~1.6]: factor ranges from -0.1 to 3.1, outside "
                                  "(0, 10]"),
        ("time_mask[n=1000000,size=1000000]",
         "--augment time_mask[n=1000000,size=1000000]: n 1e+06, outside [0, 1000]"),
        ("time_mask[n=3,size=1000000]", "--augment time_mask[n=3,size=1000000]: size 1e+06, outside [0, 60000]"),
        ("dropout[rate=2]", "--augment dropout[rate=2]: rate 2, outside [0, 1]"),
        ("Tempo", "--augment Tempo: not name[key=value,...]"),
    ],
)  # fmt: skip
def test_bad_augment_lines_are_one_line_naming_what_is_wrong(spec, message, tmp_path, capsys):
    with pytest.raises(AugmentationError) as e:
        parse_augmentation(spec)
    assert str(e.value) == message
    argv = ["--alphabet_config_path", ALPHABET, "--train_files", LDC, "--checkpoint_dir", str(tmp_path / "c"),
            "--augment", spec]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 1 and out.strip().splitlines()[-1] == f"E {message}" and not (tmp_path / "c").exists()


# ---- each augmentation's properties ---------------------------------------------------------------

EVERY = {
    "overlay": "overlay[source={noise}]", "codec": "codec", "reverb": "reverb", "resample": "resample",
    "volume": "volume[dbfs=-6]", "pitch": "pitch", "tempo": "tempo", "warp": "warp[warp_t=0.3]",
    "frequency_mask": "frequency_mask", "time_mask": "time_mask", "dropout": "dropout", "add": "add",
    "multiply": "multiply",
}  # fmt: skip


@pytest.fixture(scope="module")
def ldc_samples():
    return load_data_set([LDC], load_alphabet(ALPHABET), FeatureSettings(), "train")


def batch_features(samples, specs, seed=4568, epoch=0):
    settings = LoaderSettings(data_workers=0, augmentations=tuple(parse_augmentations(specs)), epochs=2,
                              random_seed=seed)  # fmt: skip
    [batch] = list(data_loader(samples, 1, settings, train=True, epoch=epoch))
    if batch.utterances is None:
        return batch.features, batch.feature_lengths
    assert batch.seeds is not None
    return augment_features(batch.utterances, batch.seeds, batch.clock, list(settings.augmentations),
                            settings.features, torch.device("cpu"))  # fmt: skip


@pytest.mark.parametrize("name", sorted(EVERY))
def test_each_augmentation_at_p_0_leaves_the_batch_bit_for_bit_and_at_p_1_changes_it(name, ldc_samples, tmp_path):
    assert set(EVERY) == set(PARAMETERS)
    noise = tmp_path / "noise.wav"
    sf.write(noise, np.random.default_rng(1).normal(0, 0.1, 16000), 16000, subtype="PCM_16")
    spec = EVERY[name].format(noise=noise)
    plain, plain_lengths = batch_features(ldc_samples, [])
    off = spec.replace("[", "[p=0,") if "[" in spec else spec + "[p=0]"
    features, lengths = batch_features(ldc_samples, [off])
    assert torch.equal(features, plain) and torch.equal(lengths, plain_lengths)
    on, _ = batch_features(ldc_samples, [spec])
    assert on.shape != plain.shape or not torch.equal(on, plain)
    again, _ = batch_features(ldc_samples, [spec])
    assert torch.equal(again, on)  # the same seed, the same batch
    if name not in ("codec", "volume", "tempo", "resample", "reverb"):  # (no range by default: nothing to draw)
        assert not torch.equal(batch_features(ldc_samples, [spec], seed=1)[0], on)


def test_tempo_never_makes_an_utterance_shorter_than_its_transcript_allows(ldc_samples):
    needed = ctc_min_frames(ldc_samples[0].labels)
    plain, lengths = batch_features(ldc_samples, [])
    assert lengths[0] > 2 * needed  # room to squeeze: LDC93S1 has 145 frames; its 52 labels need 53
    for spec in ("tempo[factor=10]", "tempo[factor=1.5~1.4]", "tempo[factor=1,max_time=10]"):
        for seed in range(5):
            features, lengths = batch_features(ldc_samples, [spec], seed=seed)
            assert needed <= int(lengths[0]) == features.shape[1]
    assert batch_features(ldc_samples, ["tempo[factor=10]"])[1][0] == needed
    assert batch_features(ldc_samples, ["tempo[factor=0.5]"])[1][0] == 2 * plain.shape[1]


def test_with_a_feature_cache_only_features_domain_augmentations_keep_it(tmp_path, capsys):
    argv = ["--alphabet_config_path", ALPHABET, "--train_files", LDC, "--n_hidden", "16", "--epochs", "1",
            "--feature_cache", str(tmp_path / "cache")]  # fmt: skip
    status, out = run(train.main, [*argv, "--checkpoint_dir", str(tmp_path / "a"), "--augment", "tempo", "add"], capsys)
    assert status == 0, out[-2000:]
    assert ("--feature_cache is not used for the training set: --augment tempo changes each epoch what the "
            "features are computed from") in out  # fmt: skip
    status, out = run(train.main, [*argv, "--checkpoint_dir", str(tmp_path / "b"), "--augment", "add"], capsys)
    assert status == 0 and "--feature_cache is not used" not in out and os.listdir(tmp_path / "cache")


# ---- exact resume --------------------------------------------------------------------------------

EVERY_DOMAIN = ["volume[p=0.5,dbfs=-10~5]", "dropout[domain=signal,rate=0.02~0.01]", "tempo[factor=1~0.2]",
                "time_mask[p=0.7,n=2:1]", "warp", "add[stddev=0.5:0.1]"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted_augmented(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted_augmented")
    csv_path, ckpt = repeated_csv(tmp), str(tmp / "ckpt")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        train.main([*command(csv_path, ckpt), "--augment", *EVERY_DOMAIN])
    return csv_path, out.getvalue(), final_tensors(ckpt)


@pytest.mark.parametrize("call, stopped_at", [(3, "epoch 0, batch 3"), (10, "epoch 1, batch 5")])
def test_sigterm_resume_is_exact_with_augmentation_in_every_domain(
    call, stopped_at, uninterrupted_augmented, tmp_path, monkeypatch, capsys
):
    csv_path, full_log, full_tensors = uninterrupted_augmented
    ckpt = str(tmp_path / "ckpt")
    argv = [*command(csv_path, ckpt), "--augment", *EVERY_DOMAIN]
    with monkeypatch.context() as patch:
        signal_at(patch, "step", call)
        status, first = run(train.main, argv, capsys)
    assert status == 0 and f"Stopped on SIGTERM at {stopped_at}" in first, first[-2000:]
    status, second = run(train.main, argv, capsys)
    assert status == 0 and "Resuming the interrupted run from" in second, second[-2000:]
    for what in ("training", "validating"):
        assert {**losses(first, what), **losses(second, what)} == losses(full_log, what), what
    assert final_tensors(ckpt) == full_tensors
    status, plain = run(train.main, command(csv_path, str(tmp_path / "plain")), capsys)
    assert losses(plain, "training") != losses(full_log, "training")  # the augmentations did change the run
