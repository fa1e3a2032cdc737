"""Real-time factor of the exported ONNX model with onnxruntime on one core, streamed as Coqui's clients
feed it (16 windows per call, state carried), next to torch running the same model on the same core.

    python benchmarks/inference.py [--hidden 2048] [--seconds 10]

The model is a freshly initialised DeepSpeech of the given size (the speed does not depend on the
weights), exported through coqui_stt_training.export exactly as a trained one is. RTF = compute time /
audio duration; below 1 is faster than real time. Features and beam search are timed separately.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from coqui_stt_training.alphabet import load_alphabet
from coqui_stt_training.decode import DecodeOptions, beam_search
from coqui_stt_training.export_onnx import StreamingDeepSpeech
from coqui_stt_training.exporting import ExportSettings, export, export_targets
from coqui_stt_training.features import FeatureSettings, context_windows, mfcc
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.model import DeepSpeech, ModelDimensions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    alphabet = load_alphabet("data/alphabet.txt")
    model = DeepSpeech(ModelDimensions(args.hidden, alphabet.size + 1)).eval()
    model.reset_parameters(torch.Generator().manual_seed(0))
    directory = tempfile.mkdtemp(prefix="onnx-bench-")
    settings = ExportSettings(directory, tflite=False)
    (path,) = export(settings, model, alphabet, export_targets(settings))
    onnx_model = OnnxModel(path, threads=1)

    rate = 16000
    audio = (np.random.default_rng(0).standard_normal(int(args.seconds * rate)) * 0.1).astype(np.float32)
    start = time.perf_counter()
    features = mfcc(audio, FeatureSettings(rate))
    feature_time = time.perf_counter() - start

    onnx_model.probabilities(features[:32])  # warm-up
    start = time.perf_counter()
    probs = onnx_model.probabilities(features, n_steps=16)
    onnx_time = time.perf_counter() - start

    streaming = StreamingDeepSpeech(model)
    windows = context_windows(torch.from_numpy(features)[None])
    state = (torch.zeros(1, args.hidden), torch.zeros(1, args.hidden))
    with torch.no_grad():
        streaming(windows[:, :16], *state)  # warm-up
        start = time.perf_counter()
        for i in range(0, windows.shape[1], 16):
            _, c, h = streaming(windows[:, i : i + 16], *state)
            state = (c, h)
        torch_time = time.perf_counter() - start

    start = time.perf_counter()
    beam_search(np.log(np.maximum(probs, 1e-30)), DecodeOptions(500))
    beam_time = time.perf_counter() - start

    size = os.path.getsize(path) / 2**20
    shutil.rmtree(directory)
    print(f"n_hidden {args.hidden} ({size:.0f} MiB ONNX), {args.seconds:.0f} s of audio, one core, 16 frames per call:")
    print(f"  onnxruntime acoustic model: RTF {onnx_time / args.seconds:.3f}")
    print(
        f"  torch, same model and calls: RTF {torch_time / args.seconds:.3f} "
        f"(onnxruntime takes {onnx_time / torch_time:.2f}x torch's time)"
    )
    print(
        f"  MFCC (numpy): RTF {feature_time / args.seconds:.4f}; beam search width 500 without a scorer: "
        f"RTF {beam_time / args.seconds:.3f}"
    )


if __name__ == "__main__":
    main()
