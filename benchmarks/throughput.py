"""Training throughput and feature-extraction speed on this machine.

    python benchmarks/throughput.py [--hidden 2048 512] [--batch 16] [--seconds 4] [--steps 3]

Prints, in one run: (0) this machine's fp32 matrix-multiply peak (the best of large square GEMMs),
(1) MFCC extraction alone, batched, (2) the whole input pipeline (decode + resample + MFCC) on real
files, and (3) a full training step (forward, CTC, backward, TF-Adam) at each n_hidden, in audio
seconds per wall-clock second and as a fraction of the peak: the step's matrix-multiply work
(forward 2 FLOPs per weight per frame, backward twice that) over its time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from coqui_stt_training.alphabet import load_alphabet
from coqui_stt_training.config import Config
from coqui_stt_training.data import data_loader, load_data_set
from coqui_stt_training.features import mfcc
from coqui_stt_training.filterbank import dct_matrix, mel_filterbank
from coqui_stt_training.model import DeepSpeech, ctc_loss
from coqui_stt_training.optimizer import TFAdam

RATE = 16000


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def numpy_mfcc(audio: np.ndarray) -> np.ndarray:
    """Reference: the same pipeline one signal at a time in plain vectorised numpy (float64 throughout)."""
    window, stride = 512, 320
    frames = np.lib.stride_tricks.sliding_window_view(audio, window)[::stride]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    magnitude = np.abs(np.fft.rfft(frames * hann, 512))
    mel = magnitude @ mel_filterbank(257, RATE, RATE / 2)
    return np.log(np.maximum(mel, 1e-12)) @ dct_matrix(40, 26)


def matmul_peak() -> float:
    """fp32 GFLOP/s of the best large square matrix multiply: what the BLAS can do on these cores."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n**3 / timed(lambda: a @ b, 3) / 1e9)
    print(f"peak      fp32 matrix multiply: {best:6.1f} GFLOP/s")
    return best


def training_flops(model: DeepSpeech, frames: int) -> float:
    """Matrix-multiply FLOPs of one training step: every weight is used once per frame (2 FLOPs) forward,
    and twice as much backward (gradients of the inputs and of the weights)."""
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2)
    return 3 * 2 * weights * frames


def bench_features(batch: int, seconds: float) -> None:
    audio = torch.randn(batch, int(seconds * RATE)) * 0.1
    per_call = timed(lambda: mfcc(audio, None, RATE), 10)
    signals = audio.double().numpy()
    reference = timed(lambda: [numpy_mfcc(x) for x in signals], 10)
    print(
        f"features  MFCC batch {batch} x {seconds:.0f} s: {per_call * 1000:8.1f} ms/batch, "
        f"{batch * seconds / per_call:10.0f} audio s/s ({reference / per_call:.1f}x the numpy reference's "
        f"{batch * seconds / reference:.0f} audio s/s)"
    )


def bench_pipeline(csv_path: str, batch: int) -> None:
    config = Config(audio_sample_rate=8000 if "asterisk" in csv_path else RATE, data_workers=0)
    samples = load_data_set([csv_path], load_alphabet("data/alphabet.txt"), config, "dev")
    start = time.perf_counter()
    audio_seconds = sum(b.audio_seconds for b in data_loader(samples, batch, config, train=False))
    elapsed = time.perf_counter() - start
    print(
        f"pipeline  decode+resample+MFCC on {csv_path} ({len(samples)} files): {audio_seconds / elapsed:10.0f} audio s/s"
    )


def bench_training(hidden: int, batch: int, seconds: float, steps: int, peak: float) -> None:
    frames = 1 + (int(seconds * RATE) - 512) // 320
    torch.manual_seed(0)
    model = DeepSpeech(hidden, 29, dropout=(0.05, 0.05, 0.05, 0.05))
    model.reset_parameters()
    optimizer = TFAdam(model.trainable_parameters())
    features = torch.randn(batch, frames, 26) * 10
    lengths = torch.full((batch,), frames)
    labels = torch.randint(0, 28, (batch * 50,))
    label_lengths = torch.full((batch,), 50)
    model.train()

    def step():
        loss = ctc_loss(model(features), lengths, labels, label_lengths).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    per_step = timed(step, steps)
    params = sum(p.numel() for p in model.parameters())
    achieved = training_flops(model, batch * frames) / per_step / 1e9
    print(
        f"training  n_hidden {hidden:5d} ({params / 1e6:5.1f} M params), batch {batch} x {seconds:.0f} s: "
        f"{per_step:7.2f} s/step, {batch * seconds / per_step:8.1f} audio s/s, {achieved:6.1f} GFLOP/s = "
        f"{achieved / peak:4.0%} of peak"
    )


def bench_input_wait(csv_path: str, hidden: int, batch: int, batches: int) -> None:
    """Real training steps on real files: how much of the time the trainer waits for its next batch,
    with features computed in the training process, in one data worker, and read from the cache."""
    alphabet = load_alphabet("data/alphabet.txt")
    rate = 8000 if "asterisk" in csv_path else RATE
    samples = load_data_set([csv_path], alphabet, Config(audio_sample_rate=rate), "train")[-batch * batches :]
    cache = tempfile.mkdtemp(prefix="feature-cache-")
    for label, workers, cached in (
        ("in the training process", 0, False),
        ("1 data worker", 1, False),
        ("in the training process, cached", 0, True),
        ("1 data worker, cached", 1, True),
    ):
        config = Config(audio_sample_rate=rate, data_workers=workers, feature_cache=cache if cached else "")
        if cached:  # fill the cache first, as a first epoch does
            for _ in data_loader(samples, batch, config, train=True):
                pass
        torch.manual_seed(0)
        model = DeepSpeech(hidden, alphabet.size + 1, dropout=(0.05,) * 4)
        optimizer = TFAdam(model.trainable_parameters())
        model.train()
        waited, audio_seconds, start = 0.0, 0.0, time.perf_counter()
        loader = iter(data_loader(samples, batch, config, train=True))
        while True:
            asked = time.perf_counter()
            try:
                b = next(loader)
            except StopIteration:
                break
            waited += time.perf_counter() - asked
            loss = ctc_loss(model(b.features), b.feature_lengths, b.labels, b.label_lengths).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            audio_seconds += b.audio_seconds
        total = time.perf_counter() - start
        print(
            f"input     n_hidden {hidden}, batch {batch}, {label:32s}: {audio_seconds / total:7.1f} audio s/s, "
            f"waiting for data {waited / total:5.1%} of the time"
        )
    shutil.rmtree(cache)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, nargs="+", default=[2048, 512])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--csv", default="../shared/data/asterisk/en/dev.csv")
    parser.add_argument("--train_csv", default="../shared/data/asterisk/en/train.csv")
    parser.add_argument("--input_batches", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    peak = matmul_peak()
    bench_features(args.batch, args.seconds)
    if os.path.isfile(args.csv):
        bench_pipeline(args.csv, args.batch)
    if os.path.isfile(args.train_csv):
        bench_input_wait(args.train_csv, 512, args.batch, args.input_batches)
    for hidden in args.hidden:
        bench_training(hidden, args.batch, args.seconds, args.steps, peak)


if __name__ == "__main__":
    main()
