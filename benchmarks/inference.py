"""Real-time factor of the exported ONNX model with onnxruntime on one core, streamed as Coqui's clients
feed it (16 windows per call, state carried), next to torch running the same model on the same core.

    python benchmarks/inference.py [--hidden 2048] [--seconds 10] [--accuracy CHECKPOINT_DIR CSV ...]

The model is a freshly initialised DeepSpeech of the given size (the speed does not depend on the
weights), exported as float32 and as int8 (--export_quantize: int8 weights) exactly as a trained one is.
RTF = compute time / audio duration; below 1 is faster than real time. Features and beam search are timed
separately; the int8 model's matrix products are also timed alone, with the export's own int8 kernel on
matrices of the model's sizes, as the floor that arithmetic and memory leave on this core. --accuracy exports
each trained checkpoint both ways with the export command and transcribes the CSV's rows with each (beam
search, the model's width, no scorer): WER and CER side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from coqui_stt_training.decoding.beam_search import DecodeOptions, beam_search
from coqui_stt_training.decoding.evaluation import levenshtein
from coqui_stt_training.exports.directory import ExportSettings, export, export_targets
from coqui_stt_training.exports.to_onnx import StreamingDeepSpeech
from coqui_stt_training.inference import OnnxModel
from coqui_stt_training.model.alphabet import load_alphabet
from coqui_stt_training.model.deepspeech import DeepSpeech, ModelDimensions
from coqui_stt_training.model.features import FeatureSettings, context_windows, mfcc


def error_rates(model: OnnxModel, csv_path: str) -> tuple[float, float]:
    """(WER, CER) of the model's transcripts of a CSV's rows, totals over the set as Coqui reports them."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    words = chars = word_edits = char_edits = 0
    with open(csv_path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            said = model.transcribe(os.path.join(folder, row["wav_filename"]))
            truth = row["transcript"]
            word_edits += levenshtein(truth.split(), said.split())
            char_edits += levenshtein(truth, said)
            words, chars = words + len(truth.split()), chars + len(truth)
    return word_edits / max(words, 1), char_edits / max(chars, 1)


def accuracy(checkpoint: str, csv_path: str) -> None:
    with open(os.path.join(checkpoint, "flags.txt"), encoding="utf-8") as f:
        rate = str(json.load(f)["audio_sample_rate"])  # the export command takes the features from its flags
    with tempfile.TemporaryDirectory() as folder:
        rates = {}
        for kind, quantize in (("float32", "false"), ("int8", "true")):
            out = os.path.join(folder, kind)
            subprocess.run([sys.executable, "-m", "coqui_stt_training.export", "--checkpoint_dir", checkpoint,
                            "--export_dir", out, "--export_tflite", "false", "--export_quantize", quantize,
                            "--audio_sample_rate", rate, "--log_level", "3"], check=True)  # fmt: skip
            rates[kind] = error_rates(OnnxModel(os.path.join(out, "output_graph.onnx"), threads=1), csv_path)
    (fw, fc), (qw, qc) = rates["float32"], rates["int8"]
    print(f"{checkpoint} on {csv_path}: float32 WER {fw:.3f} CER {fc:.3f}; int8 WER {qw:.3f} CER {qc:.3f} "
          f"(CER {qc - fc:+.3f})")  # fmt: skip


def rtf(path: str, features: np.ndarray, seconds: float) -> float:
    model = OnnxModel(path, threads=1)
    model.probabilities(features[:32])  # warm-up
    start = time.perf_counter()
    model.probabilities(features, n_steps=16)
    return (time.perf_counter() - start) / seconds


def int8_matmul_seconds(rows: int, inputs: int, outputs: int) -> float:
    """Seconds per call of onnxruntime's DynamicQuantizeMatMul (the kernel of the int8 export's layers) on a
    [rows, inputs] float32 input and an int8 [inputs, outputs] weight, on one thread."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-64, 64, (inputs, outputs)).astype(np.int8)  # 7-bit, as the export's
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "", ""], ["y"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, outputs])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array(0.01, np.float32), "s")],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        helper.make_model(graph, opset_imports=opsets).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {"x": rng.standard_normal((rows, inputs)).astype(np.float32)}
    for _ in range(5):
        session.run(None, feed)
    repeats = 50
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, feed)
    return (time.perf_counter() - start) / repeats


def int8_floor(model: DeepSpeech, frames_per_second: float) -> tuple[float, float]:
    """(recurrent, rest): the real-time factor of the int8 model's matrix products alone, timed on this core
    with the export's own kernel. The LSTM's recurrent product is one row per frame (its int8 matrix read from
    memory each frame); every other weight multiplies 16 frames per call, at the kernel's 16-row speed."""
    hidden = model.dims.n_hidden
    recurrent = int8_matmul_seconds(1, hidden, 4 * hidden)
    weights = sum(p.numel() for p in model.parameters() if p.dim() == 2) - 4 * hidden * hidden
    per_mac = int8_matmul_seconds(16, hidden, 4 * hidden) / (16 * hidden * 4 * hidden)
    return recurrent * frames_per_second, weights * per_mac * frames_per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--accuracy", nargs="+", default=[], metavar="CHECKPOINT_DIR CSV",
                        help="pairs: a trained checkpoint and a CSV to transcribe with its two exports")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    for checkpoint, csv_path in zip(args.accuracy[::2], args.accuracy[1::2]):
        accuracy(checkpoint, csv_path)
    alphabet = load_alphabet("data/alphabet.txt")
    model = DeepSpeech(ModelDimensions(args.hidden, alphabet.size + 1)).eval()
    model.reset_parameters(torch.Generator().manual_seed(0))
    directory = tempfile.mkdtemp(prefix="onnx-bench-")
    paths = {}
    for kind, quantize in (("float32", False), ("int8", True)):
        settings = ExportSettings(os.path.join(directory, kind), tflite=False, quantize=quantize)
        (paths[kind],) = export(settings, model, alphabet, export_targets(settings))

    rate = 16000
    audio = (np.random.default_rng(0).standard_normal(int(args.seconds * rate)) * 0.1).astype(np.float32)
    start = time.perf_counter()
    features = mfcc(audio, FeatureSettings(rate))
    feature_time = time.perf_counter() - start
    rtfs = {kind: rtf(path, features, args.seconds) for kind, path in paths.items()}
    recurrent, rest = int8_floor(model, 1000 / FeatureSettings(rate).win_step_ms)

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

    probs = OnnxModel(paths["float32"], threads=1).probabilities(features, n_steps=16)
    start = time.perf_counter()
    beam_search(probs, DecodeOptions(500))
    beam_time = time.perf_counter() - start

    sizes = {kind: os.path.getsize(path) / 2**20 for kind, path in paths.items()}
    shutil.rmtree(directory)
    print(f"n_hidden {args.hidden}, {args.seconds:.0f} s of audio, one core, 16 frames per call:")
    for kind in paths:
        print(f"  onnxruntime acoustic model, {kind} ({sizes[kind]:.0f} MiB): RTF {rtfs[kind]:.3f}")
    print(f"  int8 takes {rtfs['int8'] / rtfs['float32']:.2f}x float32's time")
    floor = recurrent + rest
    print(f"  int8's matrix products alone, this core, the export's kernel: RTF {floor:.3f} (the LSTM's "
          f"recurrent one {recurrent:.3f}, a row per frame; the rest {rest:.3f}); int8 takes "
          f"{rtfs['int8'] / floor:.2f}x that")  # fmt: skip
    torch_rtf = torch_time / args.seconds
    print(f"  torch float32, same model and calls: RTF {torch_rtf:.3f} (float32 onnxruntime: "
          f"{rtfs['float32'] / torch_rtf:.2f}x torch's time)")  # fmt: skip
    print(
        f"  MFCC (numpy): RTF {feature_time / args.seconds:.4f}; beam search width 500 without a scorer: "
        f"RTF {beam_time / args.seconds:.3f}"
    )


if __name__ == "__main__":
    main()
