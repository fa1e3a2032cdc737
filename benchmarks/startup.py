"""Start-up of the README's LDC93S1 job: from the command to its first training step, and to its exit.

    python benchmarks/startup.py [--repeats 5] [--reference DIR]

Runs the README's command with --epochs 1 (and its test set), reading its output as it comes: the time to
"STARTING Optimization" (imports, the data check, the model, the dummy run), to its last line, and to the
process's exit. --reference DIR (a checkout of other code, e.g. `git worktree add /tmp/before HEAD~1`) runs
the same command from there too, alternating with this tree's, for a ratio measured in the same sitting.
Each figure is the median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def job(tree: str, work: str) -> tuple[float, float, float]:
    """(first step, last line, exit) in seconds from the start of the command run in `tree`."""
    smoke = os.path.join(ROOT, "data", "smoke_test", "ldc93s1.csv")
    argv = [sys.executable, "-u", "-m", "coqui_stt_training.train", "--alphabet_config_path",
            os.path.join(ROOT, "data", "alphabet.txt"), "--train_files", smoke, "--dev_files", smoke,
            "--test_files", smoke, "--n_hidden", "100", "--epochs", "1", "--learning_rate", "0.001",
            "--dropout_rate", "0.05", "--checkpoint_dir", tempfile.mkdtemp(dir=work), "--show_progressbar",
            "false"]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert child.stdout is not None
    first_step = last_line = 0.0
    for line in child.stdout:
        last_line = time.perf_counter() - start
        if "STARTING Optimization" in line:
            first_step = last_line
    if child.wait() != 0 or not first_step:
        sys.exit(f"the job in {tree} failed (exit {child.returncode})")
    return first_step, last_line, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", help="another checkout to run the same command from, alternating")
    args = parser.parse_args()
    trees = {"this tree": ROOT} | ({"reference": os.path.abspath(args.reference)} if args.reference else {})
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for name, tree in trees.items():
                times[name].append(job(tree, work))
    print(f"README LDC93S1 job, --epochs 1, median of {args.repeats}:")
    medians = {name: [statistics.median(t[i] for t in runs) for i in range(3)] for name, runs in times.items()}
    for name, (first_step, last_line, exit_time) in medians.items():
        print(f"  {name:10s}: first step at {first_step:5.2f} s, last line at {last_line:5.2f} s, exit at "
              f"{exit_time:5.2f} s  ({trees[name]})")  # fmt: skip
    if args.reference:
        ours, theirs = medians["this tree"], medians["reference"]
        print(f"  this tree / reference: first step {ours[0] / theirs[0]:.2f}x, exit {ours[2] / theirs[2]:.2f}x")


if __name__ == "__main__":
    main()
