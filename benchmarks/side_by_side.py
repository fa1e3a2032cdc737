"""Training throughput of this project against the genuine Coqui STT 1.4.0, on the same CSV in one run (issue 34).

    python benchmarks/side_by_side.py --csv ../shared/data/asterisk/en/train.csv \\
        --coqui_python ~/.cache/coqui-stt-torch/coqui-stt-training-1.4.0-py3.7/bin/python \\
        [--hidden 512 2048] [--batch 16] [--rate 16000] [--every 1] [--epochs 4] [--repeats 3] [--skip_batch_test] \\
        [--work runs/side-by-side]

Installs nothing. Coqui's trainer runs from the Python given (a Python 3.7 virtual environment with
`coqui-stt-training==1.4.0`; benchmarks/coqui-1.4.0-constraints.txt pins what still installs, see
docs/benchmarks.md); without --coqui_python only ours is measured. The CSV's audio is written once at --rate as
16-bit WAV, so neither trainer resamples. For each n_hidden: our training step alone on the epoch's batches (the
fastest of --repeats passes), then each trainer's command line for --epochs epochs (batch --batch, no dev set, a
checkpoint each epoch, each with its own defaults otherwise), ours and Coqui's alternating --repeats times; an
epoch is timed from one "Finished training epoch" line to the next after the first, and each trainer's
steady-state epoch is its fastest (these machines are shared: a neighbour's load only ever adds time).
--skip_batch_test passes both trainers that flag: Coqui's dummy run, three of the longest batches, takes more
than 8 minutes at n_hidden 2048 and is no part of the steady state. Figures are audio seconds per wall-clock
second.
"""

from __future__ import annotations

import argparse
import os

import torch
from epoch_profile import audio_at_rate, epoch_seconds, our_command, step_alone, train_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="a training CSV of real speech")
    parser.add_argument("--coqui_python", help="the python of a Coqui STT 1.4.0 environment")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--every", type=int, default=1, help="train on every Nth row of the CSV only")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each command-line run (2 or more)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each trainer (and passes of the step)")
    parser.add_argument("--skip_batch_test", action="store_true", help="pass --skip_batch_test true to both")
    parser.add_argument("--work", default="runs/side-by-side")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be 2 or more: the steady-state epoch is the time between two epochs' ends")
    if args.coqui_python and not os.path.isfile(args.coqui_python):
        parser.error(f"--coqui_python {args.coqui_python}: no such file")
    os.makedirs(args.work, exist_ok=True)
    csv_path = audio_at_rate(args.csv, args.rate, args.work, args.every)
    rows_taken = f" (every {args.every}th row)" if args.every > 1 else ""
    print(f"{args.csv}{rows_taken} at {args.rate} Hz, batch {args.batch}, {args.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    rows = []
    for hidden in args.hidden:
        alone = step_alone(csv_path, hidden, args.batch, args.rate, args.repeats)
        where, extra = (
            os.path.join(args.work, f"h{hidden}"),
            ["--skip_batch_test", "true"] if args.skip_batch_test else [],
        )
        ours, coqui = [], []
        for _ in range(args.repeats):
            command = our_command(csv_path, hidden, args.batch, args.rate, args.epochs, 1, where + "-ours")
            ours += epoch_seconds(command + extra, args.epochs)
            if args.coqui_python:
                directory = os.path.abspath(where + "-coqui")
                command = train_command(
                    args.coqui_python, csv_path, hidden, args.batch, args.rate, args.epochs, directory
                )
                # run from there: from this checkout, `-m coqui_stt_training` would be ours
                coqui += epoch_seconds(command + extra, args.epochs, cwd=args.work)
        rows.append((hidden, alone, min(ours), min(coqui) if coqui else None))
        print_rows(rows[-1:])
    print("\nall:")
    print_rows(rows)


def print_rows(rows) -> None:
    for hidden, alone, ours, coqui in rows:
        audio = alone.audio
        line = (f"n_hidden {hidden:4d}: ours {audio / ours:6.1f} audio s/s (epoch {ours:6.1f} s, "
                f"{alone.step / ours:.0%} of the step alone's {audio / alone.step:.1f})")  # fmt: skip
        if coqui is not None:
            line += f"; Coqui 1.4.0 {audio / coqui:6.1f} audio s/s (epoch {coqui:6.1f} s)"
            line += f"; ours / Coqui {coqui / ours:.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
