"""Decoding cost per audio format, and what the feature cache takes off from the second epoch on.

    python benchmarks/audio_formats.py [--audio data/smoke_test/LDC93S1.wav] [--copies 200]

For one recording (LDC93S1 by default) in every format a data set can hold (WAV, FLAC, Ogg Vorbis, Ogg Opus,
MP3 encoded here by libsndfile, Opus inside an SDB, WAV inside a WebDataset shard), the best of five timings of
reading it as training reads it (decode, mono, resample to 16 kHz) and of its MFCC, as audio seconds per
second on one thread and as a multiple of WAV's cost. Then an MP3 data set of --copies files goes through the
training input pipeline (data_loader, no workers) twice with --feature_cache: the first epoch decodes, the
second reads the cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import tempfile
import time

import soundfile
import torch

from coqui_stt_training.data.samples import load_data_set, load_sample_audio, read_source
from coqui_stt_training.data.sdb import OPUS, encode_chunk, write_sdb
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings, mfcc

REPEATS = 5


def best_of(work, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def make_formats(source: str, folder: str, transcript: str) -> dict[str, str]:
    """The recording as a one-row data source of each kind; kind -> source path."""
    samples, rate = soundfile.read(source, dtype="float32")
    files = {"WAV": "a.wav", "FLAC": "a.flac", "Ogg Vorbis": "a.ogg", "Ogg Opus": "a.opus", "MP3": "a.mp3"}
    kinds = {"a.wav": ("WAV", "PCM_16"), "a.flac": ("FLAC", "PCM_16"), "a.ogg": ("OGG", "VORBIS"),
             "a.opus": ("OGG", "OPUS"), "a.mp3": ("MP3", "MPEG_LAYER_III")}  # fmt: skip
    sources = {}
    for kind, name in files.items():
        soundfile.write(os.path.join(folder, name), samples, rate, format=kinds[name][0], subtype=kinds[name][1])
        csv = os.path.join(folder, name + ".csv")
        with open(csv, "w") as f:
            f.write(f"wav_filename,wav_filesize,transcript\n{name},1,{transcript}\n")
        sources[kind] = csv
    sdb = os.path.join(folder, "a.sdb")
    write_sdb(sdb, [(encode_chunk(samples, rate, OPUS, 16000), transcript)], OPUS)
    sources["Opus in an SDB"] = sdb
    shard = os.path.join(folder, "a.tar")
    with tarfile.open(shard, "w") as tar:
        tar.add(os.path.join(folder, "a.wav"), "a.wav")
        with open(os.path.join(folder, "a.txt"), "w") as f:
            f.write(transcript)
        tar.add(os.path.join(folder, "a.txt"), "a.txt")
    sources["WAV in a shard"] = shard
    return sources


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--audio", default="data/smoke_test/LDC93S1.wav")
    parser.add_argument("--transcript", default="she had your dark suit in greasy wash water all year")
    parser.add_argument("--copies", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    features = FeatureSettings()
    duration = soundfile.info(args.audio).duration
    folder = tempfile.mkdtemp()
    try:
        print(f"{args.audio}: {duration:.2f} s; one thread; best of {REPEATS}")
        print(f"{'source':<16} {'decode: audio s/s':>18} {'x WAV':>6} {'+ MFCC: audio s/s':>18}")
        wav_cost = 0.0
        sources = make_formats(args.audio, folder, args.transcript)
        mfcc(load_sample_audio(read_source(sources["WAV"])[0], features.sample_rate), features)  # warm-up
        for kind, source in sources.items():
            [sample] = read_source(source)
            decode = best_of(lambda s=sample: load_sample_audio(s, features.sample_rate))
            both = best_of(lambda s=sample: mfcc(load_sample_audio(s, features.sample_rate), features))
            wav_cost = wav_cost or decode
            print(f"{kind:<16} {duration / decode:>18.0f} {decode / wav_cost:>6.1f} {duration / both:>18.0f}")

        mp3 = os.path.join(folder, "a.mp3")
        rows = "".join(f"copy{i}.mp3,{i},{args.transcript}\n" for i in range(args.copies))
        for i in range(args.copies):
            shutil.copy(mp3, os.path.join(folder, f"copy{i}.mp3"))
        csv = os.path.join(folder, "mp3s.csv")
        with open(csv, "w") as f:
            f.write("wav_filename,wav_filesize,transcript\n" + rows)
        samples = load_data_set([csv], load_alphabet("data/alphabet.txt"), features, "train")
        settings = LoaderSettings(features=features, feature_cache=os.path.join(folder, "cache"), data_workers=0)
        for epoch in (1, 2):
            start = time.perf_counter()
            for _ in data_loader(samples, 16, settings, train=True, epoch=epoch):
                pass
            took = time.perf_counter() - start
            print(f"MP3 data set, {args.copies} files, epoch {epoch} with --feature_cache: {took:.2f} s "
                  f"({args.copies * duration / took:.0f} audio s/s)")  # fmt: skip
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
