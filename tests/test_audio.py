import os

import numpy as np
import pytest
import soundfile
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coqui_stt_training.data.audio import AudioError, load_audio, read_audio, resampled_length
from tests.helpers import LDC_WAV, SMOKE


def test_int16_wav_is_scaled_by_32767():
    samples, rate = read_audio(LDC_WAV)
    ints, _ = soundfile.read(LDC_WAV, dtype="int16")
    assert rate == 16000
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, ints.astype(np.float32) / np.float32(32767))


def test_every_container_decodes_to_the_same_speech():
    reference = load_audio(LDC_WAV, 16000)
    for name in (
        "LDC93S1.flac",
        "LDC93S1.ogg",
        "LDC93S1.opus",
        "LDC93S1_pcms16le_2_44100.wav",
        "LDC93S1_pcms16le_1_8000.wav",
    ):
        samples = load_audio(os.path.join(SMOKE, name), 16000)
        assert abs(len(samples) - len(reference)) <= 1, name
        n = min(len(samples), len(reference))
        # Lossy codecs and resampling change samples, not the signal: strongly correlated with the original.
        # Opus may be delayed by its pre-skip, so compare the best alignment within 20 ms.
        best = max(
            np.corrcoef(samples[max(0, s) : n + min(0, s)], reference[max(0, -s) : n - max(0, s)])[0, 1]
            for s in range(-320, 321, 4)
        )
        assert best > 0.9, (name, best)


def test_stereo_is_averaged_and_resampled():
    samples = load_audio(os.path.join(SMOKE, "LDC93S1_pcms16le_2_44100.wav"), 16000)
    assert len(samples) == 46797
    assert resampled_length(128985, 44100, 16000) == 46797


def test_channels_are_averaged(tmp_path):
    """Speech on the left, silence on the right: the mean is half the left channel (a reader that took
    either channel alone would give the whole signal or nothing)."""
    left, _ = soundfile.read(LDC_WAV, dtype="int16")
    left = left[:16000] & ~1  # even, so that the mean of the two channels is an exact integer
    path = str(tmp_path / "stereo.wav")
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_16")
    samples, _ = read_audio(path)
    np.testing.assert_allclose(samples, (left // 2).astype(np.float32) / np.float32(32767), rtol=0, atol=1e-7)


def test_bad_audio_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match=r"unreadable audio .*broken\.wav"):
        read_audio(str(broken))
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"empty audio .*empty\.wav"):
        read_audio(str(empty))


# ---- fuzzing: random and damaged files give AudioError or samples, never a crash or a hang ------------


def _bytes_of(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


SOURCES = {
    name: _bytes_of(os.path.join(SMOKE, name))
    for name in ("LDC93S1.wav", "LDC93S1.flac", "LDC93S1.ogg", "LDC93S1.opus")
}


def read_or_refuse(path):
    try:
        samples, rate = read_audio(path)
    except AudioError as e:
        said = str(e)
        assert said.startswith((f"unreadable audio {path}", f"truncated audio {path}: its header promises ")) or (
            said == f"empty audio {path}"
        ), said
        return
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert len(samples) > 0
    assert rate > 0


@settings(max_examples=150, deadline=5000)
@given(content=st.binary(max_size=2000), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".opus"]))
def test_fuzz_audio_reader_random_bytes(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(content)
    read_or_refuse(str(path))


@settings(max_examples=150, deadline=5000)
@given(
    name=st.sampled_from(sorted(SOURCES)),
    cut=st.integers(0, 100),
    damage=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
)
@example(name="LDC93S1.flac", cut=17, damage=[(21, 115)])  # a header claiming 12.9 billion frames (24 GiB)
def test_fuzz_audio_reader_damaged_files(tmp_path_factory, name, cut, damage):
    """Real files with bytes changed near the head (where the headers are) and cut short."""
    data = bytearray(SOURCES[name])
    for position, value in damage:
        data[position % len(data)] = value
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(bytes(data[: max(1, len(data) * cut // 100)]))
    read_or_refuse(str(path))
