"""Data sets as checked samples: CSV files, SDBs and WebDataset shards in Coqui's formats (docs/compatibility.md,
"Data"), read and checked before training.

A CSV has a header row with `wav_filename` (relative paths resolve against the CSV's folder),
`transcript`, and optionally `wav_filesize` (used only for ordering). Every problem found in the
rows is reported at once, grouped by kind, one line per row, before any training starts; with
--skip_invalid_samples the bad rows are left out instead, with a count. read_source is where other
kinds of data source come in: each reads its rows into the same Samples, and everything after it
(the checks, ordering, batching, caching) is shared.
"""

from __future__ import annotations

import csv
import heapq
import io
import itertools
import os
import re
import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soundfile

from ..model.alphabet import AnyAlphabet
from ..model.features import FeatureSettings
from ..system import log
from ..system.errors import UserError
from . import audio, sdb, shards

MAX_LISTED_PER_KIND = 10


class DataError(UserError):
    pass


@dataclass
class Sample:
    audio_path: str  # resolved path, used for reading
    wav_filename: str  # as written in the CSV, used in reports
    transcript: str
    filesize: int
    where: str  # "<csv>, row <n>" for messages
    labels: list[int] | None = None
    duration: float = 0.0
    frames: int = 0  # feature frames, from the header (for memory estimates)
    problem: tuple[str, str] | None = None  # (kind, message), found while reading the row
    chunk: tuple[int, int] | None = None  # in an SDB or a shard: (offset, size) of the audio in audio_path ...
    mime: str = ""  # ... and its type
    known_length: tuple[int, int] | None = None  # (samples, rate), when reading the source gave them


def sample_key(s: Sample) -> str:
    """What names a sample's audio (the feature cache's key): its file, and where in an SDB or shard."""
    return s.audio_path if s.chunk is None else f"{s.audio_path}:{s.chunk[0]}"


def load_sample_audio(s: Sample, sample_rate: int) -> np.ndarray:
    """A sample's audio as the feature pipeline consumes it: mono float32 at `sample_rate`."""
    samples, rate = read_sample_audio(s)
    return audio.resample(samples, rate, sample_rate)


def read_sample_audio(s: Sample) -> tuple[np.ndarray, int]:
    """A sample's audio, mono float32 at its own rate."""
    if s.chunk is None:
        return audio.read_audio(s.audio_path)
    try:
        return sdb.decode_chunk(shards.read_bytes(s.audio_path, s.chunk, s.wav_filename), s.mime)
    except (ValueError, struct.error, RuntimeError) as e:  # (a decoder's complaint about damaged audio)
        raise audio.AudioError(f"unreadable audio {s.wav_filename} at offset {s.chunk[0]} ({e})") from None


# ---- reading ----------------------------------------------------------------------------------


def read_source(path: str, labeled: bool = True) -> list[Sample]:
    """The samples of one data source, in file order, not yet checked: a CSV file, an SDB or WebDataset
    shards (a .tar, or a glob of them), told apart by their names as in Coqui. Unlabeled (noise for
    overlays, previews), a CSV needs no transcript column and an audio file is one sample."""
    if not labeled and path.lower().endswith(tuple(audio.AUDIO_EXTENSIONS)):
        return [Sample(path, path, "", 0, path)]
    if is_sdb(path):
        return read_sdb_samples(path)
    if shards.is_shard(path):
        return [s for shard in shards.shard_paths(path) for s in read_shard_samples(shard)]
    return read_csv(path, labeled)


def is_sdb(path: str) -> bool:
    return path.lower().endswith(".sdb")


def keeps_stored_order(path: str) -> bool:
    """SDBs and shards are read in their stored order; CSVs in order of wav_filesize (as in Coqui)."""
    return is_sdb(path) or shards.is_shard(path)


def read_shard_samples(path: str) -> list[Sample]:
    samples = []
    for entry in shards.read_shard(path):
        problem = None
        if entry.audio is None:
            problem = ("no audio", f"sample {entry.key} has no audio member")
        elif entry.transcript is None:
            problem = (
                "no transcript",
                f"sample {entry.key} has audio but no txt member",
            )
        extension = entry.audio_member.rsplit(".", 1)[-1].lower()
        samples.append(
            Sample(
                audio_path=path,
                wav_filename=entry.key,  # Coqui's sample id: the WebDataset key
                transcript=entry.transcript or "",
                filesize=entry.audio[1] if entry.audio else 0,
                where=f"{path}, member {entry.audio_member or entry.key}",
                problem=problem,
                chunk=entry.audio,
                mime=f"audio/{extension}",
                known_length=entry.length,
            )
        )
    return samples


def read_sdb_samples(path: str) -> list[Sample]:
    collection = sdb.read_sdb(path)
    return [
        Sample(
            audio_path=path,
            wav_filename=f"{path}:{e.index}",  # Coqui's sample id
            transcript=e.transcript,
            filesize=e.audio[1],
            where=f"{path}, sample {e.index} (offset {e.offset})",
            chunk=e.audio,
            mime=collection.mime,
        )
        for e in collection.entries
    ]


def csv_text(rows: Iterable[tuple[str, int, str]]) -> str:
    """A CSV in Coqui's format (wav_filename, wav_filesize, transcript), quoted where a field needs it."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["wav_filename", "wav_filesize", "transcript"])
    writer.writerows(rows)
    return out.getvalue()


def read_csv(path: str, labeled: bool = True) -> list[Sample]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read CSV file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        what = f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"
        raise DataError(f"{path}, row {line}: {what}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in ("wav_filename", "transcript") if labeled else ("wav_filename",):
        if column not in header:
            raise DataError(f"{path}: missing CSV column '{column}' (header is: {','.join(header) or 'empty'})")
    folder = os.path.dirname(os.path.abspath(path))
    samples = []
    try:
        for row in reader:
            where = f"{path}, row {reader.line_num}"
            wav_filename = row["wav_filename"] or ""
            size_text = (row.get("wav_filesize") or "0").strip()
            problem = None
            try:
                filesize = int(size_text)
            except ValueError:
                filesize, problem = 0, ("bad wav_filesize", f"wav_filesize is not an integer: {size_text!r}")
            samples.append(
                Sample(
                    audio_path=os.path.join(folder, wav_filename),  # join keeps absolute paths as they are
                    wav_filename=wav_filename,
                    transcript=row.get("transcript") or "",
                    filesize=filesize,
                    where=where,
                    problem=problem,
                )
            )
    except csv.Error as e:
        # DictReader.line_num is only updated after a row parses; its reader's counts the failing line too.
        raise DataError(f"{path}, row {reader.reader.line_num}: malformed CSV ({e})") from None
    return samples


# ---- validation -------------------------------------------------------------------------------


def check_samples(
    samples: list[Sample], alphabet: AnyAlphabet, features: FeatureSettings, normalize_sample_rate: bool = True
) -> list[tuple[Sample, str, str]]:
    """Fill in labels and durations; return (sample, kind, message) for every bad row."""
    problems = []
    for s in samples:
        problem = s.problem or _check_sample(s, alphabet, features, normalize_sample_rate)
        if problem:
            problems.append((s, problem[0], f"{s.where}: {problem[1]}"))
    return problems


def _check_sample(
    s: Sample, alphabet: AnyAlphabet, features: FeatureSettings, normalize_sample_rate: bool
) -> tuple[str, str] | None:
    if not s.wav_filename:
        return "empty wav_filename", "empty wav_filename"
    if s.chunk is None and not os.path.isfile(s.audio_path):
        return "audio file not found", f"audio file not found: {s.audio_path}"
    if not s.transcript:
        return "empty transcript", (
            f"Found an empty transcript for {s.wav_filename}! You must include a transcript for all data."
        )
    missing = alphabet.missing_characters(s.transcript)
    if missing:
        return "characters not in the alphabet", (
            f'Alphabet cannot encode transcript "{s.transcript}" of {s.wav_filename}; missing characters are: '
            f"{missing}. Check that your alphabet contains all characters in the corpus." + _form_hint(s, alphabet)
        )
    try:
        n_samples, rate = audio_length(s)
    except audio.AudioError as e:
        return audio.problem_kind(e), str(e)
    if not normalize_sample_rate and rate != features.sample_rate:
        return "wrong sample rate", (
            f"{s.wav_filename if s.chunk else s.audio_path} has sample rate {rate} but --audio_sample_rate is "
            f"{features.sample_rate} and --normalize_sample_rate is false"
        )
    s.duration = n_samples / rate
    s.labels = alphabet.encode(s.transcript)
    frames = features.frames(audio.resampled_length(n_samples, rate, features.sample_rate))
    s.frames = frames
    needed = ctc_min_frames(s.labels)
    if frames < needed:
        return "transcript too long for its audio", (
            f"transcript too long for its audio: {s.audio_path} gives {frames} feature frames but its "
            f"{len(s.labels)} labels need at least {needed} for CTC"
        )
    return None


def audio_length(s: Sample) -> tuple[int, int]:
    """(samples, rate) of a sample's audio, from its header; an AudioError when there is none to read."""
    if s.chunk is None:
        info = audio.audio_info(s.audio_path)
        return info.frames, info.samplerate
    # Coqui's Opus container says its length in its first 10 bytes; other formats need their whole header
    head = (s.chunk[0], min(s.chunk[1], sdb.OPUS_HEADER_SIZE)) if s.mime == sdb.OPUS else s.chunk
    try:
        n_samples, rate = s.known_length or sdb.chunk_frames(shards.read_bytes(s.audio_path, head), s.mime)
    except (ValueError, struct.error, RuntimeError, soundfile.LibsndfileError) as e:
        raise audio.AudioError(f"unreadable audio {s.wav_filename} at offset {s.chunk[0]} ({e})") from None
    if n_samples <= 0 or rate <= 0:
        raise audio.AudioError(f"empty audio {s.wav_filename} at offset {s.chunk[0]}")
    return n_samples, rate


def _form_hint(s: Sample, alphabet: AnyAlphabet) -> str:
    """Accents can be one code point (NFC) or a letter plus a combining mark (NFD): the same text to a reader,
    different labels to CTC. Say so when the other form would fit."""
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, s.transcript)
        if other != s.transcript and not alphabet.missing_characters(other):
            return f" Its Unicode {form} form fits the alphabet: normalise the transcripts to {form}."
    return ""


def normalise_spaces(samples: list[Sample]) -> list[Sample]:
    """Leading, trailing and repeated spaces removed from transcripts (CTC would learn them as spaces, and
    a scorer never sees them); the samples changed."""
    changed = []
    for s in samples:
        clean = _SPACES.sub(" ", s.transcript.strip(" "))
        if clean != s.transcript:
            s.transcript = clean
            changed.append(s)
    return changed


_SPACES = re.compile(" {2,}")


def grouped_report(problems: list[tuple[Sample, str, str]]) -> str:
    """Problem lines grouped by kind, in order of first appearance, at most MAX_LISTED_PER_KIND each."""
    kinds: dict[str, list[str]] = {}
    for _, kind, message in problems:
        kinds.setdefault(kind, []).append(message)
    lines = []
    for kind, messages in kinds.items():
        lines.append(f"  {kind}: {len(messages)} row(s)")
        lines += [f"    {m}" for m in messages[:MAX_LISTED_PER_KIND]]
        if len(messages) > MAX_LISTED_PER_KIND:
            lines.append(f"    ... and {len(messages) - MAX_LISTED_PER_KIND} more")
    return "\n".join(lines)


def ctc_min_frames(labels: list[int]) -> int:
    """CTC needs one frame per label plus a blank between each pair of equal neighbours."""
    return len(labels) + sum(1 for a, b in itertools.pairwise(labels) if a == b)


def load_data_set(
    paths: list[str],
    alphabet: AnyAlphabet,
    features: FeatureSettings,
    kind: str,
    skip_invalid: bool = False,
    normalize_sample_rate: bool = True,
) -> list[Sample]:
    """Read, check and order one flag's data sets (`kind`: train, rehearsal, dev, test or metrics, for messages).
    Raises DataError listing every bad row, grouped by kind, unless `skip_invalid` (--skip_invalid_samples),
    which leaves them out and says how many. Only training (and rehearsal) data may keep its own sample rate
    (--normalize_sample_rate false)."""
    sources = [read_source(p) for p in paths]
    log.info(f"Checking the {sum(len(s) for s in sources)} samples of --{kind}_files")
    spaced = [s for samples in sources for s in normalise_spaces(samples)]
    if spaced:
        log.warn(
            f"--{kind}_files: {len(spaced)} transcript(s) had leading, trailing or repeated spaces, removed "
            f"(first: {spaced[0].where})"
        )
    problems, normalize = [], normalize_sample_rate or kind not in ("train", "rehearsal")
    for samples in sources:
        problems += check_samples(samples, alphabet, features, normalize)
    if problems and not skip_invalid:
        raise DataError(
            f"{len(problems)} invalid sample(s) in --{kind}_files (--skip_invalid_samples true leaves "
            "them out):\n" + grouped_report(problems)
        )
    if problems:
        bad = {id(s) for s, _, _ in problems}
        sources = [[s for s in samples if id(s) not in bad] for samples in sources]
        left = sum(len(samples) for samples in sources)
        if not left:
            raise DataError(f"--{kind}_files: all {len(problems)} samples are invalid:\n" + grouped_report(problems))
        log.warn(
            f"Skipping {len(problems)} invalid sample(s) of --{kind}_files, {left} left:\n" + grouped_report(problems)
        )
    # a CSV in order of wav_filesize, an SDB or a shard in its stored order, as Coqui reads them
    ordered = [s if keeps_stored_order(p) else sorted(s, key=lambda x: x.filesize) for p, s in zip(paths, sources)]
    if len(ordered) == 1:
        return ordered[0]
    return list(heapq.merge(*[sorted(s, key=lambda x: x.duration) for s in ordered], key=lambda x: x.duration))
