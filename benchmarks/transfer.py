"""Does transfer learning pay? Russian from scratch against Russian bootstrapped from an English model.

    python benchmarks/transfer.py --data ../shared/data/asterisk [--epochs 15] [--work runs/transfer]

Trains an English source model on <data>/en (kept in <work>/en and reused by later runs), then
trains Russian on <data>/ru three ways with the same epochs and hyper-parameters: from scratch,
with --drop_source_layers 1 and with --drop_source_layers 2 (learning rate forced to the same
value). The Russian test set is a --metrics_files set, so every epoch reports its greedy CER; the
script prints them as a table. With --bytes it does the same in --bytes_output_mode: an English
bytes model fine-tuned to Russian without dropping any layer, against Russian bytes from scratch.
With --from_export int8 the checkpoints are taken to be gone: the English model is exported as Coqui's
default int8 .tflite, and the --drops transfers start from that file instead (no Adam moments, int8
weights), beside the same transfers from the checkpoint (their logs are reused when present).
--from_export fp32 does the same from a float32 export, which tells the int8 weights' share of any
difference from the missing optimizer state's. --random_seed 4568 2 3 runs the Russian transfers with each of
those seeds (the trainer's default 4568 first; the others' names end in -seed<N>; the English source model
keeps its own) and prints the per-epoch means and the seed-to-seed range, to tell a difference from
run-to-run noise. A finished run's log is reused; an unfinished one is never trained on top of.
Every run goes through the command line exactly as a user would type it; logs are in <work>.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time

import numpy as np

DEFAULT_SEED = 4568  # the trainer's --random_seed default (Coqui's)
HYPER = [
    "--audio_sample_rate",
    "8000",
    "--n_hidden",
    "512",
    "--train_batch_size",
    "1",
    "--dev_batch_size",
    "16",
    "--test_batch_size",
    "16",
    "--learning_rate",
    "0.0005",
    "--dropout_rate",
    "0.3",
    "--force_initialize_learning_rate",
    "true",
    "--show_progressbar",
    "false",
    "--export_beam_width",
    "16",
]


def write_alphabet(csv_paths: list[str], path: str) -> None:
    chars: set[str] = set()
    for p in csv_paths:
        with open(p, encoding="utf-8", newline="") as f:
            chars.update(c for row in csv.DictReader(f) for c in row["transcript"])
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{c}\n" for c in sorted(chars)))


def train(name: str, work: str, flags: list[str]) -> list[float]:
    """Run one training command, log to <work>/<name>.log; return the test set's greedy CER per epoch."""
    log_path = os.path.join(work, f"{name}.log")
    command = [sys.executable, "-m", "coqui_stt_training.train"] + HYPER + flags
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        sys.exit(f"{name} failed (exit {status}); see {log_path}")
    cers = test_cers(log_path)
    print(
        f"{name}: {len(cers)} epochs in {time.time() - started:.0f} s; test CER by epoch "
        + " ".join(f"{c:.3f}" for c in cers),
        flush=True,
    )
    return cers


def test_cers(log_path: str) -> list[float]:
    with open(log_path, encoding="utf-8") as f:
        text = f.read()
    return [float(x) for x in re.findall(r"Finished metrics for epoch \d+ on \S*test\.csv .*?, CER: ([0-9.]+)", text)]


def export_tflite(checkpoint_dir: str, work: str, name: str, kind: str) -> str:
    """The source model as a .tflite (int8: Coqui's default), through the export command."""
    directory = os.path.join(work, f"{name}-export" if kind == "int8" else f"{name}-export-{kind}")
    path = os.path.join(directory, "output_graph.tflite")
    if os.path.isfile(path):
        print(f"{name}: reusing {path}", flush=True)
        return path
    quantize = "true" if kind == "int8" else "false"
    command = [sys.executable, "-m", "coqui_stt_training.export", "--checkpoint_dir", checkpoint_dir,
               "--export_dir", directory, "--audio_sample_rate", "8000", "--export_quantize", quantize]  # fmt: skip
    subprocess.run(command, check=True)
    return path


def source_model(name: str, data: str, source: str, work: str, epochs: int, extra: list[str]) -> str:
    directory = os.path.join(work, name)
    if os.path.isfile(os.path.join(directory, "best_dev_checkpoint")):
        print(f"{name}: reusing {directory}", flush=True)
        return directory
    sets = os.path.join(data, source)
    train(
        name,
        work,
        extra
        + [
            "--train_files",
            f"{sets}/train.csv",
            "--dev_files",
            f"{sets}/dev.csv",
            "--metrics_files",
            f"{sets}/test.csv",
            "--epochs",
            str(epochs),
            "--checkpoint_dir",
            directory,
        ],
    )
    return directory


def table(columns: dict[str, list[float]]) -> str:
    names = list(columns)
    lines = ["| epoch | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for epoch in range(max(len(c) for c in columns.values())):
        cells = [f"{columns[n][epoch]:.3f}" if epoch < len(columns[n]) else "" for n in names]
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    lines.append("| best | " + " | ".join(f"{min(columns[n]):.3f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with <source>/ and <target>/ train/dev/test CSVs")
    parser.add_argument("--source", default="en")
    parser.add_argument("--target", default="ru")
    parser.add_argument("--source_epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--work", default="runs/transfer")
    parser.add_argument("--bytes", action="store_true", help="also compare in --bytes_output_mode")
    parser.add_argument("--from_export", choices=("int8", "fp32"), help="transfer from a .tflite export too")
    parser.add_argument("--drops", type=int, nargs="+", default=[1, 2], help="with --from_export: which drops")
    parser.add_argument("--random_seed", type=int, nargs="+", default=[DEFAULT_SEED],
                        help="the Russian runs' seeds; with several, also the table of their means")  # fmt: skip
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    target = os.path.join(args.data, args.target)
    sets = [
        "--train_files",
        f"{target}/train.csv",
        "--dev_files",
        f"{target}/dev.csv",
        "--metrics_files",
        f"{target}/test.csv",
        "--epochs",
        str(args.epochs),
    ]

    english = source_model(
        args.source,
        args.data,
        args.source,
        args.work,
        args.source_epochs,
        ["--alphabet_config_path", "data/alphabet.txt"],
    )
    alphabet = os.path.join(args.work, f"{args.target}-alphabet.txt")
    write_alphabet([f"{target}/{part}.csv" for part in ("train", "dev", "test")], alphabet)
    runs = {
        "from scratch": [],
        "drop 1": ["--drop_source_layers", "1", "--load_checkpoint_dir", english],
        "drop 2": ["--drop_source_layers", "2", "--load_checkpoint_dir", english],
    }
    if args.from_export:
        exported = export_tflite(english, args.work, args.source, args.from_export)
        runs = {}
        for n in args.drops:
            runs[f"drop {n}"] = ["--drop_source_layers", str(n), "--load_checkpoint_dir", english]
            runs[f"drop {n} from {args.from_export} tflite"] = [
                "--drop_source_layers", str(n), "--load_checkpoint_dir", exported
            ]  # fmt: skip
    per_seed = []
    for seed in args.random_seed:
        suffix, seed_flag = ("", []) if seed == DEFAULT_SEED else (f"-seed{seed}", ["--random_seed", str(seed)])
        cers = {}
        for name, flags in runs.items():
            save = os.path.join(args.work, f"{args.target}-{name.replace(' ', '')}{suffix}")
            done = test_cers(f"{save}.log") if os.path.isfile(f"{save}.log") else []
            if len(done) == args.epochs:  # a finished run of this command: its log is the result
                cers[name] = done
                print(f"{name}{suffix}: reusing {save}.log; test CER by epoch " + " ".join(f"{c:.3f}" for c in done))
                continue
            if os.path.exists(save):
                sys.exit(f"{save} exists; remove it to run again")  # never train on top of an earlier result
            cers[name] = train(
                os.path.basename(save),
                args.work,
                sets + flags + seed_flag + ["--alphabet_config_path", alphabet, "--save_checkpoint_dir", save],
            )
        print(f"\nGreedy CER on {target}/test.csv per epoch ({args.target}, n_hidden 512, batch 1, lr 0.0005, "
              f"seed {seed}):\n")  # fmt: skip
        print(table(cers))
        per_seed.append(cers)
    if len(per_seed) > 1:
        means = {name: [float(np.mean(epoch)) for epoch in zip(*(c[name] for c in per_seed))] for name in runs}
        print(f"\nThe mean over seeds {' '.join(map(str, args.random_seed))} per epoch:\n")
        print(table(means))
        for name in runs:
            spread = [max(epoch) - min(epoch) for epoch in zip(*(c[name] for c in per_seed))]
            print(f"{name}: seed-to-seed range per epoch, mean {np.mean(spread):.3f}, largest {max(spread):.3f}")
        if args.from_export:
            for n in args.drops:
                plain, exported_cers = means[f"drop {n}"], means[f"drop {n} from {args.from_export} tflite"]
                behind = [b - a for a, b in zip(plain, exported_cers)]  # positive: the export's CER is higher
                gaps = [abs(g) for g in behind]
                within, worst = sum(g <= 0.02 for g in gaps), max(range(len(gaps)), key=gaps.__getitem__)
                print(f"drop {n}: the means of the export's and the checkpoint's transfers are within 0.02 at "
                      f"{within} of {len(gaps)} epochs; largest gap {gaps[worst]:.3f} (epoch {worst + 1}); the "
                      f"export's at most {max(behind):+.3f} behind")  # fmt: skip

    if args.bytes:
        english_bytes = source_model(
            f"{args.source}-bytes",
            args.data,
            args.source,
            args.work,
            args.source_epochs,
            ["--bytes_output_mode", "true"],
        )
        byte_runs = {"bytes from scratch": [], "bytes fine-tuned": ["--load_checkpoint_dir", english_bytes]}
        byte_cers = {}
        for name, flags in byte_runs.items():
            save = os.path.join(args.work, f"{args.target}-{name.replace(' ', '-')}")
            if os.path.exists(save):
                sys.exit(f"{save} exists; remove it to run again")
            byte_cers[name] = train(
                f"{args.target}-{name.replace(' ', '-')}",
                args.work,
                sets + flags + ["--bytes_output_mode", "true", "--save_checkpoint_dir", save],
            )
        print(f"\nBytes output mode, greedy CER on {target}/test.csv per epoch:\n")
        print(table(byte_cers))


if __name__ == "__main__":
    main()
