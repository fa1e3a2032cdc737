"""What fine-tuning forgets, and what rehearsal, interpolation with the source and checkpoint averaging keep.

    python benchmarks/forgetting.py --data ../shared/data/asterisk [--source runs/lm/en] [--epochs 6] \\
        [--seeds 4568 2 3] [--fractions 0.1 0.25 0.5] [--weights 0.1 0.2 0.3 0.4 0.5] [--average 5] \\
        [--jobs 2] [--work runs/forgetting]

An English source model (<data>/en; --source takes a finished one, read only, else it is trained in <work>/en as
benchmarks/transfer.py trains it), then Spanish (<data>/es) on the union of the two alphabets with
--drop_source_layers 1 --keep_shared_symbols true: plainly, and with --rehearsal_files <data>/en/train.csv at each
--rehearsal_fraction. Both test sets are --metrics_files sets, so every epoch reports the Spanish test CER (what
the model learns) and the English test CER (what it forgets), greedy, on the epoch's last weights. Then, from each
plain run's last weights, python -m coqui_stt_training.combine: the interpolation with the source at each weight
(--interpolate_sweep) and the average of its last --average epoch checkpoints, both reported on the same two sets.
Every setting runs with each seed; the tables give means and seed-to-seed ranges. Runs whose log is complete are
reused; an unfinished one is never trained on top of. --jobs N trains N runs at once, one intra-op thread each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transfer  # (the sibling benchmark's source model, hyper-parameters and alphabet writer)

METRICS = re.compile(r"Finished metrics for epoch (\d+) on (\S+) - loss: [0-9.]+ - greedy WER: [0-9.]+, CER: ([0-9.]+)")
REPORT = re.compile(r"^(.+?) on (\S+): greedy WER [0-9.]+, CER ([0-9.]+)$", re.M)  # the combine command's lines


def per_epoch(log_path: str, test_csv: str) -> list[float]:
    """A run's greedy CER on `test_csv` after each epoch, from its log ([] if there is no log)."""
    if not os.path.isfile(log_path):
        return []
    with open(log_path, encoding="utf-8") as f:
        found = [(int(m[1]), float(m[3])) for m in METRICS.finditer(f.read()) if m[2] == test_csv]
    return [cer for _, cer in sorted(found)]


def train_run(name: str, work: str, flags: list[str], epochs: int, tests: list[str]) -> str:
    """One Spanish run through the command line (reused if its log is complete); returns its directory."""
    save = os.path.join(work, name)
    if all(len(per_epoch(f"{save}.log", t)) == epochs for t in tests):
        print(f"{name}: reusing {save}.log", flush=True)
        return save
    if os.path.exists(save):
        sys.exit(f"{save} exists but its log is incomplete; remove both to run again")
    transfer.train(name, work, flags + ["--save_checkpoint_dir", save])
    return save


def combine(work: str, name: str, flags: list[str]) -> str:
    """python -m coqui_stt_training.combine, logged to <work>/<name>.log (reused when complete)."""
    log_path = os.path.join(work, f"{name}.log")
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8") as f:
            text = f.read()
        if REPORT.search(text):
            return text
    command = [sys.executable, "-m", "coqui_stt_training.combine", *flags]
    done = subprocess.run(command, capture_output=True, text=True)
    text = " ".join(command) + "\n" + done.stdout + done.stderr
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(text)
    if done.returncode:
        sys.exit(f"{name} failed (exit {done.returncode}); see {log_path}")
    return text


def reported(text: str, test_csv: str) -> dict[str, float]:
    """{what: CER} of the combine command's report lines for one test set ("Interpolation weight 0.3", ...)."""
    return {m[1]: float(m[3]) for m in REPORT.finditer(text) if m[2] == test_csv}


def summary(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with en/ and es/ train/dev/test CSVs")
    parser.add_argument("--source", default="", help="a finished English checkpoint directory (read only)")
    parser.add_argument("--source_epochs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[transfer.DEFAULT_SEED, 2, 3])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--average", type=int, default=5, help="average the last N epoch checkpoints")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--work", default="runs/forgetting")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    en, es = os.path.join(args.data, "en"), os.path.join(args.data, "es")
    en_test, es_test = f"{en}/test.csv", f"{es}/test.csv"
    source = args.source or transfer.source_model(
        "en", args.data, "en", args.work, args.source_epochs, ["--alphabet_config_path", "data/alphabet.txt"]
    )
    alphabet = os.path.join(args.work, "en-es-alphabet.txt")
    transfer.write_alphabet([f"{d}/{p}.csv" for d in (en, es) for p in ("train", "dev", "test")], alphabet)
    common = ["--alphabet_config_path", alphabet, "--load_checkpoint_dir", source, "--drop_source_layers", "1",
              "--keep_shared_symbols", "true", "--train_files", f"{es}/train.csv", "--dev_files", f"{es}/dev.csv",
              "--metrics_files", es_test, en_test, "--epochs", str(args.epochs), "--max_to_keep", str(args.epochs),
              "--checkpoint_secs", "0"]  # fmt: skip
    if args.jobs > 1:
        common += ["--intra_op_parallelism_threads", "1"]
    settings = {"plain": []} | {
        f"rehearsal {f}": ["--rehearsal_files", f"{en}/train.csv", "--rehearsal_fraction", str(f)]
        for f in args.fractions
    }
    runs = {
        (setting, seed): (f"es-{setting.replace(' ', '')}-seed{seed}", flags + ["--random_seed", str(seed)])
        for seed in args.seeds
        for setting, flags in settings.items()
    }
    started = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            key: pool.submit(train_run, name, args.work, common + flags, args.epochs, [es_test, en_test])
            for key, (name, flags) in runs.items()
        }
        saved = {key: future.result() for key, future in futures.items()}
    print(f"trained in {time.time() - started:.0f} s", flush=True)

    # the source's own English CER: where every run starts from
    start = combine(args.work, "source-report", ["--checkpoint_dir", source, "--report_files", en_test,
                                                 "--audio_sample_rate", "8000"])  # fmt: skip
    (source_en,) = reported(start, en_test).values()
    print(f"\nThe English source: English test CER {source_en:.3f}")

    rows: dict[str, tuple[list[float], list[float]]] = {}  # setting: (Spanish CERs, English CERs), one per seed
    for (setting, _), directory in saved.items():
        spanish, english = rows.setdefault(setting, ([], []))
        spanish.append(per_epoch(f"{directory}.log", es_test)[-1])
        english.append(per_epoch(f"{directory}.log", en_test)[-1])
    for seed in args.seeds:
        plain = saved[("plain", seed)]
        sweep = combine(args.work, f"es-plain-seed{seed}-interpolate", [
            "--checkpoint_dir", plain, "--load_evaluate", "last", "--interpolate_with", source,
            "--interpolate_sweep", *map(str, args.weights), "--report_files", es_test, en_test,
            "--audio_sample_rate", "8000"])  # fmt: skip
        for weight in args.weights:
            spanish, english = rows.setdefault(f"plain, interpolated with the source at {weight:g}", ([], []))
            spanish.append(reported(sweep, es_test)[f"Interpolation weight {weight:g}"])
            english.append(reported(sweep, en_test)[f"Interpolation weight {weight:g}"])
        averaged = combine(args.work, f"es-plain-seed{seed}-average", [
            "--checkpoint_dir", plain, "--average_last", str(args.average), "--report_files", es_test, en_test,
            "--output_dir", os.path.join(args.work, f"es-plain-seed{seed}-average{args.average}"),
            "--audio_sample_rate", "8000"])  # fmt: skip
        spanish, english = rows.setdefault(f"plain, average of the last {args.average}", ([], []))
        spanish.append(reported(averaged, es_test)[f"Average of {args.average} checkpoints"])
        english.append(reported(averaged, en_test)[f"Average of {args.average} checkpoints"])

    plain_es, plain_en = (float(np.mean(v)) for v in rows["plain"])
    lost = plain_en - source_en
    print(f"\nAfter {args.epochs} epochs, greedy CER, mean (range) over seeds {' '.join(map(str, args.seeds))}:\n")
    print("| setting | Spanish test CER | English test CER | English CER rise / plain's | Spanish vs plain |")
    print("|---|---:|---:|---:|---:|")
    for setting, (spanish, english) in rows.items():
        rise = (float(np.mean(english)) - source_en) / lost if lost > 0 else float("nan")
        print(f"| {setting} | {summary(spanish)} | {summary(english)} | {rise:.2f} | "
              f"{float(np.mean(spanish)) - plain_es:+.3f} |")  # fmt: skip
    print("\nPer epoch, mean over seeds (Spanish / English test CER):\n")
    header = list(settings)
    print("| epoch | " + " | ".join(header) + " |")
    print("|---:|" + "---:|" * len(header))
    for epoch in range(args.epochs):
        cells = []
        for setting in header:
            logs = [f"{saved[(setting, seed)]}.log" for seed in args.seeds]
            spanish = np.mean([per_epoch(p, es_test)[epoch] for p in logs])
            english = np.mean([per_epoch(p, en_test)[epoch] for p in logs])
            cells.append(f"{spanish:.3f} / {english:.3f}")
        print(f"| {epoch + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
