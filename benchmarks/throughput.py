"""Training throughput and feature-extraction speed on this machine.

    python benchmarks/throughput.py [--hidden 2048 512] [--batch 16] [--seconds 4] [--steps 3]

Prints, in one run: (0) this machine's float32 and bfloat16 matrix-multiply peaks (the best of square GEMMs),
(1) MFCC extraction, alone and beside training steps, against a BLAS product for the filterbank,
(2) the whole input pipeline (decode + resample + MFCC) on real files, (3) how long real training
waits for its batches, and (4) a full training step (forward, CTC, backward, TF-Adam) at each
n_hidden, in float32 and with bfloat16 autocast, in audio seconds per wall-clock second and as a fraction
of its own peak: the step's matrix-multiply work (forward 2 FLOPs per weight per frame, backward twice that)
over its time. On a CPU without bfloat16 matrix units the autocast step runs at n_hidden 512 only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from coqui_stt_training.data.samples import load_data_set
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.features import (
    LOG_FLOOR,
    MEL_CHANNELS,
    N_INPUT,
    FeatureSettings,
    dct_matrix,
    mel_filterbank,
    mfcc,
    power_spectrogram,
)
from coqui_stt_training.model.loss import ctc_loss
from coqui_stt_training.model.optimizer import TFAdam
from coqui_stt_training.training.trainer import cpu_has_bfloat16_units

RATE = 16000
CPU = torch.device("cpu")


def timed(fn: Callable[[], object], repeats: int, device: torch.device = CPU) -> float:
    """Seconds per call, after one warm-up call (allocator, kernels); on a GPU, until its work is done."""
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mfcc_with_blas(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """The control arm: features.mfcc with the filterbank applied as a dense BLAS matrix product."""
    power = power_spectrogram(samples, settings)
    mel = np.sqrt(power.astype(np.float64)) @ mel_filterbank(
        power.shape[-1], settings.sample_rate, settings.sample_rate / 2
    )
    return (np.log(np.maximum(mel, LOG_FLOOR)) @ dct_matrix(MEL_CHANNELS, N_INPUT)).astype(np.float32)


def matmul_flops(dtype: torch.dtype, sizes: tuple[int, ...], device: torch.device = CPU) -> float:
    """FLOP/s of the best square matrix multiply of these sizes in `dtype`: what the device can do."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        best = max(best, 2 * n**3 / timed(lambda a=a, b=b: a @ b, 3, device))
    return best


def matmul_peak(dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (1024, 2048, 4096)) -> float:
    """GFLOP/s of the best large square matrix multiply in `dtype` on these cores, printed."""
    best = matmul_flops(dtype, sizes) / 1e9
    name = str(dtype).removeprefix("torch.")
    print(f"peak      {name:8s} matrix multiply: {best:6.1f} GFLOP/s (square, n = {', '.join(map(str, sizes))})")
    return best


def training_flops(model: DeepSpeech, frames: int) -> float:
    """Matrix-multiply FLOPs of one training step: every weight is used once per frame (2 FLOPs) forward,
    and twice as much backward (gradients of the inputs and of the weights)."""
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2)
    return 3 * 2 * weights * frames


def bench_features(batch: int, seconds: float) -> None:
    """MFCC alone, and beside a small model's training steps in the same process (as for a data set of
    fewer than 8 batches, or with --data_workers 0): the BLAS product's threads keep spinning on the
    cores torch then needs."""
    settings = FeatureSettings(RATE)
    signals = [
        np.random.default_rng(i).standard_normal(int(seconds * RATE)).astype(np.float32) * 0.1 for i in range(batch)
    ]
    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(100, 29))
    optimizer = TFAdam(model.trainable_parameters())
    features = torch.randn(1, 145, 26) * 10

    def step():
        loss = ctc_loss(model(features), torch.tensor([145]), torch.arange(40) % 28, torch.tensor([40])).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    alone = timed(step, 20)
    for label, compute in (
        ("features.mfcc (sparse filterbank)", mfcc),
        ("a BLAS product for the filterbank", mfcc_with_blas),
    ):
        per_batch = timed(lambda compute=compute: [compute(x, settings) for x in signals], 10)
        beside = timed(lambda compute=compute: (compute(signals[0][: 3 * RATE], settings), step()), 20)
        print(
            f"features  {label:34s}: batch {batch} x {seconds:.0f} s in {per_batch * 1000:6.1f} ms, "
            f"{batch * seconds / per_batch:6.0f} audio s/s; a 3 s file then an n_hidden 100 step: "
            f"{beside * 1000:5.1f} ms (the step alone {alone * 1000:.1f} ms)"
        )


def bench_pipeline(csv_path: str, batch: int) -> None:
    settings = LoaderSettings(FeatureSettings(8000 if "asterisk" in csv_path else RATE), data_workers=0)
    samples = load_data_set([csv_path], load_alphabet("data/alphabet.txt"), settings.features, "dev")
    start = time.perf_counter()
    batches = list(data_loader(samples, batch, settings, train=False))
    elapsed = time.perf_counter() - start
    audio_seconds = sum(s.duration for b in batches for s in b.samples)
    rate = audio_seconds / elapsed
    print(f"pipeline  decode+resample+MFCC on {csv_path} ({len(samples)} files): {rate:10.0f} audio s/s")


def bench_training(hidden: int, batch: int, seconds: float, steps: int, peak: float, autocast: bool = False) -> None:
    """One training step as Trainer.losses takes it; with `autocast`, bfloat16 as --automatic_mixed_precision
    gives it on CPU (the fraction is then of the bfloat16 peak)."""
    frames = 1 + (int(seconds * RATE) - 512) // 320
    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(hidden, 29), dropout=(0.05, 0.05, 0.05, 0.05))
    model.reset_parameters()
    optimizer = TFAdam(model.trainable_parameters())
    features = torch.randn(batch, frames, 26) * 10
    lengths = torch.full((batch,), frames)
    labels = torch.randint(0, 28, (batch * 50,))
    label_lengths = torch.full((batch,), 50)
    model.train()

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = model(features)
        loss = ctc_loss(logits, lengths, labels, label_lengths).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    per_step = timed(step, steps)
    params = sum(p.numel() for p in model.parameters())
    achieved = training_flops(model, batch * frames) / per_step / 1e9
    print(
        f"training  n_hidden {hidden:5d} ({params / 1e6:5.1f} M params), batch {batch} x {seconds:.0f} s, "
        f"{'autocast bfloat16' if autocast else 'float32':17s}: {per_step:7.2f} s/step, "
        f"{batch * seconds / per_step:8.1f} audio s/s, {achieved:6.1f} GFLOP/s = {achieved / peak:4.0%} of its peak"
    )


def train_waiting(model: DeepSpeech, loader, device: torch.device = CPU) -> tuple[float, float, float]:
    """Training steps (TF-Adam) on every batch `loader` gives: (seconds spent waiting for the next batch, audio
    seconds trained on, seconds in all)."""
    optimizer = TFAdam(model.trainable_parameters())
    model.train()
    waited, audio_seconds, start = 0.0, 0.0, time.perf_counter()
    batches = iter(loader)
    while True:
        asked = time.perf_counter()
        try:
            b = next(batches)
        except StopIteration:
            break
        waited += time.perf_counter() - asked
        logits = model(b.features.to(device, non_blocking=True))
        loss = ctc_loss(logits, b.feature_lengths, b.labels, b.label_lengths).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        audio_seconds += sum(s.duration for s in b.samples)
    synchronize(device)
    return waited, audio_seconds, time.perf_counter() - start


def bench_input_wait(csv_path: str, hidden: int, batch: int, batches: int) -> None:
    """Real training steps on real files: how much of the time the trainer waits for its next batch,
    with features computed in the training process, in one data worker, and read from the cache."""
    alphabet = load_alphabet("data/alphabet.txt")
    rate = 8000 if "asterisk" in csv_path else RATE
    samples = load_data_set([csv_path], alphabet, FeatureSettings(rate), "train")[-batch * batches :]
    cache = tempfile.mkdtemp(prefix="feature-cache-")
    for label, workers, cached in (
        ("in the training process", 0, False),
        ("1 data worker", 1, False),
        ("in the training process, cached", 0, True),
        ("1 data worker, cached", 1, True),
    ):
        settings = LoaderSettings(FeatureSettings(rate), cache if cached else "", data_workers=workers)
        if cached:  # fill the cache first, as a first epoch does
            for _ in data_loader(samples, batch, settings, train=True):
                pass
        torch.manual_seed(0)
        model = DeepSpeech(ModelDimensions(hidden, alphabet.size + 1), dropout=(0.05,) * 4)
        waited, audio_seconds, total = train_waiting(model, data_loader(samples, batch, settings, train=True))
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
    units = cpu_has_bfloat16_units()
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, CPU capability "
          f"{capability}, bfloat16 matrix units: {'yes' if units else 'no'}")  # fmt: skip
    peak = matmul_peak()
    # Software bfloat16 (no units) runs at about 1 GFLOP/s: the large sizes would take minutes.
    peak_bf16 = matmul_peak(torch.bfloat16, (1024, 2048, 4096) if units else (256, 512))
    bench_features(args.batch, args.seconds)
    if os.path.isfile(args.csv):
        bench_pipeline(args.csv, args.batch)
    if os.path.isfile(args.train_csv):
        bench_input_wait(args.train_csv, 512, args.batch, args.input_batches)
    for hidden in args.hidden:
        bench_training(hidden, args.batch, args.seconds, args.steps, peak)
        if units or hidden <= 512:  # one software-bfloat16 step at n_hidden 2048 takes several minutes
            bench_training(hidden, args.batch, args.seconds, args.steps if units else 1, peak_bf16, autocast=True)
        else:
            print(f"training  n_hidden {hidden:5d}, autocast bfloat16: not run, no bfloat16 units (and so training "
                  "runs in float32 with --automatic_mixed_precision on this CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
