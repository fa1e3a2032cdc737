"""The GPU check (benchmarks/gpu.py) runs in CI on the CPU with small sizes, so that its code cannot rot while
no GPU is at hand: the same checks, the same table."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_the_gpu_check_passes_on_the_cpu_with_small_sizes():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu.py"), "--device", "cpu", "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    table = out[out.index("\nCPU, torch ") :].splitlines()[2:]
    status = {name: state for name, state, _ in (re.split(r"\s{2,}", line.strip(), maxsplit=2) for line in table)}
    expected = {"fixtures": "PASS", "train": "PASS", "train, AMP": "PASS", "transfer": "PASS",
                "throughput fp32": "PASS", "throughput bf16": "PASS", "pipeline": "PASS", "memory": "n/a",
                "resume": "PASS"}  # fmt: skip
    assert status == expected, out
    assert "final tensors equal the uninterrupted run's" in out
