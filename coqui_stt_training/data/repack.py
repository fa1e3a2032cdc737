"""Data sets converted between kinds, as Coqui's bin/data_set_tool.py converts them: any sources (CSV, SDB)
into one SDB (Opus or WAV audio) or one CSV with a folder of WAV files beside it. The samples keep their
order (each source's, the sources one after another); a target is never overwritten."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from ..system import log
from ..system.atomic_files import write_file_atomically
from ..system.errors import UserError
from ..system.worker_pool import ordered_map
from . import sdb
from .samples import Sample, csv_text, read_sample_audio, read_source


class ConversionError(UserError):
    pass


def convert_data_sets(sources: list[str], target: str, audio_type: str, bitrate: int, workers: int) -> int:
    """Write `target` (.sdb or .csv) from `sources`; the number of samples written."""
    if not sources:
        raise ConversionError("--sources: give at least one CSV or SDB file")
    kind = os.path.splitext(target)[1].lower()
    if kind not in (".sdb", ".csv"):
        raise ConversionError(f"--target {target}: must end in .sdb or .csv")
    folder = os.path.splitext(target)[0]  # a CSV target's audio, as Coqui's tool puts it
    for taken in (target, folder) if kind == ".csv" else (target,):
        if os.path.exists(taken):
            raise ConversionError(f"--target {target}: {taken} exists; data_set_tool never overwrites")
    samples = [s for path in sources for s in read_source(path)]
    mime = sdb.AUDIO_TYPES[audio_type] if kind == ".sdb" else sdb.WAV
    work = [(s, mime, bitrate) for s in samples]
    encoded = ordered_map(_encode, work, workers, f"Writing {os.path.basename(target)}")
    if kind == ".sdb":
        count = sdb.write_sdb(target, encoded, mime)
    else:
        count = _write_csv(target, folder, encoded)
    log.info(f"Wrote {count} samples to {target}")
    return count


def _encode(item: tuple[Sample, str, int]) -> tuple[bytes, str]:
    sample, mime, bitrate = item
    samples, rate = read_sample_audio(sample)
    return sdb.encode_chunk(samples, rate, mime, bitrate), sample.transcript


def _write_csv(target: str, folder: str, encoded: Iterator[tuple[bytes, str]]) -> int:
    """sampleNNNNNNNN.wav files in `folder` and a CSV naming them relative to its own folder."""
    os.makedirs(folder)
    rows = []
    try:
        for index, (wav, transcript) in enumerate(encoded):
            path = os.path.join(folder, f"sample{index:08d}.wav")
            write_file_atomically(path, wav)
            rows.append((os.path.relpath(path, os.path.dirname(os.path.abspath(target))), len(wav), transcript))
        write_file_atomically(target, csv_text(rows))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # ours, made above: no half-written data set is left
        raise
    return len(rows)
