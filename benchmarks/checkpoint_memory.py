"""Memory and time to load a release-sized Coqui checkpoint (n_hidden 2048, CuDNN-trained, ~700 MB).

    python benchmarks/checkpoint_memory.py [--work /tmp/ckpt-bench] [--n_hidden 2048]

Synthesises, with our TF writer, a checkpoint holding what Coqui's English release holds: dense
layers with Adam moments, the canonical LSTM kernel and bias (no moments) and the CuDNN opaque kernel
with its moments. Then, in a fresh process for each format, builds the model and optimiser and loads
the checkpoint into them, printing load time and memory from the kernel's own accounting
(/proc/self/status: VmRSS before, VmHWM peak after). The same tensors saved in our safetensors format
are measured too, read by our reader and by the safetensors package's safe_open. Target: peak RSS below
1.5x the checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class SafeOpenReader:
    """The safetensors package's own reader (safetensors.safe_open), behind the reader interface that
    load_into uses, to compare it with ours."""

    def __init__(self, prefix: str):
        import safetensors

        self.file = safetensors.safe_open(prefix + ".safetensors", "numpy")
        self.keys = set(self.file.keys())

    def __contains__(self, name: str) -> bool:
        return name in self.keys

    def names(self) -> list[str]:
        return sorted(self.keys)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.file.get_slice(name).get_shape())

    def dtype(self, name: str) -> np.dtype:
        return np.dtype({"F32": np.float32, "I64": np.int64}[self.file.get_slice(name).get_dtype()])

    def get(self, name: str) -> np.ndarray:
        return self.file.get_tensor(name)


def measure(prefix: str, n_hidden: int, reader: str) -> None:
    """Child process: import, build, load; print one JSON line."""
    import torch

    from coqui_stt_training.checkpoints.load import load_into
    from coqui_stt_training.checkpoints.store import open_checkpoint
    from coqui_stt_training.flags.config import Config
    from coqui_stt_training.flags.options import adam_settings, model_settings
    from coqui_stt_training.model.alphabet import load_alphabet
    from coqui_stt_training.training.trainer import build_model

    baseline = rss_mib("VmRSS")
    config = Config(n_hidden=n_hidden)
    alphabet = load_alphabet("data/alphabet.txt")
    model, optimizer = build_model(model_settings(config), adam_settings(config), alphabet, torch.device("cpu"))
    for p in model.trainable_parameters():
        optimizer.slots(p)  # the moments exist in any training run; allocate them before loading
    built = rss_mib("VmRSS")
    started = time.perf_counter()
    opened = SafeOpenReader(prefix) if reader == "safe_open" else open_checkpoint(prefix)
    load_into(prefix, model, optimizer, config.learning_rate, reader=opened)
    seconds = time.perf_counter() - started
    print(json.dumps({"baseline_mib": baseline, "built_mib": built, "peak_mib": rss_mib("VmHWM"), "load_s": seconds}))


def synthesise(directory: str, n_hidden: int) -> tuple[str, str]:
    """Write the TF checkpoint and the same tensors as safetensors; return both prefixes."""
    import safetensors.numpy
    import torch

    from coqui_stt_training.checkpoints.layout import to_tensors
    from coqui_stt_training.formats.tf_bundle import write_tf_checkpoint
    from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
    from coqui_stt_training.model.optimizer import TFAdam

    model = DeepSpeech(ModelDimensions(n_hidden, 29))
    optimizer = TFAdam(model.trainable_parameters())
    rng = np.random.default_rng(0)
    for p in model.trainable_parameters():
        for slot in optimizer.slots(p):
            slot.copy_(torch.from_numpy(rng.random(p.shape, dtype=np.float32)))
    tensors = to_tensors(model, optimizer, global_step=233784)
    del model, optimizer
    lstm = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
    for name in (f"{lstm}/kernel/Adam", f"{lstm}/kernel/Adam_1", f"{lstm}/bias/Adam", f"{lstm}/bias/Adam_1"):
        del tensors[name]  # CuDNN training leaves the canonical LSTM without moments
    opaque = 4 * n_hidden * n_hidden * 2 + 8 * n_hidden
    for name in ("cudnn_lstm/opaque_kernel", "cudnn_lstm/opaque_kernel/Adam", "cudnn_lstm/opaque_kernel/Adam_1"):
        tensors[name] = rng.random(opaque, dtype=np.float32)
    os.makedirs(directory, exist_ok=True)
    tf_prefix, st_prefix = os.path.join(directory, "tf", "best_dev-233784"), os.path.join(directory, "st", "best_dev")
    os.makedirs(os.path.dirname(tf_prefix), exist_ok=True)
    os.makedirs(os.path.dirname(st_prefix), exist_ok=True)
    write_tf_checkpoint(tf_prefix, tensors)
    safetensors.numpy.save_file(tensors, st_prefix + ".safetensors")
    return tf_prefix, st_prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/checkpoint-memory-bench")
    parser.add_argument("--n_hidden", type=int, default=2048)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--reader", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.n_hidden, args.reader)
    started = time.perf_counter()
    tf_prefix, st_prefix = synthesise(args.work, args.n_hidden)
    print(f"synthesised in {time.perf_counter() - started:.1f} s", flush=True)
    for label, prefix, files, reader in (
        ("Coqui/TF V2", tf_prefix, [".index", ".data-00000-of-00001"], "ours"),
        ("safetensors", st_prefix, [".safetensors"], "ours"),
        ("safetensors read by safetensors.safe_open", st_prefix, [".safetensors"], "safe_open"),
    ):
        size = sum(os.path.getsize(prefix + ext) for ext in files) / 2**20
        out = subprocess.run(
            [sys.executable, __file__, "--measure", prefix, "--n_hidden", str(args.n_hidden), "--reader", reader],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{label}: {size:.0f} MiB checkpoint, n_hidden {args.n_hidden}; load {r['load_s']:.2f} s; "
            f"RSS after imports {r['baseline_mib']:.0f} MiB, with model and optimiser {r['built_mib']:.0f} MiB, "
            f"peak {r['peak_mib']:.0f} MiB = {r['peak_mib'] / size:.2f}x the checkpoint "
            f"(loading itself added {r['peak_mib'] - r['built_mib']:.0f} MiB at peak)",
            flush=True,
        )


if __name__ == "__main__":
    main()
