"""WebDataset shards (`.tar`) as a data source, as Coqui 1.4 read them (docs/compatibility.md "Data").

Members whose names share a key (the name up to the first dot of its last part: `a/b.c.wav` has key `a/b`)
form one sample: the `txt` member is its transcript, and a member in an audio format (wav, flac, ogg, opus, mp3
and the rest libsndfile reads) its audio. A shard is indexed, never unpacked: the headers are read once, and
each sample's audio is read in place (its offset and size) when its features are computed, so the rest of the
pipeline (the checks, ordering, caching, exact resume, each process's slice) is the one CSVs and SDBs use.
Samples keep the shard's order, as in Coqui.

A shard at an http(s) URL is streamed once to index it (never stored), and each sample's audio is then read
with an HTTP range request: training needs no local copy, and each process reads only its own samples'
audio. Brace ranges name many shards (`https://host/train-{000..099}.tar`).

A `pipe:COMMAND` shard is the command's standard output (`pipe:aws s3 cp s3://bucket/train-000.tar -`, as
webdataset users write it): it is run once to index the shard, and again whenever a sample is wanted that lies
behind what the running command has given; each read skips forward through its output. Samples are read in
the shard's order, so an epoch runs the command once per shard (per data worker). The command must give the
same bytes each time. Compressed shards are refused.
"""

from __future__ import annotations

import glob
import io
import os
import re
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO

import soundfile

from ..system.errors import UserError
from .audio import AUDIO_EXTENSIONS

REMOTE = ("http://", "https://", "s3://", "pipe:")
URL = ("http://", "https://")
PIPE = "pipe:"
STREAMED = (*URL, PIPE)  # read front to back (to index them), not by seeking
TIMEOUT_S = 60
SKIP_BLOCK = 1 << 20
MAX_OPEN_PIPES = 4  # commands kept running per process, for batches that interleave shards


class ShardError(UserError):
    pass


@dataclass
class ShardSample:
    key: str
    audio: tuple[int, int] | None  # (offset, size) of the audio member
    audio_member: str
    transcript: str | None
    length: tuple[int, int] | None = None  # (samples, rate) of the audio, when the index saw its bytes


def is_shard(source: str) -> bool:
    return source.lower().endswith(".tar") or source.startswith(REMOTE)


def shard_paths(source: str) -> list[str]:
    """The shards a source names: a path or URL, a glob (`shards/train-*.tar`), brace ranges (`{000..099}`)."""
    if source.startswith("s3://"):
        raise ShardError(f"{source}: read s3:// shards through a command: 'pipe:aws s3 cp {source} -'")
    if source.startswith(PIPE):
        return [source]  # a command's braces are the shell's
    ranges = re.search(r"\{(\d+)\.\.(\d+)\}", source)
    if ranges:
        low, high = ranges.groups()
        width = len(low) if low.startswith("0") else 0
        return [
            path
            for n in range(int(low), int(high) + 1)
            for path in shard_paths(source[: ranges.start()] + str(n).zfill(width) + source[ranges.end() :])
        ]
    if source.startswith(URL):
        return [source]
    if any(c in source for c in "*?["):
        found = sorted(glob.glob(source))
        if not found:
            raise ShardError(f"{source}: no shard matches")
        return found
    return [source]


def read_shard(path: str) -> list[ShardSample]:
    """The samples of a shard (a local file, or a URL streamed once), in member order."""
    samples: dict[str, ShardSample] = {}
    member = None
    remote = path.startswith(STREAMED)
    try:
        with _open(path) as stream, tarfile.open(fileobj=stream, mode="r|" if remote else "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, name = os.path.split(member.name)
                if "." not in name:
                    continue
                stem, extension = name.split(".", 1)
                key = f"{folder}/{stem}" if folder else stem
                sample = samples.setdefault(key, ShardSample(key, None, "", None))
                if extension == "txt":
                    reader = tar.extractfile(member)
                    assert reader is not None  # a regular file
                    try:
                        sample.transcript = reader.read().decode("utf-8").strip()
                    except UnicodeDecodeError:
                        raise ShardError(f"{path}, member {member.name}: transcript is not UTF-8") from None
                elif "." + extension.lower() in AUDIO_EXTENSIONS:
                    sample.audio, sample.audio_member = (member.offset_data, member.size), member.name
                    if remote:  # its bytes pass by once: take its length now, not with another read
                        reader = tar.extractfile(member)
                        assert reader is not None
                        sample.length = _length(reader.read())
    except ShardError as e:  # a command that failed
        raise ShardError(f"{e}" + (f", after member {member.name}" if member is not None else "")) from None
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard") from None
    except urllib.error.URLError as e:
        raise ShardError(f"{path}: cannot read ({getattr(e, 'reason', e)})") from None
    except (tarfile.ReadError, EOFError, OSError) as e:
        after = f" after member {member.name}" if member is not None else ""
        if isinstance(e, tarfile.ReadError) and member is None:
            raise ShardError(f"{path}: not an uncompressed tar shard ({e})") from None
        raise ShardError(f"{path}: damaged or truncated{after} ({e})") from None
    if remote:
        return list(samples.values())
    size = os.path.getsize(path)
    for sample in samples.values():  # a shard cut inside a member's data still lists the member
        if sample.audio and sample.audio[0] + sample.audio[1] > size:
            raise ShardError(f"{path}, member {sample.audio_member}: truncated (the shard ends at {size} bytes)")
    return list(samples.values())


def _open(path: str) -> BinaryIO:
    if path.startswith(URL):
        return urllib.request.urlopen(path, timeout=TIMEOUT_S)
    if path.startswith(PIPE):
        return Pipe(path)  # type: ignore[return-value]  # (the reading half of a binary file)
    return open(path, "rb")


class Pipe:
    """A `pipe:` shard's command, its standard output read as a file; at the end, a command that failed
    is a ShardError with its exit status and the last line it wrote to standard error."""

    def __init__(self, path: str):
        self.path, self.position = path, 0
        # a file, not a pipe: a chatty command cannot block on it; closed with the pipe
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                path[len(PIPE) :], shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors
            )
        except OSError as e:
            self.errors.close()
            raise ShardError(f"{path}: cannot run the command ({e})") from None
        assert self.process.stdout is not None

    def read(self, size: int = -1) -> bytes:
        assert self.process.stdout is not None
        data = self.process.stdout.read(size)
        self.position += len(data)
        if len(data) < size or size < 0:
            self.check()
        return data

    def check(self) -> None:
        """Raise if the command has ended in failure."""
        status = self.process.wait()
        if status != 0:
            self.errors.seek(0)
            said = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            raise ShardError(
                f"{self.path}: the command failed (exit status {status}" + (f": {said[-1]})" if said else ")")
            )

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.errors.close()

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_open_pipes: dict[str, Pipe] = {}  # this process's running commands, by shard, most recently used last


def _read_pipe(path: str, offset: int, size: int, name: str) -> bytes:
    pipe = _open_pipes.pop(path, None)
    if pipe is not None and pipe.position > offset:  # behind us: start the command again
        pipe.close()
        pipe = None
    if pipe is None:
        pipe = Pipe(path)
        while len(_open_pipes) >= MAX_OPEN_PIPES:
            _open_pipes.pop(next(iter(_open_pipes))).close()
    try:
        while pipe.position < offset:
            if not pipe.read(min(SKIP_BLOCK, offset - pipe.position)):
                break
        data = pipe.read(size) if pipe.position == offset else b""
    except BaseException:
        pipe.close()
        raise
    if len(data) < size:
        pipe.close()
        raise ShardError(
            f"{path}, sample {name or offset}: the command's output ended at byte {pipe.position}, inside the "
            f"sample's audio (bytes {offset} to {offset + size}); does it give the same shard each time?"
        )
    _open_pipes[path] = pipe
    return data


def _length(data: bytes) -> tuple[int, int] | None:
    try:
        info = soundfile.info(io.BytesIO(data))
    except (RuntimeError, soundfile.LibsndfileError):
        return None  # unreadable: the data check says so, reading it again
    return info.frames, info.samplerate


def read_bytes(path: str, chunk: tuple[int, int], name: str = "") -> bytes:
    """`chunk` (offset, size) of a local file, of a URL with an HTTP range request, or of a command's output;
    `name` (the member) is for messages."""
    offset, size = chunk
    if path.startswith(PIPE):
        return _read_pipe(path, offset, size, name)
    if not path.startswith(URL):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    request = urllib.request.Request(path, headers={"Range": f"bytes={offset}-{offset + size - 1}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if response.status != 206:
                raise ShardError(f"{path}: the server does not answer byte-range requests (HTTP {response.status})")
            return response.read()
    except urllib.error.URLError as e:
        raise ShardError(f"{path}, offset {offset}: cannot read ({getattr(e, 'reason', e)})") from None
