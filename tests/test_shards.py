"""WebDataset shards as a data source: Coqui's CI job on ldc93s1_wds.tar (bin/run-ci-ldc93s1-webdataset.sh,
with our command), globs, and damaged or incomplete shards named with the member."""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import shutil
import tarfile
import threading

import pytest
import soundfile as sf

from coqui_stt_training import train
from coqui_stt_training.data import shards
from coqui_stt_training.data.samples import load_data_set, read_sample_audio, read_source
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings
from coqui_stt_training.system.distributed import World

from .helpers import ALPHABET, LDC_SENTENCE, LDC_WAV, SMOKE, digest, run

SHARD = os.path.join(SMOKE, "ldc93s1_wds.tar")


def test_run_ci_ldc93s1_webdataset(tmp_path, capsys):
    """As Coqui's CI runs the script: its own flags (200 epochs), then CI's `--epochs 1`, which wins."""
    argv = ["--alphabet_config_path", ALPHABET, "--show_progressbar", "false", "--train_files", SHARD,
            "--test_files", SHARD, "--train_batch_size", "1", "--test_batch_size", "1", "--n_hidden", "100",
            "--epochs", "200", "--checkpoint_dir", str(tmp_path / "ldc93s1"), "--epochs", "1"]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert "Checking the 3 samples of --train_files" in out and "Finished training epoch 0" in out
    assert f"Test on {SHARD} - WER:" in out, out[-3000:]
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
    status, out = run(train.main, [*args, "s3://bucket/shard-000.tar"], capsys)
    assert out.strip().splitlines()[-1] == (
        "E s3://bucket/shard-000.tar: read s3:// shards through a command: 'pipe:aws s3 cp s3://bucket/shard-000.tar -'"
    )
    assert status == 1 and digest(tmp_path) == before and not (tmp_path / "ckpt").exists()


def test_pipe_shards_train_from_the_command_and_stop_where_it_dies(tmp_path, capsys):
    """`pipe:COMMAND` as webdataset users write it: trained on (the command run again for each reading, its
    audio never stored; the features held in memory after the first epoch), and a command that fails or stops
    short named with its status, the shard and the member."""
    runs = tmp_path / "runs.log"
    piped = f"pipe:echo run >> {runs}; cat {SHARD}"
    samples = read_source(piped)
    assert [s.wav_filename for s in samples] == [s.wav_filename for s in read_source(SHARD)]
    local = {s.wav_filename: read_sample_audio(s)[0] for s in read_source(SHARD)}
    for s in [*samples, *samples[::-1]]:  # forward (skipping through the output), then back (run again)
        assert (read_sample_audio(s)[0] == local[s.wav_filename]).all()
    assert runs.read_text().count("run") == 1 + 1 + 3  # the index, the forward reads, each step back
    runs.unlink()
    argv = ["--alphabet_config_path", ALPHABET, "--train_files", piped, "--dev_files", piped,
            "--n_hidden", "16", "--epochs", "2", "--checkpoint_dir", str(tmp_path / "ckpt")]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert "Checking the 3 samples of --train_files" in out and "ckpt/best_dev-6" in out, out[-3000:]
    # two indexes, then one reading: from there on every epoch's features (the dev set holds the same samples)
    # come from the training process's memory (feeding/feature_cache.py FeaturesInMemory)
    assert runs.read_text().count("run") == 2 + 1
    args = [*argv[:2], "--checkpoint_dir", str(tmp_path / "c2"), "--train_files"]
    status, out = run(train.main, [*args, f"pipe:head -c 30000 {SHARD}"], capsys)
    last = out.strip().splitlines()[-1]
    assert status == 1 and last.startswith(f"E pipe:head -c 30000 {SHARD}: damaged or truncated after member "), out
    failing = "pipe:cat /no/such.tar"
    status, out = run(train.main, [*args, failing], capsys)
    last = out.strip().splitlines()[-1]
    assert status == 1 and last.startswith(f"E {failing}: the command failed (exit status 1: cat: /no/such.tar"), out
    assert not (tmp_path / "c2").exists()  # found before training starts
    # a command that gives the whole shard to the index pass, and stops short when training reads it
    once = tmp_path / "given"
    flaky = f"pipe:if [ -e {once} ]; then head -c 20000 {SHARD}; else touch {once}; cat {SHARD}; fi"
    status, out = run(train.main, [*args, flaky], capsys)
    last = out.strip().splitlines()[-1]
    assert status == 1 and last.startswith(f"E {flaky}, sample webdataset/LDC93S1_"), out
    assert "the command's output ended at byte 20000" in last, out


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file server, answering byte-range requests as web servers and object stores do."""

    def log_message(self, *args):
        pass

    def send_head(self):
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not match:
            return super().send_head()
        path = self.translate_path(self.path)
        with open(path, "rb") as f:
            data = f.read()
        start, end = int(match.group(1)), min(int(match.group(2)), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start : end + 1])


@pytest.fixture
def server(tmp_path):
    """http://127.0.0.1:PORT/ serving tmp_path/www, and a count of the bytes it sent."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(RangeHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()


def test_shards_at_urls_train_without_a_local_copy(tmp_path, server, capsys):
    url, www = server
    for n in range(2):
        shutil.copy(SHARD, www / f"train-{n:03d}.tar")
    remote = f"{url}/train-{{000..001}}.tar"
    samples = read_source(remote)
    assert len(samples) == 6 and samples[0].audio_path == f"{url}/train-000.tar"
    assert samples[0].known_length is not None  # the index pass saw the bytes: no request for the header
    local = {s.wav_filename: read_sample_audio(s)[0] for s in read_source(SHARD)}
    for s in samples[:3]:
        assert (read_sample_audio(s)[0] == local[s.wav_filename]).all()  # read by ranges, the same audio
    argv = ["--alphabet_config_path", ALPHABET, "--train_files", remote, "--dev_files", f"{url}/train-000.tar",
            "--n_hidden", "16", "--epochs", "2", "--checkpoint_dir", str(tmp_path / "ckpt"),
            "--feature_cache", str(tmp_path / "cache")]  # fmt: skip
    status, out = run(train.main, argv, capsys)
    assert status == 0, out[-3000:]
    assert "Checking the 6 samples of --train_files" in out
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tar")]  # nothing downloaded beside
    status, out = run(train.main, [*argv[:-4], "--checkpoint_dir", str(tmp_path / "c2"), "--train_files",
                                   f"{url}/missing.tar"], capsys)  # fmt: skip
    assert status == 1 and out.strip().splitlines()[-1].startswith(f"E {url}/missing.tar: cannot read"), out


def test_each_process_reads_only_its_own_samples_audio(tmp_path, server, monkeypatch):
    """Under torchrun each rank takes its slice of every global batch; the audio of the others' samples is
    never requested (here: shards at a URL, every byte-range request recorded)."""
    url, www = server
    for n in range(2):
        shutil.copy(SHARD, www / f"train-{n:03d}.tar")
    samples = load_data_set([f"{url}/train-{{000..001}}.tar"], load_alphabet(ALPHABET), FeatureSettings(), "train")
    requested: list[tuple[str, int]] = []
    read_bytes = shards.read_bytes

    def recorded(path, chunk, name=""):
        requested.append((path, chunk[0]))
        return read_bytes(path, chunk, name)

    monkeypatch.setattr(shards, "read_bytes", recorded)
    read = {}
    for rank in range(2):
        requested.clear()
        settings = LoaderSettings(data_workers=0)
        for batch in data_loader(samples, 1, settings, train=True, world=World(rank=rank, size=2)):
            assert len(batch.samples) == 1
        read[rank] = set(requested)
    everything = {(s.audio_path, s.chunk[0]) for s in samples}
    assert len(read[0]) == len(read[1]) == 3 and read[0] | read[1] == everything and not read[0] & read[1]
