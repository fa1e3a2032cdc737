"""Where a training epoch's time goes, against what the training step alone allows (issue 34's profile).

    python benchmarks/epoch_profile.py --csv ../shared/data/asterisk/en/train.csv [--hidden 512 2048] \\
        [--batch 16] [--rate 16000] [--epochs 3] [--data_workers 1] [--work runs/epoch-profile]

For each n_hidden, in one run on this machine:
- the whole epoch as a user runs it: `python -m coqui_stt_training.train` on the CSV (--data_workers, no dev set,
  a `train` checkpoint each epoch) for 1 and for --epochs epochs; the difference over the extra epochs is the
  steady-state epoch (start-up, the data check, the dummy run and the first epoch's warm-up cancel out);
- the same epoch's batches made in this process, timed (decoding, resampling, MFCC, padding: the input pipeline
  on one core);
- the training step alone on those batches held in memory (a warm-up pass, then a timed one): forward with CTC,
  backward, and the TF-Adam update, each timed.
Throughputs are audio seconds per wall-clock second; "the rest" is what the epoch takes beyond its steps (waiting
for batches, the loop's Python, the checkpoint).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import torch

from coqui_stt_training.data.samples import load_data_set
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader, make_batches
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.features import FeatureSettings
from coqui_stt_training.model.loss import ctc_loss
from coqui_stt_training.model.optimizer import TFAdam

ALPHABET = "data/alphabet.txt"


def cli_training_seconds(csv: str, hidden: int, batch: int, rate: int, epochs: int, workers: int, work: str) -> float:
    """The trainer's own "FINISHED optimization in" time of a fresh command-line run."""
    directory = os.path.join(work, f"h{hidden}-e{epochs}")
    shutil.rmtree(directory, ignore_errors=True)
    command = [sys.executable, "-m", "coqui_stt_training.train", "--alphabet_config_path", ALPHABET,
               "--train_files", csv, "--n_hidden", str(hidden), "--train_batch_size", str(batch),
               "--audio_sample_rate", str(rate), "--epochs", str(epochs), "--checkpoint_dir", directory,
               "--show_progressbar", "false", "--data_workers", str(workers)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
    h, m, s = re.findall(r"FINISHED optimization in (\d+):(\d+):([0-9.]+)", done.stdout + done.stderr)[-1]
    return timedelta(hours=int(h), minutes=int(m), seconds=float(s)).total_seconds()


def profile(csv: str, hidden: int, batch: int, rate: int, epochs: int, workers: int, work: str) -> None:
    alphabet = load_alphabet(ALPHABET)
    features = FeatureSettings(sample_rate=rate)
    samples = load_data_set([csv], alphabet, features, "train")
    batches_of_epoch = make_batches(len(samples), batch, drop_last=True)
    audio = sum(samples[i].duration for b in batches_of_epoch for i in b)

    started = time.perf_counter()
    batches = list(data_loader(samples, batch, LoaderSettings(features=features, data_workers=0), train=True))
    data = time.perf_counter() - started

    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(hidden, alphabet.size + 1), dropout=(0.05, 0.05, 0.05, 0.05))
    model.reset_parameters()
    optimizer = TFAdam(model.trainable_parameters())
    model.train()
    for timed_pass in (False, True):
        forward = backward = update = 0.0
        for b in batches:
            t0 = time.perf_counter()
            loss = ctc_loss(model(b.features), b.feature_lengths, b.labels, b.label_lengths).mean()
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            optimizer.step()
            t3 = time.perf_counter()
            if timed_pass:
                forward, backward, update = forward + t1 - t0, backward + t2 - t1, update + t3 - t2
    step = forward + backward + update

    one = cli_training_seconds(csv, hidden, batch, rate, 1, workers, work)
    several = cli_training_seconds(csv, hidden, batch, rate, epochs, workers, work)
    epoch = (several - one) / (epochs - 1)
    rest = epoch - step
    print(
        f"\nn_hidden {hidden}, batch {batch}, {rate} Hz, {torch.get_num_threads()} threads, --data_workers {workers}: "
        f"{len(batches)} steps, "
        f"{audio:.0f} audio s per epoch"
    )
    print(f"  step alone           {step:7.1f} s  {audio / step:6.1f} audio s/s")
    print(f"  whole epoch (CLI)    {epoch:7.1f} s  {audio / epoch:6.1f} audio s/s  = {step / epoch:.0%} of the step's")
    print("  where the epoch goes:")
    for name, seconds in (("forward + CTC", forward), ("backward", backward), ("TF-Adam update", update),
                          ("the rest: waiting, loop, checkpoint", rest)):  # fmt: skip
        print(f"    {name:36s} {seconds:7.1f} s  {seconds / epoch:5.1%}")
    print(f"  the input pipeline alone, one core: {data:.1f} s ({audio / data:.0f} audio s/s)")
    print(f"  (command line: {one:.1f} s for 1 epoch, {several:.1f} s for {epochs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="a training CSV of real speech")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=int, default=16000, help="--audio_sample_rate (the audio is resampled to it)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the longer command-line run (2 or more)")
    parser.add_argument("--data_workers", type=int, nargs="+", default=[1], help="each is profiled")
    parser.add_argument("--work", default="runs/epoch-profile")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more: the steady-state epoch is the difference of two runs")
    os.makedirs(args.work, exist_ok=True)
    for hidden in args.hidden:
        for workers in args.data_workers:
            profile(args.csv, hidden, args.batch, args.rate, args.epochs, workers, args.work)


if __name__ == "__main__":
    main()
