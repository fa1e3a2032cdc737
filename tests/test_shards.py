"""WebDataset shards as a data source: Coqui's CI job on ldc93s1_wds.tar (bin/run-ci-ldc93s1-webdataset.sh,
with our command), globs, and damaged or incomplete shards named with the member."""

from __future__ import annotations

import io
import os
import tarfile

import soundfile as sf

from coqui_stt_training import train
from coqui_stt_training.dataset import read_sample_audio, read_source

from .helpers import ALPHABET, LDC_SENTENCE, LDC_WAV, SMOKE, digest, run

SHARD = os.path.join(SMOKE, "ldc93s1_wds.tar")


def test_run_ci_ldc93s1_webdataset(tmp_path, capsys):
    argv = ["--alphabet_config_path", ALPHABET, "--show_progressbar", "false", "--train_files", SHARD,
            "--test_files", SHARD, "--train_batch_size", "1", "--test_batch_size", "1", "--n_hidden", "100",
            "--epochs", "200", "--checkpoint_dir", str(tmp_path / "ldc93s1")]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert f"Test on {SHARD} - WER: 0.000000" in out, out[-3000:]
    for key in ("webdataset/LDC93S1_wav", "webdataset/LDC93S1_ogg", "webdataset/LDC93S1_opus"):
        assert f" - wav: {key}" in out


def test_a_shard_is_read_in_place_in_its_order(tmp_path):
    samples = read_source(SHARD)
    assert [s.wav_filename for s in samples] == [
        "webdataset/LDC93S1_ogg", "webdataset/LDC93S1_opus", "webdataset/LDC93S1_wav"
    ]  # fmt: skip
    assert {s.transcript for s in samples} == {LDC_SENTENCE}
    with open(os.path.join(SMOKE, "webdataset", "LDC93S1_wav.wav"), "rb") as f:
        wav = f.read()  # the member, as Coqui's repository also ships it unpacked
    [as_wav] = [s for s in samples if s.wav_filename.endswith("_wav")]
    with open(SHARD, "rb") as f:
        f.seek(as_wav.chunk[0])
        assert f.read(as_wav.chunk[1]) == wav  # the member's bytes, where they are
    audio, rate = read_sample_audio(as_wav)
    assert (rate, len(audio)) == (sf.info(io.BytesIO(wav)).samplerate, sf.info(io.BytesIO(wav)).frames)
    # a glob of shards, in name order
    for name in ("b.tar", "a.tar"):
        with open(SHARD, "rb") as source, open(tmp_path / name, "wb") as target:
            target.write(source.read())
    assert len(read_source(str(tmp_path / "*.tar"))) == 6


def shard(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_shards_are_one_line_naming_the_shard_and_member(tmp_path, capsys):
    with open(LDC_WAV, "rb") as f:
        wav = f.read()
    incomplete = tmp_path / "incomplete.tar"
    shard(incomplete, {"a.wav": wav, "a.txt": LDC_SENTENCE.encode(), "b.wav": wav})
    args = ["--alphabet_config_path", ALPHABET, "--checkpoint_dir", str(tmp_path / "ckpt"), "--train_files"]
    status, out = run(train.main, [*args, str(incomplete)], capsys)
    assert status == 1
    assert f"    {incomplete}, member b.wav: sample b has audio but no txt member\n" in out, out
    truncated = tmp_path / "truncated.tar"
    with open(SHARD, "rb") as f:
        truncated.write_bytes(f.read()[:30000])
    before = digest(tmp_path)
    status, out = run(train.main, [*args, str(truncated)], capsys)
    assert status == 1
    [line] = out.strip().splitlines()[-1:]
    assert line.startswith(f"E {truncated}") and "member webdataset/LDC93S1_" in line and "truncated" in line, out
    assert digest(tmp_path) == before and not (tmp_path / "ckpt").exists()
    status, out = run(train.main, [*args, "https://example.org/shard-000.tar"], capsys)
    assert status == 1 and "remote WebDataset shards cannot be read in place yet" in out.strip().splitlines()[-1]
