import os
import shutil

import numpy as np
import pytest

from coqui_stt_training.audio import AudioError, load_audio, read_audio, resampled_length

SMOKE = os.path.join(os.path.dirname(__file__), "..", "data", "smoke_test")


def test_int16_wav_is_scaled_by_32767():
    samples, rate = read_audio(os.path.join(SMOKE, "LDC93S1.wav"))
    import soundfile
    ints, _ = soundfile.read(os.path.join(SMOKE, "LDC93S1.wav"), dtype="int16")
    assert rate == 16000 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, ints.astype(np.float32) / np.float32(32767))


def test_every_container_decodes_to_the_same_speech():
    reference = load_audio(os.path.join(SMOKE, "LDC93S1.wav"), 16000)
    for name in ("LDC93S1.flac", "LDC93S1.ogg", "LDC93S1.opus", "LDC93S1_pcms16le_2_44100.wav",
                 "LDC93S1_pcms16le_1_8000.wav"):
        samples = load_audio(os.path.join(SMOKE, name), 16000)
        assert abs(len(samples) - len(reference)) <= 1, name
        n = min(len(samples), len(reference))
        # Lossy codecs and resampling change samples, not the signal: strongly correlated with the original.
        # Opus may be delayed by its pre-skip, so compare the best alignment within 20 ms.
        best = max(np.corrcoef(samples[max(0, s):n + min(0, s)], reference[max(0, -s):n - max(0, s)])[0, 1]
                   for s in range(-320, 321, 4))
        assert best > 0.9, (name, best)


def test_stereo_is_averaged_and_resampled():
    samples = load_audio(os.path.join(SMOKE, "LDC93S1_pcms16le_2_44100.wav"), 16000)
    assert len(samples) == resampled_length(128985, 44100, 16000) == 46797


def test_bad_audio_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError, match="unreadable audio .*broken.wav"):
        read_audio(str(broken))
    import soundfile
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty audio .*empty.wav"):
        read_audio(str(empty))
