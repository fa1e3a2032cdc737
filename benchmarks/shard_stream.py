"""WebDataset shards through the training input pipeline: samples per second and peak memory, against the
number of samples.

    python benchmarks/shard_stream.py [--samples 1000 5000 10000] [--per_shard 1000] [--pipe]

Shards of short clips (the first second of LDC93S1 at 16 kHz, as WAV members with txt transcripts, 32 KB
each) are written to a temporary folder, then, for each count, read as a --train_files source (indexed in
place), checked and batched as training does (data_loader, batch 16, no workers), every batch's features
computed. Each count runs in a fresh process so that its peak resident memory is its own. With --pipe each shard
is read as `pipe:cat SHARD`, a stream: indexed from the command's output, then read by running it again.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import soundfile
import torch

from coqui_stt_training.data.samples import load_data_set
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.features import FeatureSettings

TRANSCRIPT = "she had your dark suit"


def write_shards(folder: str, count: int, per_shard: int) -> None:
    samples, rate = soundfile.read("data/smoke_test/LDC93S1.wav", dtype="int16")
    clip = io.BytesIO()
    soundfile.write(clip, samples[:rate], rate, format="WAV", subtype="PCM_16")
    wav, text = clip.getvalue(), TRANSCRIPT.encode()
    for first in range(0, count, per_shard):
        with tarfile.open(os.path.join(folder, f"shard-{first // per_shard:05d}.tar"), "w") as tar:
            for i in range(first, min(count, first + per_shard)):
                for name, data in ((f"{i:08d}.wav", wav), (f"{i:08d}.txt", text)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def measure(folder: str, count: int, per_shard: int, pipe: bool) -> None:
    """One count, in this process: print samples/s and peak RSS."""
    torch.set_num_threads(1)
    shards = sorted(os.listdir(folder))[: -(-count // per_shard)]
    features = FeatureSettings()
    start = time.perf_counter()
    samples = []
    for shard in shards:
        source = ("pipe:cat " if pipe else "") + os.path.join(folder, shard)
        samples += load_data_set([source], load_alphabet("data/alphabet.txt"), features, "train")
    indexed = time.perf_counter() - start
    settings = LoaderSettings(features=features, data_workers=0)
    n = 0
    for batch in data_loader(samples, 16, settings, train=True):
        n += len(batch.samples)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count:>7} samples ({len(shards)} shards): index+check {indexed:.1f} s, all {took:.1f} s, "
          f"{n / took:.0f} samples/s, peak RSS {peak:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--per_shard", type=int, default=1000)
    parser.add_argument("--pipe", action="store_true", help="read each shard as pipe:cat SHARD")
    parser.add_argument("--measure", default="", help=argparse.SUPPRESS)  # folder: the child process's run
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.samples[0], args.per_shard, args.pipe)
        return
    folder = tempfile.mkdtemp()
    try:
        write_shards(folder, max(args.samples), args.per_shard)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20
        how = "as pipe:cat SHARD" if args.pipe else "indexed in place"
        print(f"{max(args.samples)} samples of 1 s in shards of {args.per_shard} ({size:.0f} MiB), {how}; one thread")
        for count in args.samples:
            subprocess.run([sys.executable, __file__, "--measure", folder, "--samples", str(count),
                            "--per_shard", str(args.per_shard)] + ["--pipe"] * args.pipe, check=True)  # fmt: skip
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
