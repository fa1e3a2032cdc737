"""Where a training epoch's time goes, against what the training step alone allows (issue 34's profile).

    python benchmarks/epoch_profile.py --csv ../shared/data/asterisk/en/train.csv [--hidden 512 2048] \\
        [--batch 16] [--rate 16000] [--epochs 4] [--repeats 3] [--data_workers 1] [--baseline TREE] \\
        [--work runs/epoch-profile]

The CSV's audio is first written at --rate as 16-bit WAV under --work (once), so that no run resamples. Then,
for each n_hidden, in one run on this machine:
- the whole epoch as a user runs it: `python -m coqui_stt_training.train` on that CSV (--data_workers, no dev
  set, a `train` checkpoint each epoch) for --epochs epochs, each "Finished training epoch" line time-stamped as
  it comes; an epoch is the time from one such line to the next after the first epoch's (a whole cycle: the
  checkpoint, the next epoch's loader, its steps), and the steady-state epoch the fastest of those over
  --repeats runs. With --baseline, the same for the package in another source tree (a worktree of an earlier
  commit), its runs alternating with ours;
- the same epoch's batches made in this process, timed (decoding, MFCC, padding: the input pipeline, one core);
- the training step alone on those batches held in memory (a warm-up pass, then the fastest of --repeats
  timed passes): forward with CTC, backward, and the TF-Adam update, each timed.
These machines are shared: a neighbour's load only ever adds time, so each figure is the fastest of several.
Throughputs are audio seconds per wall-clock second; "the rest" is what the epoch takes beyond its steps (waiting
for batches, the loop's Python, the checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import soundfile
import torch

from coqui_stt_training.data.audio import load_audio, to_pcm16
from coqui_stt_training.data.samples import csv_text, load_data_set
from coqui_stt_training.feeding.batches import LoaderSettings, data_loader, make_batches
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.features import FeatureSettings
from coqui_stt_training.model.loss import ctc_loss
from coqui_stt_training.model.optimizer import TFAdam
from coqui_stt_training.system.atomic_files import write_file_atomically

ALPHABET = os.path.abspath("data/alphabet.txt")
EPOCH_DONE = "Finished training epoch"


def audio_at_rate(csv_path: str, rate: int, work: str, every: int = 1) -> str:
    """A copy of the CSV (every `every`th row) whose audio is 16-bit WAV at `rate` (absolute paths), made once
    under `work`."""
    directory = os.path.join(work, f"audio-{rate}")
    name = os.path.splitext(os.path.basename(csv_path))[0] + (f"-every{every}" if every > 1 else "")
    out = os.path.join(work, f"{name}-{rate}.csv")
    if os.path.isfile(out):
        return os.path.abspath(out)
    os.makedirs(directory, exist_ok=True)
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i % every:
                continue
            source = os.path.join(os.path.dirname(os.path.abspath(csv_path)), row["wav_filename"])
            target = os.path.abspath(os.path.join(directory, f"{i:06d}.wav"))
            soundfile.write(target, to_pcm16(load_audio(source, rate)), rate, subtype="PCM_16")
            rows.append((target, os.path.getsize(target), row["transcript"]))
    write_file_atomically(out, csv_text(rows))
    return os.path.abspath(out)


def epoch_seconds(
    command: list[str], epochs: int, env: dict[str, str] | None = None, cwd: str | None = None
) -> list[float]:
    """Seconds from each "Finished training epoch" line of a training command to the next, after the first
    epoch's (start-up, data check, dummy run and the first epoch's warm-up left out): a whole cycle each."""
    environment = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    done_at = []
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdout=pipe, stderr=subprocess.STDOUT, text=True, env=environment, cwd=cwd) as p:
        assert p.stdout is not None
        tail: list[str] = []
        for line in p.stdout:
            if EPOCH_DONE in line:
                done_at.append(time.perf_counter())
            tail = (tail + [line])[-30:]
    if p.returncode or len(done_at) != epochs:
        sys.exit(f"{' '.join(command)} failed (exit {p.returncode}):\n{''.join(tail)}")
    return [b - a for a, b in itertools.pairwise(done_at)]


def train_command(
    python: str, csv_path: str, hidden: int, batch: int, rate: int, epochs: int, directory: str
) -> list[str]:
    """`python -m coqui_stt_training.train` (ours, or Coqui's from its own environment) on the flags both share,
    for a fresh run in `directory` (emptied first: a run there would resume)."""
    shutil.rmtree(directory, ignore_errors=True)
    return [python, "-m", "coqui_stt_training.train", "--alphabet_config_path", ALPHABET,
            "--train_files", csv_path, "--n_hidden", str(hidden), "--train_batch_size", str(batch),
            "--audio_sample_rate", str(rate), "--epochs", str(epochs), "--checkpoint_dir", directory,
            "--show_progressbar", "false"]  # fmt: skip


def our_command(csv_path: str, hidden: int, batch: int, rate: int, epochs: int, workers: int, directory: str):
    """Our trainer's command line, with its --data_workers."""
    return [
        *train_command(sys.executable, csv_path, hidden, batch, rate, epochs, directory),
        "--data_workers",
        str(workers),
    ]


@dataclass
class StepAlone:
    forward: float  # seconds of forward + CTC over the epoch's batches
    backward: float
    update: float
    data: float  # the input pipeline alone, one core
    audio: float  # audio seconds in the epoch's batches
    steps: int

    @property
    def step(self) -> float:
        return self.forward + self.backward + self.update


def step_alone(csv_path: str, hidden: int, batch: int, rate: int, repeats: int = 1) -> StepAlone:
    """The training step alone on an epoch's batches held in memory: the fastest of `repeats` passes over them,
    after a warm-up pass."""
    alphabet = load_alphabet(ALPHABET)
    features = FeatureSettings(sample_rate=rate)
    samples = load_data_set([csv_path], alphabet, features, "train")
    audio = sum(samples[i].duration for b in make_batches(len(samples), batch, drop_last=True) for i in b)
    started = time.perf_counter()
    batches = list(data_loader(samples, batch, LoaderSettings(features=features, data_workers=0), train=True))
    data = time.perf_counter() - started
    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(hidden, alphabet.size + 1), dropout=(0.05, 0.05, 0.05, 0.05))
    model.reset_parameters()
    optimizer = TFAdam(model.trainable_parameters())
    model.train()
    best = None
    for timed_pass in [False] + [True] * repeats:
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
            forward, backward, update = forward + t1 - t0, backward + t2 - t1, update + t3 - t2
        this = StepAlone(forward, backward, update, data, audio, len(batches))
        if timed_pass and (best is None or this.step < best.step):
            best = this
    assert best is not None
    return best


def profile(csv_path: str, hidden: int, batch: int, rate: int, epochs: int, workers: int, args) -> None:
    alone = step_alone(csv_path, hidden, batch, rate, args.repeats)
    directory = os.path.join(args.work, f"h{hidden}-w{workers}")
    ours, baseline = [], []
    for _ in range(args.repeats):
        ours += epoch_seconds(our_command(csv_path, hidden, batch, rate, epochs, workers, directory), epochs)
        if args.baseline:
            command = our_command(csv_path, hidden, batch, rate, epochs, workers, directory + "-baseline")
            baseline += epoch_seconds(command, epochs, {"PYTHONPATH": os.path.abspath(args.baseline)})
    epoch = min(ours)
    audio, step, rest = alone.audio, alone.step, epoch - alone.step
    print(
        f"\nn_hidden {hidden}, batch {batch}, {rate} Hz, {torch.get_num_threads()} threads, --data_workers {workers}: "
        f"{alone.steps} steps, {audio:.0f} audio s per epoch"
    )
    print(f"  step alone           {step:7.1f} s  {audio / step:6.1f} audio s/s")
    print(f"  whole epoch (CLI)    {epoch:7.1f} s  {audio / epoch:6.1f} audio s/s  = {step / epoch:.0%} of the step's")
    print(f"    (each epoch: {' '.join(f'{e:.1f}' for e in ours)} s)")
    if baseline:
        before = min(baseline)
        print(f"  baseline epoch       {before:7.1f} s  {audio / before:6.1f} audio s/s  = {step / before:.0%} "
              f"of the step's ({args.baseline})")  # fmt: skip
        print(f"    (each epoch: {' '.join(f'{e:.1f}' for e in baseline)} s)")
    print("  where the epoch goes:")
    for name, seconds in (("forward + CTC", alone.forward), ("backward", alone.backward),
                          ("TF-Adam update", alone.update), ("the rest: waiting, loop, checkpoint", rest)):  # fmt: skip
        print(f"    {name:36s} {seconds:7.1f} s  {seconds / epoch:5.1%}")
    print(f"  the input pipeline alone, one core: {alone.data:.1f} s ({audio / alone.data:.0f} audio s/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="a training CSV of real speech")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=int, default=16000, help="--audio_sample_rate (the audio is written at it)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each command-line run (2 or more)")
    parser.add_argument("--data_workers", type=int, nargs="+", default=[1], help="each is profiled")
    parser.add_argument("--repeats", type=int, default=3, help="each measurement's best of this many")
    parser.add_argument("--baseline", help="a source tree of an earlier version, whose epoch is measured too")
    parser.add_argument("--work", default="runs/epoch-profile")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more: the steady-state epoch is the time between two epochs' ends")
    os.makedirs(args.work, exist_ok=True)
    csv_path = audio_at_rate(args.csv, args.rate, args.work)
    for hidden in args.hidden:
        for workers in args.data_workers:
            profile(csv_path, hidden, args.batch, args.rate, args.epochs, workers, args)


if __name__ == "__main__":
    main()
