"""transcribe: long files split at silences, .tlog files as Coqui writes them, nothing overwritten."""

import json
import os
import shutil

import numpy as np
import soundfile

from coqui_stt_training import transcribe
from coqui_stt_training.data.audio import load_audio
from coqui_stt_training.decoding.transcription import speech_segments
from tests.helpers import FIXTURES, LDC_WAV, SMOKE

RUSSIAN = os.path.join(FIXTURES, "ru-h100-drop1", "checkpoint")


def two_utterances(path):
    """LDC93S1 twice, a second of the recording's own room noise between them."""
    speech = load_audio(LDC_WAV, 16000)
    audio = np.concatenate([speech, np.tile(speech[:2400], 7), speech])
    soundfile.write(path, audio, 16000, subtype="FLOAT")
    return len(speech) / 16000, len(audio) / 16000


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_speech_is_split_at_the_silence_between_utterances(tmp_path):
    one, total = two_utterances(tmp_path / "two.wav")
    segments = [(a / 16000, b / 16000) for a, b in speech_segments(load_audio(str(tmp_path / "two.wav"), 16000), 16000)]
    assert len(segments) == 2
    (a1, b1), (a2, b2) = segments
    assert a1 == 0
    assert one - 0.1 < b1 < one + 1.05
    assert one < a2 < one + 1.05
    assert b2 == total
    assert b1 <= a2
    assert speech_segments(np.zeros(16000, np.float32), 16000) == []  # digital silence holds no speech


def test_tlog_files_for_a_file_and_a_directory_and_nothing_overwritten(tmp_path, cli):
    two_utterances(tmp_path / "two.wav")
    shutil.copy(os.path.join(SMOKE, "LDC93S1.flac"), tmp_path / "one.flac")
    base = ["--checkpoint_dir", RUSSIAN, "--beam_width", "16"]
    one_file = base + ["--src", str(tmp_path / "two.wav"), "--dst", str(tmp_path / "out.tlog")]
    status, log = cli(transcribe.main, one_file)
    assert status == 0, log
    assert f'[1]: "{tmp_path}/two.wav" -> "{tmp_path}/out.tlog"' in log
    entries = read_json(tmp_path / "out.tlog")
    assert [sorted(e) for e in entries] == [["end", "start", "transcript"]] * 2
    assert entries[0]["start"] == 0
    assert entries[0]["end"] <= entries[1]["start"]
    assert entries[1]["end"] == 6899
    for entry in entries:
        assert isinstance(entry["start"], int)
        assert isinstance(entry["transcript"], str)

    before = read_bytes(tmp_path / "out.tlog")
    status, log = cli(transcribe.main, one_file)
    assert status == 1
    assert f'E Destination file "{tmp_path}/out.tlog" already exists - use --force' in log
    assert read_bytes(tmp_path / "out.tlog") == before
    status, log = cli(transcribe.main, one_file + ["--force", "true"])
    assert status == 0, log

    status, log = cli(transcribe.main, base + ["--src", str(tmp_path)])  # every audio file, .tlog beside it
    assert status == 0, log
    assert {"one.tlog", "two.tlog"} <= set(os.listdir(tmp_path))
    status, log = cli(transcribe.main, base + ["--src", str(tmp_path), "--dst", str(tmp_path / "x.tlog")])
    assert status == 1
    assert "E --dst is for a single --src file" in log


def test_a_dsalign_catalog_names_each_audio_file_and_its_tlog(tmp_path, cli):
    (tmp_path / "audio").mkdir()
    shutil.copy(os.path.join(SMOKE, "LDC93S1.flac"), tmp_path / "audio" / "one.flac")
    two_utterances(tmp_path / "two.wav")
    catalog = tmp_path / "book.catalog"
    # relative paths are the catalog's folder's; an absolute one stays; a missing .tlog folder is made
    entries = [
        {"audio": "audio/one.flac", "tlog": "logs/one.tlog", "text": "ignored"},
        {"audio": str(tmp_path / "two.wav"), "tlog": str(tmp_path / "two.tlog")},
    ]
    catalog.write_text(json.dumps(entries))
    base = ["--checkpoint_dir", RUSSIAN, "--beam_width", "16", "--src", str(catalog)]
    status, log = cli(transcribe.main, base)
    assert status == 0, log
    assert len(read_json(tmp_path / "logs" / "one.tlog")) == 1  # one utterance, and two
    assert len(read_json(tmp_path / "two.tlog")) == 2
    status, log = cli(transcribe.main, base)
    assert status == 1
    assert f'E Destination file "{tmp_path}/logs/one.tlog" already exists - use --force' in log
    status, log = cli(transcribe.main, base + ["--dst", str(tmp_path / "x.tlog")])
    assert status == 1
    assert "E --dst is not supported with a .catalog --src" in log

    before = read_bytes(tmp_path / "two.wav")
    for bad, message in [
        ([{"audio": "two.wav", "tlog": "two.wav"}], f"E {tmp_path}/two.wav is an input of this transcription"),
        ([{"audio": "missing.wav", "tlog": "m.tlog"}], f"E {catalog}: entry 0: audio file {tmp_path}/missing.wav"),
        ([{"audio": "two.wav"}], f'E {catalog}: entry 0 needs "audio" and "tlog" paths'),
        ({"audio": "two.wav"}, f"E {catalog}: a catalog is a JSON list"),
    ]:
        catalog.write_text(json.dumps(bad))
        status, log = cli(transcribe.main, base + ["--force", "true"])
        assert status == 1, log
        assert message in log
    catalog.write_text("[{")
    status, log = cli(transcribe.main, base)
    assert status == 1, log
    assert f"E {catalog}: not a JSON catalog" in log
    assert read_bytes(tmp_path / "two.wav") == before
