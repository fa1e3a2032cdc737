"""Transcription of audio files of any length from a checkpoint, as Coqui's transcribe module does.

    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src talk.wav [--dst talk.tlog]
    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src recordings/ [--recursive true]
    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src book.catalog

Each file is split at its silences, the pieces are transcribed in batches (--batch_size; pieces longer
than --outlier_duration_ms in batches of --outlier_batch_size) with --beam_width and the optional
--scorer_path, and a `.tlog` is written beside it (or to --dst, or where a DSAlign .catalog entry says):
Coqui's JSON list of {"start": ms, "end": ms, "transcript": text}. Existing .tlog files are kept unless
--force.
The splitting and decoding are decoding/transcription.py's.
"""

from __future__ import annotations

import json
import os

from .data.audio import AUDIO_EXTENSIONS
from .decoding.transcription import transcribe_file
from .flags.cli import run_cli
from .flags.config import TRANSCRIBE_FLAGS, Config
from .flags.options import decode_options, feature_settings, segmentation
from .flags.services import model_for, scorer_for
from .system import log
from .system.atomic_files import require_writable, write_file_atomically
from .system.errors import ConfigError, UserError
from .system.signals import phase


def catalog_tasks(path: str) -> list[tuple[str, str]]:
    """(audio, .tlog) pairs of a DSAlign .catalog: a JSON list of {"audio": path, "tlog": path, ...}, relative
    paths taken from the catalog's folder, as Coqui reads it."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            entries = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON catalog ({e})") from None
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: a catalog is a JSON list of entries with "audio" and "tlog" paths')
    folder = os.path.dirname(os.path.abspath(path))
    pairs = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("audio"), str) and isinstance(entry.get("tlog"), str)):
            raise ConfigError(f'{path}: entry {i} needs "audio" and "tlog" paths')
        audio = os.path.join(folder, entry["audio"])  # an absolute path stays as it is
        if not os.path.isfile(audio):
            raise ConfigError(f"{path}: entry {i}: audio file {audio} does not exist")
        pairs.append((audio, os.path.join(folder, entry["tlog"])))
    return pairs


def tasks(config: Config) -> list[tuple[str, str]]:
    """(audio, .tlog) pairs, checked before any work."""
    src = config.src
    if not src or not os.path.exists(src):
        raise ConfigError(
            "You have to specify which audio file, catalog file or directory to transcribe with the "
            "--src flag" + (f" ({src} does not exist)" if src else "")
        )
    is_catalog = os.path.isfile(src) and src.endswith(".catalog")
    if is_catalog:
        if config.dst:
            raise ConfigError("--dst is not supported with a .catalog --src: each entry names its .tlog")
        pairs = catalog_tasks(src)
    elif os.path.isdir(src):
        if config.dst:
            raise ConfigError(
                "--dst is for a single --src file; a directory's .tlog files are written beside its audio"
            )
        walk = os.walk(src) if config.recursive else [(src, [], os.listdir(src))]
        audio = sorted(
            os.path.join(d, n)
            for d, _, names in walk
            for n in names
            if os.path.splitext(n)[1].lower() in AUDIO_EXTENSIONS
        )
        pairs = [(a, os.path.splitext(a)[0] + ".tlog") for a in audio]
    else:
        pairs = [(src, config.dst or os.path.splitext(src)[0] + ".tlog")]
    inputs = {os.path.realpath(a) for a, _ in pairs} | {os.path.realpath(src)}
    for _, dst in pairs:
        if os.path.realpath(dst) in inputs:  # not even with --force: it is the user's audio or catalog
            raise ConfigError(f"{dst} is an input of this transcription; a .tlog cannot be written over it")
        if os.path.exists(dst) and not config.force:
            raise ConfigError(f'Destination file "{dst}" already exists - use --force for overwriting')
        if not is_catalog and not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
            raise ConfigError(f"Missing destination directory for {dst}")
    for folder in sorted({os.path.dirname(os.path.abspath(dst)) for _, dst in pairs}):
        # a read-only destination fails now, not after the model has run over every file (as Coqui does, a
        # catalog's .tlog folders are made)
        require_writable(folder, f"cannot write .tlog files in {folder}")
    return pairs


def transcribe_job(config: Config) -> None:
    pairs = tasks(config)
    if not pairs:
        log.warn(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) in {config.src}")
        return
    loaded = model_for(config, config.load_checkpoint_dir)
    scorer = scorer_for(config, loaded.alphabet)
    features, options, pieces = (
        feature_settings(config),
        decode_options(config, config.beam_width),
        segmentation(config),
    )
    skipped = 0
    for i, (src, dst) in enumerate(pairs, 1):
        try:
            with phase(f"while transcribing {src}", f"{i - 1 - skipped} .tlog file(s) written before it"):
                results = transcribe_file(src, loaded, features, options, scorer, pieces)
                write_file_atomically(dst, json.dumps(results, ensure_ascii=False))
        except UserError as e:  # the file is checked as train checks it: one bad file does not stop the rest
            log.error(f"{e}; skipped")
        except OSError as e:
            log.error(f"cannot write {dst} ({e.strerror or e}); skipped")
        else:
            print(f'[{i}]: "{src}" -> "{dst}"', flush=True)
            continue
        skipped += 1
    if skipped:
        raise UserError(
            f"{skipped} of {len(pairs)} file(s) skipped (reasons above); {len(pairs) - skipped} .tlog file(s) written"
        )


def main(argv: list[str] | None = None) -> None:
    run_cli(transcribe_job, argv, "python -m coqui_stt_training.transcribe", TRANSCRIBE_FLAGS)


if __name__ == "__main__":
    main()
