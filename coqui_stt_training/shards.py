"""WebDataset shards (`.tar`) as a data source, as Coqui 1.4 read them (docs/compatibility.md "Data").

Members whose names share a key (the name up to the first dot of its last part: `a/b.c.wav` has key `a/b`)
form one sample: the `txt` member is its transcript, and a member in an audio format (wav, flac, ogg, opus, mp3
and the rest libsndfile reads) its audio. A shard is indexed, never unpacked: the headers are read once, and
each sample's audio is read in place (its offset and size) when its features are computed, so the rest of the
pipeline (the checks, ordering, caching, exact resume, each process's slice) is the one CSVs and SDBs use.
Samples keep the shard's order, as in Coqui. Compressed shards and remote URLs cannot be read in place.
"""

from __future__ import annotations

import glob
import os
import tarfile
from dataclasses import dataclass

from .audio import AUDIO_EXTENSIONS
from .errors import UserError

REMOTE = ("http://", "https://", "s3://", "pipe:")


class ShardError(UserError):
    pass


@dataclass
class ShardSample:
    key: str
    audio: tuple[int, int] | None  # (offset, size) of the audio member
    audio_member: str
    transcript: str | None


def is_shard(source: str) -> bool:
    return source.lower().endswith(".tar") or source.startswith(REMOTE)


def shard_paths(source: str) -> list[str]:
    """The local shards a source names: a path, or a glob (`shards/train-*.tar`)."""
    if source.startswith(REMOTE):
        raise ShardError(
            f"{source}: remote WebDataset shards cannot be read in place yet; download them and give the local "
            "paths (or a glob)"
        )
    if any(c in source for c in "*?["):
        found = sorted(glob.glob(source))
        if not found:
            raise ShardError(f"{source}: no shard matches")
        return found
    return [source]


def read_shard(path: str) -> list[ShardSample]:
    """The samples of a local shard, in member order."""
    samples: dict[str, ShardSample] = {}
    member = None
    try:
        with tarfile.open(path, "r:") as tar:
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
    except FileNotFoundError:
        raise ShardError(f"{path}: no such shard") from None
    except (tarfile.ReadError, EOFError, OSError) as e:
        after = f" after member {member.name}" if member is not None else ""
        if isinstance(e, tarfile.ReadError) and member is None:
            raise ShardError(f"{path}: not an uncompressed tar shard ({e})") from None
        raise ShardError(f"{path}: damaged or truncated{after} ({e})") from None
    size = os.path.getsize(path)
    for sample in samples.values():  # a shard cut inside a member's data still lists the member
        if sample.audio and sample.audio[0] + sample.audio[1] > size:
            raise ShardError(f"{path}, member {sample.audio_member}: truncated (the shard ends at {size} bytes)")
    return list(samples.values())
