"""Peak memory of one training step against utterance length, measured, and what training/step_memory.py
estimates.

    python benchmarks/step_memory.py [--n_hidden 100 2048] [--seconds 5 30 120 600] [--threads 2]

Each case runs in a fresh process: the model and its Adam moments are built and warmed up on a short
utterance, the kernel's peak-RSS counter is reset (/proc/self/clear_refs), and one step (forward, CTC,
backward, Adam) runs on one utterance of N seconds (50 frames and 15 labels a second, as speech has).
Printed: the step's peak above the resident memory before it, training/step_memory.py's estimate, their ratio, and the
peak per minute of audio (which must not grow with the length: memory at most linear). The reference
in the same run is the previous code's loss, torch's own CTC kernel, whose tables grow with the square
of the length; and, for evaluation, forward() on the whole utterance against model.infer's chunks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASE = r"""
import json, sys, time
import torch
from coqui_stt_training.model.loss import ctc_loss, _torch_ctc
from coqui_stt_training.training.step_memory import step_bytes
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.optimizer import TFAdam

n_hidden, seconds, mode, threads = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

model = DeepSpeech(ModelDimensions(n_hidden, 29), 20.0, (0.05,) * 4)
optimizer = TFAdam([{"params": model.trainable_parameters()}], 0.001)
frames, labels = int(seconds * 50), int(seconds * 15)
generator = torch.Generator().manual_seed(0)
features = torch.randn(1, frames, 26, generator=generator)
target = torch.randint(0, 28, (labels,), generator=generator)
warm = torch.randn(1, 60, 26, generator=generator)
ctc_loss(model(warm), torch.tensor([60]), target[:10], torch.tensor([10])).sum().backward()
optimizer.step()
optimizer.zero_grad(set_to_none=True)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
started = time.time()
if mode in ("train", "train_torch_ctc"):
    model.train()
    logits = model(features)
    lengths, counts = torch.tensor([frames]), torch.tensor([labels])
    if mode == "train":
        loss = ctc_loss(logits, lengths, target, counts)
    else:
        loss = _torch_ctc(logits.float().log_softmax(-1), target, lengths, counts, 28)
    loss.sum().backward()
    optimizer.step()
else:
    model.eval()
    with torch.no_grad():
        logits = model(features) if mode == "eval_whole" else model.infer(features)
print(json.dumps({"peak": status("VmHWM") - before, "seconds_taken": time.time() - started,
                  "estimate": step_bytes(n_hidden, 29, [frames], [labels])}))
"""

MIB = 1 << 20


def measure(n_hidden: int, seconds: float, mode: str, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CASE, str(n_hidden), str(seconds), mode, str(threads)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_hidden", type=int, nargs="+", default=[100, 2048])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5, 30, 120, 600])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch_ctc_up_to", type=float, default=600, help="longest length for the reference")
    args = parser.parse_args()
    print("training step: peak above the resident memory before it (MiB); estimate: step_memory.py's step_bytes")
    print(f"{'n_hidden':>8} {'audio':>6} {'peak':>8} {'estimate':>9} {'peak/est':>8} {'MiB/min':>8} {'time':>7}"
          f" {'torch CTC peak':>15} {'its time':>8}")  # fmt: skip
    for n_hidden in args.n_hidden:
        for seconds in args.seconds:
            ours = measure(n_hidden, seconds, "train", args.threads)
            reference = ""
            if n_hidden <= 512 and seconds <= args.torch_ctc_up_to:  # at 2048 the network, not CTC, dominates
                theirs = measure(n_hidden, seconds, "train_torch_ctc", args.threads)
                reference = f"{theirs['peak'] / MIB:15.0f} {theirs['seconds_taken']:7.1f}s"
            print(f"{n_hidden:8d} {seconds:5.0f}s {ours['peak'] / MIB:8.0f} {ours['estimate'] / MIB:9.0f} "
                  f"{ours['peak'] / ours['estimate']:8.2f} {ours['peak'] / MIB / (seconds / 60):8.0f} "
                  f"{ours['seconds_taken']:6.1f}s {reference}", flush=True)  # fmt: skip
    print("evaluation (no gradients): peak (MiB) of forward() on the whole utterance and of model.infer's chunks")
    for n_hidden in args.n_hidden:
        seconds = max(args.seconds)
        whole = measure(n_hidden, seconds, "eval_whole", args.threads)
        chunked = measure(n_hidden, seconds, "eval_chunked", args.threads)
        print(f"{n_hidden:8d} {seconds:5.0f}s whole {whole['peak'] / MIB:8.0f}  chunked {chunked['peak'] / MIB:8.0f}"
              f"  ratio {whole['peak'] / max(chunked['peak'], 1):.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
