"""benchmarks/inference.py runs in CI at a small size, so that the script behind docs/benchmarks.md's
inference figures cannot rot: both exports streamed, timed, and the int8 products' floor beside them."""

import os
import re
import subprocess
import sys

from tests.helpers import ROOT


def test_the_inference_benchmark_runs_at_a_small_size():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "inference.py"), "--hidden", "64",
                           "--seconds", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    rtfs = dict(re.findall(r"acoustic model, (float32|int8) \(\d+ MiB\): RTF (\d+\.\d+)", out))
    assert set(rtfs) == {"float32", "int8"}, out
    floor = re.search(r"matrix products alone.*: RTF (\d+\.\d+) \(the LSTM's recurrent one (\d+\.\d+)", out)
    assert floor and float(floor.group(1)) >= float(floor.group(2)), out
    assert "beam search width 500" in out, out
