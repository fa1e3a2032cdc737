"""Does augmentation pay on small real data? English -> Russian transfer (drop 2) with and without --augment.

    python benchmarks/augment.py --data ../shared/data/asterisk [--epochs 15] [--work runs/augment]

The transfer benchmark's settings (benchmarks/transfer.py: an English source model on <data>/en, n_hidden
512, batch 1, learning rate 0.0005, dropout 0.3), then Russian with --drop_source_layers 2 twice, the same
epochs: without augmentation, and with AUGMENT below. The Russian test set is a --metrics_files set (greedy
CER every epoch, on the last weights) and the --test_files set (beam search on the best-dev checkpoint, at
the end). Runs whose log is complete in <work> are reused; every run is the command line a user would type.

    python benchmarks/augment.py --cost --data ../shared/data/asterisk [--repeats 2]

measures what AUGMENT costs instead: training on <data>/en/train.csv at n_hidden 512, batch 16, one data
worker, with and without it, alternating (off, on, off, on, ...), each run's training time as the log's
"FINISHED optimization" (after the data check and the dummy run), in audio seconds per second.

Why this line: fifteen minutes of one speaker in a quiet studio. What the model has not heard is other
rooms, levels and speaking rates, and what lets a small model memorise its data is the exact spectral
detail of each utterance; so a little reverb and level change (sample domain), tempo (speaking rate), and
SpecAugment's masks in time and frequency, each on a share of the samples so that the data itself is still
seen as it is.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import timedelta

import soundfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transfer  # (the sibling benchmark's runs and table)

AUGMENT = [
    "reverb[p=0.2,delay=20~10,decay=10~3]",
    "volume[p=0.3,dbfs=-10~8]",
    "tempo[p=0.5,factor=1~0.1]",
    "frequency_mask[p=0.5,n=1,size=3~1]",
    "time_mask[p=0.5,n=2,size=40~20]",
]


def beam_test_cer(log_path: str) -> float | None:
    with open(log_path, encoding="utf-8") as f:
        found = re.findall(r"Test on \S*test\.csv - WER: [0-9.]+, CER: ([0-9.]+)", f.read())
    return float(found[-1]) if found else None


def training_seconds(log: str) -> float:
    h, m, s = re.findall(r"FINISHED optimization in (\d+):(\d+):([0-9.]+)", log)[-1]
    return timedelta(hours=int(h), minutes=int(m), seconds=float(s)).total_seconds()


def cost(data: str, repeats: int, epochs: int) -> None:
    train_csv = os.path.join(data, "en", "train.csv")
    with open(train_csv, encoding="utf-8") as f:
        paths = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    folder = os.path.dirname(train_csv)
    audio = epochs * sum(soundfile.info(os.path.join(folder, p)).duration for p in paths)
    flags = ["--alphabet_config_path", "data/alphabet.txt", "--audio_sample_rate", "8000", "--n_hidden", "512",
             "--train_batch_size", "16", "--data_workers", "1", "--epochs", str(epochs), "--train_files",
             train_csv, "--show_progressbar", "false"]  # fmt: skip
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as work:
        for n in range(repeats):
            for name, extra in (("off", []), ("on", ["--augment", *AUGMENT])):
                command = [sys.executable, "-m", "coqui_stt_training.train", *flags, *extra,
                           "--checkpoint_dir", os.path.join(work, f"{name}-{n}")]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                rates[name].append(audio / training_seconds(done.stdout + done.stderr))
                print(f"augmentation {name}: {rates[name][-1]:.1f} audio s/s", flush=True)
    off, on = max(rates["off"]), max(rates["on"])
    print(f"\nn_hidden 512, batch 16, 1 data worker, best of {repeats}: off {off:.1f} audio s/s, on {on:.1f} "
          f"({on / off:.2f}x, a slowdown of {100 * (1 - on / off):.0f} %); augmented: {' '.join(AUGMENT)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with <source>/ and <target>/ train/dev/test CSVs")
    parser.add_argument("--source_epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--work", default="runs/augment")
    parser.add_argument("--cost", action="store_true", help="measure the line's training cost instead")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=("plain", "augmented"), help="one of the two runs (two machines' worth)")
    args = parser.parse_args()
    if args.cost:
        cost(args.data, args.repeats, epochs=2)
        return
    os.makedirs(args.work, exist_ok=True)
    english = transfer.source_model("en", args.data, "en", args.work, args.source_epochs,
                                    ["--alphabet_config_path", "data/alphabet.txt"])  # fmt: skip
    target = os.path.join(args.data, "ru")
    alphabet = os.path.join(args.work, "ru-alphabet.txt")
    transfer.write_alphabet([f"{target}/{part}.csv" for part in ("train", "dev", "test")], alphabet)
    common = ["--train_files", f"{target}/train.csv", "--dev_files", f"{target}/dev.csv",
              "--metrics_files", f"{target}/test.csv", "--test_files", f"{target}/test.csv",
              "--epochs", str(args.epochs), "--alphabet_config_path", alphabet,
              "--drop_source_layers", "2", "--load_checkpoint_dir", english]  # fmt: skip
    runs = {"drop 2": [], "drop 2, augmented": ["--augment", *AUGMENT]}
    if args.only:
        runs = {name: flags for name, flags in runs.items() if bool(flags) == (args.only == "augmented")}
    cers, beams = {}, {}
    for name, flags in runs.items():
        run = "ru-drop2" + ("-augmented" if flags else "")
        log = os.path.join(args.work, f"{run}.log")
        if os.path.isfile(log) and beam_test_cer(log) is not None:
            cers[name] = transfer.test_cers(log)
            print(f"{name}: reusing {log}", flush=True)
        else:
            save = os.path.join(args.work, run)
            if os.path.exists(save):
                sys.exit(f"{save} exists without a finished log; remove it to run again")
            cers[name] = transfer.train(run, args.work, common + flags + ["--save_checkpoint_dir", save])
        beams[name] = beam_test_cer(log)
    print(f"\nGreedy CER on {target}/test.csv per epoch (drop 2, n_hidden 512, batch 1, lr 0.0005); augmented: "
          + " ".join(AUGMENT) + "\n")  # fmt: skip
    print(transfer.table(cers))
    print("| best-dev, beam search | " + " | ".join(f"{beams[n]:.3f}" for n in runs) + " |")


if __name__ == "__main__":
    main()
