"""TFLite export and import of a release-sized model, and Coqui's native client running our export.

    python benchmarks/tflite_io.py [--hidden 2048] [--seconds 10]

1. A DeepSpeech of --hidden units (freshly initialised: sizes and speed do not depend on the weights, as in
   checkpoint_memory.py) is saved as our checkpoint, then exported (int8 and float32 .tflite) and each
   export imported back into a model. Each step runs in a fresh process, which prints its time and peak
   resident memory; the checkpoint save is the reference they are compared with.
2. Real-time factor on --seconds of speech (LDC93S1 repeated), one core (taskset -c 0): the native client
   (`stt` 1.4.0 in its Python 3.10 environment, as tests/native_client builds it) and this package's client
   (coqui_stt_training.client, the same API) on our int8 and float32 .tflite, and onnxruntime on our ONNX
   export with our MFCC and beam search (width 500, no scorer, as the client's default). The native client's
   decoder time is measured inside it (tests/native_client/run_client.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from coqui_stt_training.model.alphabet import load_alphabet  # noqa: E402
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions  # noqa: E402

ALPHABET = os.path.join(ROOT, "data", "alphabet.txt")
LDC_WAV = os.path.join(ROOT, "data", "smoke_test", "LDC93S1.wav")


def model(hidden: int) -> DeepSpeech:
    import torch

    net = DeepSpeech(ModelDimensions(hidden, load_alphabet(ALPHABET).size + 1)).eval()
    net.reset_parameters(torch.Generator().manual_seed(0))
    return net


def step(name: str, work: str, hidden: int) -> None:
    """One measured step, in this (fresh) process; prints JSON with its seconds and peak RSS."""
    from coqui_stt_training.checkpoints import layout, store
    from coqui_stt_training.checkpoints.from_export import open_exported
    from coqui_stt_training.checkpoints.load import load_into
    from coqui_stt_training.checkpoints.run_state import RunState
    from coqui_stt_training.exports.directory import ExportSettings, export, export_targets
    from coqui_stt_training.model.optimizer import TFAdam

    alphabet = load_alphabet(ALPHABET)
    net = model(hidden)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if name == "save checkpoint":
        optimizer = TFAdam(net.trainable_parameters())
        store.save(os.path.join(work, "ckpt"), "train", layout.to_tensors(net, optimizer, 0), RunState(), 1)
    elif name.startswith("export"):
        quantize, kind = name.endswith("int8"), "onnx" if name.endswith("onnx") else "tflite"
        settings = ExportSettings(
            os.path.join(work, name.replace(" ", "-")), tflite=kind == "tflite", quantize=quantize
        )
        export(settings, net, alphabet, export_targets(settings))
    elif name.startswith("import"):
        kind = name.split()[-1]
        reader = open_exported(os.path.join(work, f"export-tflite-{kind}", "output_graph.tflite"))
        load_into(reader.path, net, reader=reader)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "before_mib": before / 1024}))


def measured(name: str, work: str, hidden: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--step", name, "--work", work, "--hidden", str(hidden)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def speech(seconds: float, path: str) -> None:
    with wave.open(LDC_WAV) as f:
        rate, audio = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), np.int16)
    repeated = np.tile(audio, int(np.ceil(seconds * rate / len(audio))))[: int(seconds * rate)]
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(repeated.tobytes())


def client_rtf(model_path: str, wav: str, seconds: float) -> tuple[float, float]:
    """(whole RTF, decoder RTF) of the native client on one core, best of three."""
    from tests.native_client import RUN_CLIENT, client_python

    best = (float("inf"), 0.0)
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "out.npz")
        for _ in range(3):
            subprocess.run(["taskset", "-c", "0", client_python(), RUN_CLIENT, model_path, out, wav],
                           check=True, capture_output=True)  # fmt: skip
            with np.load(out) as result:
                total, decoder = result["seconds_0"]
            best = min(best, (total / seconds, decoder / seconds))
    return best


def onnx_rtf(work: str, wav: str, seconds: float) -> tuple[float, float, float]:
    """(MFCC, acoustic model, beam search) RTF of our path on one core, best of three."""
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, __file__, "--step", "onnx rtf", "--work", work, "--wav", wav,
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def onnx_rtf_here(work: str, wav: str, seconds: float) -> None:
    from coqui_stt_training.data.audio import load_audio
    from coqui_stt_training.decoding.beam_search import DecodeOptions, beam_search
    from coqui_stt_training.inference import OnnxModel
    from coqui_stt_training.model.features import FeatureSettings, mfcc

    onnx_model = OnnxModel(os.path.join(work, "export-onnx", "output_graph.onnx"), threads=1)
    audio = load_audio(wav, 16000)
    best = [float("inf")] * 3
    for _ in range(3):
        t0 = time.perf_counter()
        features = mfcc(audio, FeatureSettings())
        t1 = time.perf_counter()
        probs = onnx_model.probabilities(features, n_steps=16)
        t2 = time.perf_counter()
        beam_search(probs, DecodeOptions(500))
        t3 = time.perf_counter()
        best = [min(b, t / seconds) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
    print(json.dumps(best))


def ours_rtf(model_path: str, wav: str, seconds: float) -> float:
    """RTF of this package's client (coqui_stt_training.client: LiteRT, our MFCC and beam search) on one core,
    best of three, in a fresh process as the native client's."""
    done = subprocess.run(
        ["taskset", "-c", "0", sys.executable, __file__, "--step", "client rtf", "--work", model_path, "--wav", wav,
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def ours_rtf_here(model_path: str, wav: str, seconds: float) -> None:
    from coqui_stt_training.client import Model

    with wave.open(wav) as f:
        audio = np.frombuffer(f.readframes(f.getnframes()), np.int16)
    model = Model(model_path)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        model.stt(audio)
        best = min(best, (time.perf_counter() - started) / seconds)
    print(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "onnx rtf":
        onnx_rtf_here(args.work, args.wav, args.seconds)
        return
    if args.step == "client rtf":
        ours_rtf_here(args.work, args.wav, args.seconds)
        return
    if args.step:
        step(args.step, args.work, args.hidden)
        return

    with tempfile.TemporaryDirectory(prefix="tflite-bench-") as work:
        print(f"n_hidden {args.hidden}; each step in a fresh process (time, peak resident memory):")
        steps = ["save checkpoint", "export tflite int8", "export tflite fp32", "export onnx", "import int8",
                 "import fp32"]  # fmt: skip
        results = {name: measured(name, work, args.hidden) for name in steps}
        reference = results["save checkpoint"]
        sizes = {
            "save checkpoint": os.path.getsize(os.path.join(work, "ckpt", "train-0.safetensors")),
            "export tflite int8": os.path.getsize(os.path.join(work, "export-tflite-int8", "output_graph.tflite")),
            "export tflite fp32": os.path.getsize(os.path.join(work, "export-tflite-fp32", "output_graph.tflite")),
            "export onnx": os.path.getsize(os.path.join(work, "export-onnx", "output_graph.onnx")),
        }
        for name, r in results.items():
            size = f", file {sizes[name] / 2**20:.0f} MiB" if name in sizes else ""
            print(
                f"  {name:<20} {r['seconds']:6.2f} s ({r['seconds'] / reference['seconds']:.2f}x the checkpoint "
                f"save), peak {r['peak_mib']:.0f} MiB (model built: {r['before_mib']:.0f} MiB){size}"
            )
        wav = os.path.join(work, "speech.wav")
        speech(args.seconds, wav)
        print(f"\nReal-time factor on {args.seconds:.0f} s of speech, one core (taskset -c 0), best of three:")
        for kind in ("int8", "fp32"):
            total, decoder = client_rtf(os.path.join(work, f"export-tflite-{kind}", "output_graph.tflite"), wav,
                                        args.seconds)  # fmt: skip
            print(f"  native client, our {kind} .tflite: RTF {total:.3f} (decoder {decoder:.3f}, the rest "
                  f"{total - decoder:.3f})")  # fmt: skip
            ours = ours_rtf(os.path.join(work, f"export-tflite-{kind}", "output_graph.tflite"), wav, args.seconds)
            print(f"  coqui_stt_training.client, the same {kind} .tflite: RTF {ours:.3f} ({total / ours:.2f}x the "
                  "native client's speed)")  # fmt: skip
        features, acoustic, beam = onnx_rtf(work, wav, args.seconds)
        total = features + acoustic + beam
        print(f"  onnxruntime, our ONNX + our MFCC and beam search: RTF {total:.3f} (beam search {beam:.3f}, "
              f"acoustic model {acoustic:.3f}, MFCC {features:.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
