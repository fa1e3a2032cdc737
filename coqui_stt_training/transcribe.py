"""Transcription of audio files of any length from a checkpoint, as Coqui's transcribe module does.

    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src talk.wav [--dst talk.tlog]
    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src recordings/ [--recursive true]
    python -m coqui_stt_training.transcribe --checkpoint_dir ckpt/ --src book.catalog

Each file is split at its silences, the pieces are transcribed in batches (--batch_size; pieces longer
than --outlier_duration_ms in batches of --outlier_batch_size) with --beam_width and the optional
--scorer_path, and a `.tlog` is written beside it (or to --dst, or where a DSAlign .catalog entry says):
Coqui's JSON list of {"start": ms, "end": ms, "transcript": text}. Existing .tlog files are kept unless
--force.

Coqui split with WebRTC's VAD; ours is an energy detector with the same shape: 30 ms frames, a frame is
speech when it is loud enough above the file's own noise floor (--vad_aggressiveness 0 to 3 asks for
6 to 15 dB more), and a piece starts when 90 % of a 300 ms window is speech and ends when 90 % of it
is silence; each piece keeps up to 300 ms more of the silence around it.
"""

from __future__ import annotations

import json
import os
from collections import deque

import numpy as np
import torch

from . import log
from .audio import AUDIO_EXTENSIONS, AudioError, load_audio
from .config import Config, ConfigError
from .decode import beam_search_decode
from .features import mfcc_of_signals
from .scorer import load_scorer
from .tf_checkpoint import write_file_atomically

FRAME_MS = 30
PADDING_FRAMES = 10
TRIGGER = 0.9


def speech_segments(samples: np.ndarray, rate: int, aggressiveness: int = 3) -> list[tuple[int, int]]:
    """[start, end) sample ranges of the speech in `samples`, separated by silence."""
    frame = rate * FRAME_MS // 1000
    n_frames = len(samples) // frame
    if n_frames == 0:
        return [(0, len(samples))] if len(samples) else []
    frames = samples[: n_frames * frame].reshape(n_frames, frame).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    floor = np.percentile(level, 10)
    speech = level > max(floor + 6 + 3 * min(max(aggressiveness, 0), 3), -60.0)
    segments, window, start = [], deque(maxlen=PADDING_FRAMES), None
    for i, voiced in enumerate(speech):
        window.append(voiced)
        if start is None and sum(window) >= TRIGGER * PADDING_FRAMES:
            start = max(i - len(window) + 1, 0)
            window.clear()
        elif (
            start is not None
            and len(window) == PADDING_FRAMES
            and PADDING_FRAMES - sum(window) >= TRIGGER * PADDING_FRAMES
        ):
            segments.append((start * frame, (i + 1) * frame))
            start = None
            window.clear()
    if start is not None:
        segments.append((start * frame, len(samples)))
    # Models learn from utterances with some silence around them: give each piece up to one more window
    # of it on both sides, without reaching into its neighbours.
    pad = PADDING_FRAMES * frame
    gaps = [(a_end + b_start) // 2 for (_, a_end), (b_start, _) in zip(segments, segments[1:])]
    bounds = [0] + gaps + [len(samples)]
    return [(max(bounds[i], a - pad), min(bounds[i + 1], b + pad)) for i, (a, b) in enumerate(segments)]


def transcribe_file(path: str, model, alphabet, config: Config, scorer, device) -> list[dict]:
    rate = config.audio_sample_rate
    samples = load_audio(path, rate)
    pieces = speech_segments(samples, rate, config.vad_aggressiveness)
    outlier = config.outlier_duration_ms * rate // 1000
    pieces.sort(key=lambda p: p[1] - p[0])
    normal = [p for p in pieces if p[1] - p[0] <= outlier]
    long = [p for p in pieces if p[1] - p[0] > outlier]
    batches = [normal[i : i + config.batch_size] for i in range(0, len(normal), config.batch_size)]
    batches += [long[i : i + config.outlier_batch_size] for i in range(0, len(long), config.outlier_batch_size)]
    results = []
    model.eval()
    for batch in batches:
        features, feature_lengths = mfcc_of_signals(
            [samples[a:b] for a, b in batch], rate, config.feature_win_len, config.feature_win_step
        )
        with torch.no_grad():
            logits = model(features.to(device))
        texts = beam_search_decode(
            logits, feature_lengths, alphabet, config.beam_width, config.cutoff_prob, config.cutoff_top_n, scorer
        )
        results += [
            {"start": a * 1000 // rate, "end": b * 1000 // rate, "transcript": text}
            for (a, b), text in zip(batch, texts)
        ]
    return sorted(results, key=lambda r: r["start"])


def catalog_tasks(path: str) -> list[tuple[str, str]]:
    """(audio, .tlog) pairs of a DSAlign .catalog: a JSON list of {"audio": path, "tlog": path, ...}, relative
    paths taken from the catalog's folder, as Coqui reads it."""
    try:
        with open(path, encoding="utf-8") as f:
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
    if is_catalog:  # as Coqui does, a catalog's .tlog folders are made
        for _, dst in pairs:
            os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    return pairs


def transcribe_job(config: Config) -> None:
    from .train import setup_evaluation

    pairs = tasks(config)
    if not pairs:
        log.warn(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) in {config.src}")
        return
    model, alphabet, device = setup_evaluation(config, config.load_checkpoint_dir)
    scorer = load_scorer(config, alphabet)
    for i, (src, dst) in enumerate(pairs, 1):
        try:
            results = transcribe_file(src, model, alphabet, config, scorer, device)
        except AudioError as e:
            log.error(f"{e}; skipped")
            continue
        write_file_atomically(dst, json.dumps(results, ensure_ascii=False))
        print(f'[{i}]: "{src}" -> "{dst}"', flush=True)


def main(argv: list[str] | None = None) -> None:
    from .train import run_cli

    run_cli(transcribe_job, argv, "python -m coqui_stt_training.transcribe")


if __name__ == "__main__":
    main()
