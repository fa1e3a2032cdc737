import math
import os

import numpy as np
import pytest
import torch

from coqui_stt_training.data import audio
from coqui_stt_training.feeding.batches import pad_features
from coqui_stt_training.model.features import FeatureSettings, context_windows, mel_filterbank, mfcc
from tests.helpers import FIXTURES, LDC_WAV, SMOKE

REFERENCE = os.path.join(FIXTURES, "ldc93s1-h100-e20")


def spec_mfcc(samples: np.ndarray, rate: int) -> np.ndarray:
    """TensorFlow's AudioSpectrogram and Mfcc as Coqui calls them, written out plainly, frame by frame and
    channel by channel, in float64."""
    window, stride = rate * 32 // 1000, rate * 20 // 1000
    fft = 2 ** math.ceil(math.log2(window))
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / window) for i in range(window)])
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)
    lower, upper = mel(20.0), mel(rate / 2)
    centres = [lower + (i + 1) * (upper - lower) / 41 for i in range(41)]
    hz_per_bin = 0.5 * rate / (fft // 2)
    bins = range(int(1.5 + 20.0 / hz_per_bin), int((rate / 2) / hz_per_bin) + 1)
    out = []
    for start in range(0, len(samples) - window + 1, stride):
        power = np.abs(np.fft.rfft(samples[start : start + window] * hann, fft)) ** 2
        magnitude = np.sqrt(power.astype(np.float32).astype(np.float64))
        channels = np.zeros(40)
        for c in range(40):
            left = centres[c - 1] if c > 0 else lower
            for b in bins:
                m = mel(b * hz_per_bin)
                if left < m <= centres[c]:
                    channels[c] += magnitude[b] * (m - left) / (centres[c] - left)
                elif centres[c] < m <= centres[c + 1]:
                    channels[c] += magnitude[b] * (centres[c + 1] - m) / (centres[c + 1] - centres[c])
        logs = np.log(np.maximum(channels, 1e-12))
        out.append(
            [
                math.sqrt(2 / 40) * sum(logs[j] * math.cos(math.pi * k * (j + 0.5) / 40) for j in range(40))
                for k in range(26)
            ]
        )
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("name,rate", [("LDC93S1.wav", 16000), ("LDC93S1_pcms16le_1_8000.wav", 8000)])
def test_mfcc_matches_the_spec_written_out(name, rate):
    samples = audio.load_audio(os.path.join(SMOKE, name), rate)
    ours = mfcc(samples, FeatureSettings(rate))
    expected = spec_mfcc(samples, rate)
    assert ours.shape == (145, 26)
    assert expected.shape == (145, 26)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize(
    "reference,index,name",
    [
        ("reference_16k.npz", 0, "LDC93S1.wav"),
        ("reference_16k.npz", 1, "russian_sample_data/ru.wav"),
        ("reference_8k.npz", 0, "LDC93S1_pcms16le_1_8000.wav"),
    ],
)
def test_audio_and_mfcc_match_tensorflow(reference, index, name):
    ref = np.load(os.path.join(REFERENCE, reference))
    rate = int(ref[f"rate_{index}"])
    samples = audio.load_audio(os.path.join(SMOKE, name), rate)
    np.testing.assert_array_equal(samples, ref[f"audio_{index}"])
    ours = mfcc(samples, FeatureSettings(rate))
    # TF computes in double with a float32 hand-over between its two ops, as we do: float32 rounding apart.
    np.testing.assert_allclose(ours, ref[f"features_{index}"], rtol=1e-5, atol=1e-5)


def test_a_batch_holds_each_signals_own_features_then_zeros():
    long = audio.load_audio(LDC_WAV, 16000)
    short = long[:20000]
    settings = FeatureSettings()
    features, lengths = pad_features([mfcc(long, settings), mfcc(short, settings)])
    n = settings.frames(20000)
    assert lengths.tolist() == [145, n]
    torch.testing.assert_close(features[1, :n], torch.from_numpy(mfcc(short, settings)))
    assert features[1, n:].abs().max() == 0


def test_frame_count_has_no_padding():
    assert FeatureSettings(16000).frames(46797) == 145
    assert FeatureSettings(8000).frames(23399) == 145
    assert FeatureSettings(16000).frames(90664) == 282
    assert FeatureSettings(16000).frames(511) == 0
    assert FeatureSettings(16000).frames(512) == 1
    assert FeatureSettings(16000).frames(832) == 2
    assert mfcc(np.zeros(100, np.float32), FeatureSettings()).shape == (0, 26)


def test_context_windows_are_the_same_in_numpy_and_torch_and_in_coquis_order():
    features = np.random.default_rng(0).standard_normal((2, 30, 26)).astype(np.float32)
    windows = context_windows(features)
    assert windows.shape == (2, 30, 19, 26)
    # window t holds frames t-9 .. t+9, zeros outside the utterance
    np.testing.assert_array_equal(windows[1, 12], features[1, 3:22])
    np.testing.assert_array_equal(windows[0, 0, :9], np.zeros((9, 26)))
    np.testing.assert_array_equal(windows[0, 0, 9:], features[0, :10])
    np.testing.assert_array_equal(context_windows(torch.from_numpy(features)).numpy(), windows)
    assert context_windows(np.zeros((1, 0, 26), np.float32)).shape == (1, 0, 19, 26)


def test_filterbank_excludes_dc_and_splits_each_bin_in_two():
    bank = mel_filterbank(257, 16000, 8000.0)
    assert bank[:2].sum() == 0  # DC and the bin below 20 Hz + 1.5 bins contribute nothing
    inner = bank[2:].sum(axis=1)
    # Between the first and last centre a bin's weights sum to one; at the edges only one share exists.
    assert np.all(inner <= 1 + 1e-12)
    assert np.isclose(np.median(inner), 1.0)
    assert np.count_nonzero(bank, axis=1).max() == 2


def test_resampled_stereo_gives_the_features_of_the_16k_recording():
    # The 44.1 kHz stereo LDC93S1 is the same recording: averaged and resampled, its MFCC must be
    # nearly those of the 16 kHz file (a wrong channel layout or rate would wreck the correlation).
    mono = mfcc(audio.load_audio(LDC_WAV, 16000), FeatureSettings())
    stereo = mfcc(audio.load_audio(os.path.join(SMOKE, "LDC93S1_pcms16le_2_44100.wav"), 16000), FeatureSettings())
    assert stereo.shape == (145, 26)
    assert mono.shape == (145, 26)
    assert np.corrcoef(mono.ravel(), stereo.ravel())[0, 1] > 0.99
    assert np.abs(mono - stereo).mean() < 0.2 * np.abs(mono).mean()
