"""Coqui's Sample DataBase files: the bytes data_set_tool writes (checked field by field against Coqui's
layout, with a parser of the test's own), reading them anywhere a CSV is accepted, and Coqui's CI jobs on
SDB sources (bin/run-ci-ldc93s1_new_sdb.sh, _new_sdb_csv.sh, _checkpoint_sdb.sh) with our commands."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from coqui_stt_training import data_set_tool, train
from coqui_stt_training.data.audio import read_audio
from coqui_stt_training.data.samples import read_sample_audio, read_source

from .helpers import ALPHABET, LDC, LDC_SENTENCE, LDC_WAV, SMOKE, digest, run

SCORER = os.path.join(SMOKE, "pruned_lm.scorer")


@pytest.fixture(scope="module")
def ldc_sdb(tmp_path_factory) -> str:
    """data_set_tool --sources ldc93s1.csv --target ldc93s1.sdb, as Coqui's CI jobs make it."""
    target = str(tmp_path_factory.mktemp("sdb") / "ldc93s1.sdb")
    data_set_tool.main(["--sources", LDC, "--target", target])
    return target


def parse_sdb(data: bytes) -> tuple[dict, list[tuple[bytes, str]]]:
    """Coqui's layout, spec §6.2: magic, metadata, sample section, trailing index; big-endian throughout."""
    assert data[:8] == b"SAMPLEDB"
    (meta_size,) = struct.unpack(">q", data[8:16])
    meta = json.loads(data[16 : 16 + meta_size])
    section = 16 + meta_size
    section_size, count = struct.unpack(">qq", data[section : section + 16])
    index = section + 8 + section_size
    index_size, index_count = struct.unpack(">qq", data[index : index + 16])
    assert (index_count, index_size, index + 8 + index_size) == (count, 8 + 8 * count, len(data))
    offsets = struct.unpack(f">{count}q", data[index + 16 :])
    samples, at = [], section + 16
    for offset in offsets:
        assert offset == at  # entries back to back, in order
        (entry_size,) = struct.unpack(">i", data[at : at + 4])
        (audio_size,) = struct.unpack(">i", data[at + 4 : at + 8])
        audio = data[at + 8 : at + 8 + audio_size]
        (text_size,) = struct.unpack(">i", data[at + 8 + audio_size : at + 12 + audio_size])
        text = data[at + 12 + audio_size : at + 12 + audio_size + text_size].decode()
        assert entry_size == 8 + audio_size + text_size
        samples.append((audio, text))
        at += 4 + entry_size
    assert at == index
    return meta, samples


def test_an_opus_sdb_is_coquis_layout_and_reads_back_within_opus_loss(ldc_sdb):
    with open(ldc_sdb, "rb") as f:
        meta, samples = parse_sdb(f.read())
    assert meta == {"schema": [{"content": "speech", "mime-type": "application/vnd.mozilla.opus"},
                               {"content": "transcript", "mime-type": "text/plain"}]}  # fmt: skip
    [(opus, transcript)] = samples
    assert transcript == LDC_SENTENCE
    original, rate = read_audio(LDC_WAV)
    pcm_bytes, opus_rate, channels, width = struct.unpack(">IIBB", opus[:10])
    assert (pcm_bytes, opus_rate, channels, width) == (2 * len(original), 16000, 1, 2)
    packets, at = [], 10
    while at < len(opus):
        (size,) = struct.unpack(">H", opus[at : at + 2])
        packets.append(opus[at + 2 : at + 2 + size])
        at += 2 + size
    assert at == len(opus)
    assert len(packets) == -(-len(original) // 960)  # one packet per 60 ms frame, the last zero-padded
    assert all(0 < len(p) < 1500 for p in packets)
    [sample] = read_source(ldc_sdb)
    assert (sample.wav_filename, sample.transcript) == (f"{ldc_sdb}:0", LDC_SENTENCE)
    decoded, decoded_rate = read_sample_audio(sample)
    assert (len(decoded), decoded_rate) == (len(original), rate)
    delay = max(range(400), key=lambda d: float(np.dot(original[: len(original) - d], decoded[d:])))
    error = original[: len(original) - delay] - decoded[delay:]
    snr = 10 * np.log10(np.sum(original[: len(original) - delay] ** 2) / np.sum(error**2))
    print(f"Opus at 16 kbit/s: SNR {snr:.1f} dB after the codec's {delay}-sample delay")
    assert 90 <= delay <= 120  # Opus's 6.5 ms look-ahead, which Coqui's container keeps too
    assert snr > 8


def test_a_wav_sdb_holds_the_audio_exactly_and_converts_back_to_csv(tmp_path, ldc_sdb, capsys):
    wav_sdb = str(tmp_path / "wav.sdb")
    assert run(data_set_tool.main, ["--sources", LDC, "--target", wav_sdb, "--audio_type", "wav"], capsys)[0] == 0
    [sample] = read_source(wav_sdb)
    assert np.array_equal(read_sample_audio(sample)[0], read_audio(LDC_WAV)[0])
    target = str(tmp_path / "both.csv")
    status, out = run(data_set_tool.main, ["--sources", wav_sdb, ldc_sdb, "--target", target], capsys)
    assert status == 0, out
    rows = [s.wav_filename for s in read_source(target)]
    assert rows == ["both/sample00000000.wav", "both/sample00000001.wav"]
    assert np.array_equal(read_audio(str(tmp_path / "both" / "sample00000000.wav"))[0], read_audio(LDC_WAV)[0])
    before = digest(tmp_path)
    status, out = run(data_set_tool.main, ["--sources", LDC, "--target", target], capsys)
    assert (
        status == 1
        and out.strip().splitlines()[-1] == f"E --target {target}: {target} exists; data_set_tool never overwrites"
    )
    assert digest(tmp_path) == before


def test_run_ci_ldc93s1_new_sdb(tmp_path, ldc_sdb, capsys):
    argv = ["--alphabet_config_path", ALPHABET, "--show_progressbar", "false", "--early_stop", "false",
            "--train_files", ldc_sdb, "--train_batch_size", "1", "--dev_files", ldc_sdb, "--dev_batch_size", "1",
            "--test_files", ldc_sdb, "--test_batch_size", "1", "--n_hidden", "100", "--epochs", "220",
            "--max_to_keep", "1", "--checkpoint_dir", str(tmp_path / "ckpt_sdb"), "--learning_rate", "0.001",
            "--dropout_rate", "0.05", "--export_dir", str(tmp_path / "train_sdb"), "--scorer_path", SCORER,
            "--audio_sample_rate", "16000"]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert f"Test on {ldc_sdb} - WER: 0.000000" in out, out[-3000:]
    assert os.path.exists(tmp_path / "train_sdb" / "output_graph.tflite")

    # bin/run-ci-ldc93s1_checkpoint_sdb.sh: one more epoch resumes from that checkpoint
    resume = [a for a in argv[: argv.index("--export_dir")]] + ["--scorer_path", SCORER]
    resume[resume.index("--epochs") + 1] = "1"
    status, out = run(train.main, resume, capsys)
    assert status == 0, out[-3000:]
    assert "Loading best validating checkpoint from" in out


def test_run_ci_ldc93s1_new_sdb_csv(tmp_path, ldc_sdb, capsys):
    argv = ["--alphabet_config_path", ALPHABET, "--show_progressbar", "false", "--early_stop", "false",
            "--train_files", ldc_sdb, LDC, "--train_batch_size", "1", "--feature_cache", str(tmp_path / "cache"),
            "--dev_files", ldc_sdb, LDC, "--dev_batch_size", "1", "--test_files", ldc_sdb, LDC,
            "--test_batch_size", "1", "--n_hidden", "100", "--epochs", "109", "--max_to_keep", "1",
            "--checkpoint_dir", str(tmp_path / "ckpt_sdb_csv"), "--learning_rate", "0.001", "--dropout_rate", "0.05",
            "--export_dir", str(tmp_path / "train_sdb_csv"), "--scorer_path", SCORER,
            "--audio_sample_rate", "16000"]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert "Checking the 2 samples of --train_files" in out
    for source in (ldc_sdb, LDC):
        assert f"Test on {source} - WER:" in out
    assert len(os.listdir(next((tmp_path / "cache").iterdir()))) >= 3  # both samples cached (+ settings)


def test_a_damaged_sdb_names_the_file_and_the_offset(tmp_path, ldc_sdb, capsys):
    with open(ldc_sdb, "rb") as f:
        data = f.read()
    truncated = tmp_path / "truncated.sdb"
    truncated.write_bytes(data[: len(data) - 40])
    status, out = run(train.main, ["--alphabet_config_path", ALPHABET, "--train_files", str(truncated),
                                   "--checkpoint_dir", str(tmp_path / "ckpt")], capsys)  # fmt: skip
    assert status == 1
    [line] = out.strip().splitlines()[-1:]
    assert line.startswith(f"E {truncated}, offset ") and "truncated" in line, out
    assert not (tmp_path / "ckpt").exists()
    (tmp_path / "not.sdb").write_bytes(b"wav_filename,transcript\n")
    status, out = run(train.main, ["--alphabet_config_path", ALPHABET, "--train_files", str(tmp_path / "not.sdb"),
                                   "--checkpoint_dir", str(tmp_path / "ckpt")], capsys)  # fmt: skip
    assert (
        out.strip().splitlines()[-1]
        == f"E {tmp_path / 'not.sdb'}: not a Sample Database (it does not start with SAMPLEDB)"
    )
