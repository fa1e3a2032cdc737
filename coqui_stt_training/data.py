"""Data sets: CSV files in Coqui's format (spec §6.1), checked before training, ordered and batched.

A CSV has a header row with `wav_filename` (relative paths resolve against the CSV's folder),
`transcript`, and optionally `wav_filesize` (used only for ordering). Every problem found in the
rows is reported at once, grouped by kind, one line per row, before any training starts; with
--skip_invalid_samples the bad rows are left out instead, with a count.
"""

from __future__ import annotations

import csv
import heapq
import io
import os
import signal
from dataclasses import dataclass

import numpy as np
import soundfile
import torch

from . import audio, log
from .distributed import World, shard_batches, split_global_batches
from .feature_cache import FeatureCache
from .features import mfcc_of_signals
from .filterbank import frame_count

MAX_LISTED_PER_KIND = 10
MIN_BATCHES_FOR_WORKERS = 8


class DataError(ValueError):
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
    problem: tuple[str, str] | None = None  # (kind, message), found while reading the row


# ---- reading ----------------------------------------------------------------------------------


def read_csv(path: str) -> list[Sample]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read CSV file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, row {row}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in ("wav_filename", "transcript"):
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
                    transcript=row["transcript"] if row["transcript"] is not None else "",
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
    samples: list[Sample],
    alphabet,
    sample_rate: int,
    win_len_ms: int,
    win_step_ms: int,
    normalize_sample_rate: bool = True,
) -> list[tuple[Sample, str, str]]:
    """Fill in labels and durations; return (sample, kind, message) for every bad row."""
    problems = []
    for s in samples:
        problem = s.problem or _check_sample(s, alphabet, sample_rate, win_len_ms, win_step_ms, normalize_sample_rate)
        if problem:
            problems.append((s, problem[0], f"{s.where}: {problem[1]}"))
    return problems


def _check_sample(
    s: Sample, alphabet, sample_rate, win_len_ms, win_step_ms, normalize_sample_rate
) -> tuple[str, str] | None:
    if not s.wav_filename:
        return "empty wav_filename", "empty wav_filename"
    ext = os.path.splitext(s.audio_path)[1].lower()
    if ext not in audio.AUDIO_EXTENSIONS:
        return "unknown audio type", f'Unknown audio type extension "{ext}" ({s.wav_filename})'
    if not os.path.isfile(s.audio_path):
        return "audio file not found", f"audio file not found: {s.audio_path}"
    if not s.transcript:
        return "empty transcript", (
            f"Found an empty transcript for {s.wav_filename}! You must include a transcript for all data."
        )
    missing = alphabet.missing_characters(s.transcript)
    if missing:
        return "characters not in the alphabet", (
            f'Alphabet cannot encode transcript "{s.transcript}" of {s.wav_filename}; missing characters are: '
            f"{missing}. Check that your alphabet contains all characters in the corpus."
        )
    try:
        info = soundfile.info(s.audio_path)
    except Exception as e:  # soundfile raises several types for bad headers
        return "unreadable audio", f"unreadable audio {s.audio_path} ({str(e).splitlines()[0]})"
    if info.frames <= 0:
        return "empty audio", f"empty audio {s.audio_path}"
    if not normalize_sample_rate and info.samplerate != sample_rate:
        return "wrong sample rate", (
            f"{s.audio_path} has sample rate {info.samplerate} but --audio_sample_rate is "
            f"{sample_rate} and --normalize_sample_rate is false"
        )
    s.duration = info.frames / info.samplerate
    s.labels = alphabet.encode(s.transcript)
    frames = frame_count(
        audio.resampled_length(info.frames, info.samplerate, sample_rate), sample_rate, win_len_ms, win_step_ms
    )
    needed = ctc_min_frames(s.labels)
    if frames < needed:
        return "transcript too long for its audio", (
            f"transcript too long for its audio: {s.audio_path} gives {frames} feature frames but its "
            f"{len(s.labels)} labels need at least {needed} for CTC"
        )
    return None


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
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)


def load_data_set(paths: list[str], alphabet, config, kind: str) -> list[Sample]:
    """Read, check and order one flag's CSVs. Raises DataError listing every bad row, grouped by kind,
    unless --skip_invalid_samples, which leaves them out and says how many."""
    sources = [read_csv(p) for p in paths]
    problems = []
    for samples in sources:
        problems += check_samples(
            samples,
            alphabet,
            config.audio_sample_rate,
            config.feature_win_len,
            config.feature_win_step,
            config.normalize_sample_rate or kind != "train",
        )
    if problems and not config.skip_invalid_samples:
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
    ordered = [sorted(s, key=lambda x: x.filesize) for s in sources]
    if len(ordered) == 1:
        return ordered[0]
    return list(heapq.merge(*[sorted(s, key=lambda x: x.duration) for s in ordered], key=lambda x: x.duration))


# ---- batching ---------------------------------------------------------------------------------


@dataclass
class Batch:
    features: torch.Tensor  # [B, T, 26], zero-padded
    feature_lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [sum of label lengths], concatenated
    label_lengths: torch.Tensor  # [B]
    samples: list[Sample]

    @property
    def audio_seconds(self) -> float:
        return sum(s.duration for s in self.samples)


def make_batches(n_samples: int, batch_size: int, drop_last: bool) -> list[list[int]]:
    """Consecutive batches in data-set order; training drops the incomplete last batch, as Coqui does."""
    stop = n_samples - n_samples % batch_size if drop_last else n_samples
    return [list(range(i, min(i + batch_size, stop))) for i in range(0, stop, batch_size)]


class Collate:
    """Reads audio and computes features for one batch, or takes them from the feature cache (runs in
    DataLoader workers when there are any)."""

    def __init__(
        self,
        samples: list[Sample],
        sample_rate: int,
        win_len_ms: int,
        win_step_ms: int,
        cache: FeatureCache | None = None,
    ):
        self.samples, self.sample_rate = samples, sample_rate
        self.win_len_ms, self.win_step_ms = win_len_ms, win_step_ms
        self.cache = cache

    def __call__(self, indices: list[int]) -> Batch:
        batch = [self.samples[i] for i in indices]
        each = [self.cache.get(s.audio_path) for s in batch] if self.cache else [None] * len(batch)
        missing = [i for i, f in enumerate(each) if f is None]
        if missing:
            computed, lengths = self.compute([batch[i] for i in missing])
            for i, f, n in zip(missing, computed, lengths.tolist()):
                each[i] = f[:n].numpy()
                if self.cache:
                    self.cache.put(batch[i].audio_path, each[i])
        feature_lengths = torch.tensor([len(f) for f in each])
        features = torch.zeros(len(each), int(feature_lengths.max()), each[0].shape[1])
        for i, f in enumerate(each):
            features[i, : len(f)] = torch.from_numpy(f)
        labels = torch.tensor([label for s in batch for label in s.labels], dtype=torch.long)
        label_lengths = torch.tensor([len(s.labels) for s in batch], dtype=torch.long)
        return Batch(features, feature_lengths, labels, label_lengths, batch)

    def compute(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        waves = [audio.load_audio(s.audio_path, self.sample_rate) for s in samples]
        return mfcc_of_signals(waves, self.sample_rate, self.win_len_ms, self.win_step_ms)


def data_loader(
    samples: list[Sample], batch_size: int, config, train: bool, epoch: int = 0, skip: int = 0, world: World = World()
) -> torch.utils.data.DataLoader:
    """Batches of one epoch; `skip` leaves out its first batches (a resumed run has done them). In a
    distributed run, training batches are global (batch_size per rank) and each rank gets its slice of
    every one; evaluation batches are dealt out whole."""
    batches = make_batches(len(samples), batch_size * world.size if train else batch_size, drop_last=train)
    if train and config.shuffle_batches and epoch >= config.shuffle_start:
        # Coqui shuffles whole batches, never samples across batches; seeded per epoch so reruns agree.
        order = np.random.default_rng(config.random_seed + epoch).permutation(len(batches))
        batches = [batches[i] for i in order]
    batches = batches[skip:]
    if world.distributed:
        batches = split_global_batches(batches, batch_size, world) if train else shard_batches(batches, world)
    cache = None
    if config.feature_cache:
        generation = epoch // config.cache_for_epochs if config.cache_for_epochs > 0 else 0
        cache = FeatureCache(
            config.feature_cache, config.audio_sample_rate, config.feature_win_len, config.feature_win_step, generation
        )
    collate = Collate(samples, config.audio_sample_rate, config.feature_win_len, config.feature_win_step, cache)
    # Workers start anew each epoch (a fork, about 0.1 s): for a handful of batches that costs more than
    # the features it would compute ahead.
    workers = config.data_workers if len(batches) >= MIN_BATCHES_FOR_WORKERS else 0
    # Its own generator: a DataLoader draws a seed each time it is iterated, and from torch's global
    # generator that draw would shift the dropout masks of a resumed run against an uninterrupted one.
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_quiet_worker,
        generator=torch.Generator().manual_seed(config.random_seed + epoch),
    )


def _quiet_worker(_: int) -> None:
    """Ctrl-C reaches the whole process group: the training process alone decides how to stop, and
    closes its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
