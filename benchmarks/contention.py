"""The README's LDC93S1 job on an idle machine and beside a competing busy process, per thread setting.

    python benchmarks/contention.py [--epochs 300] [--threads default 1 2]

The competitor is a plain Python loop pinned to the last CPU this process may use (a neighbour's job on a
shared node). Each setting runs the job idle, then with the competitor; the ratio is the slowdown. "default"
gives no thread flag: what a user gets. OMP_WAIT_POLICY=ACTIVE in the environment gives OpenMP's own default,
as before the package chose PASSIVE.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

BUSY = "import os\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n"


def job(folder: str, epochs: int, threads: str) -> float:
    ckpt = os.path.join(folder, "ckpt")
    shutil.rmtree(ckpt, ignore_errors=True)
    argv = [sys.executable, "-m", "coqui_stt_training.train", "--alphabet_config_path", "data/alphabet.txt",
            "--train_files", "data/smoke_test/ldc93s1.csv", "--dev_files", "data/smoke_test/ldc93s1.csv",
            "--n_hidden", "100", "--epochs", str(epochs), "--learning_rate", "0.001", "--dropout_rate", "0.05",
            "--checkpoint_dir", ckpt, "--show_progressbar", "false", "--log_level", "2"]  # fmt: skip
    if threads != "default":
        argv += ["--intra_op_parallelism_threads", threads]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", nargs="+", default=["default", "1", "2"])
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    folder = tempfile.mkdtemp()
    policy = os.environ.get("OMP_WAIT_POLICY", "unset: the package's default, PASSIVE")
    print(f"README LDC93S1 job, {args.epochs} epochs, on CPUs {cpus}; competitor pinned to CPU {cpus[-1]}")
    print(f"OMP_WAIT_POLICY: {policy}")
    print(f"{'threads':>8} {'idle s':>8} {'busy s':>8} {'slowdown':>9}")
    try:
        for threads in args.threads:
            idle = job(folder, args.epochs, threads)
            competitor = subprocess.Popen([sys.executable, "-c", BUSY % cpus[-1]])
            try:
                busy = job(folder, args.epochs, threads)
            finally:
                competitor.kill()
                competitor.wait()
            print(f"{threads:>8} {idle:>8.1f} {busy:>8.1f} {busy / idle:>8.1f}x")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
