"""Speech to text with an exported ONNX model and onnxruntime: no torch needed.

    python -m coqui_stt_training.inference --model model/output_graph.onnx --audio speech.wav

The client side of Coqui's streaming interface (docs/compatibility.md, "Export"): audio decoded and resampled to the
model's rate, MFCC frames (numpy), 19-frame context windows with 9 zero frames before the first and
after the last, fed --n_steps windows at a time while the LSTM state is carried from call to call,
then the same CTC prefix beam search as the test phase.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .data.audio import load_audio
from .decoding.beam_search import DecodeOptions, beam_search
from .decoding.scorer import Scorer
from .model.features import context_windows, mfcc
from .model.onnx_runtime import OnnxDeepSpeech
from .system.errors import UserError


class OnnxModel:
    """An ONNX export with the client side of its streaming: features in, probabilities and transcripts out."""

    def __init__(self, path: str, threads: int = 0):
        self.runtime = OnnxDeepSpeech(path, threads)
        self.features, self.alphabet = self.runtime.features, self.runtime.alphabet
        runtime = self.runtime
        self.n_hidden, self.n_steps, self.beam_width = runtime.n_hidden, runtime.n_steps, runtime.beam_width

    def zero_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return self.runtime.zero_state(batch)

    def step(self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]):
        """windows [batch, steps, 19, 26] -> (probabilities [steps, batch, classes], new state)."""
        return self.runtime.run(windows, state)

    def probabilities(self, features: np.ndarray, n_steps: int | None = None) -> np.ndarray:
        """[T, classes] for one utterance's features, fed n_steps windows at a time (0: all at once)."""
        windows = context_windows(features[None])
        chunk = (self.n_steps if n_steps is None else n_steps) or max(windows.shape[1], 1)
        state, out = self.zero_state(), []
        for start in range(0, windows.shape[1], chunk):
            probs, state = self.step(windows[:, start : start + chunk], state)
            out.append(probs[:, 0])
        return np.concatenate(out) if out else np.zeros((0, self.alphabet.size + 1), np.float32)

    def audio_features(self, audio_path: str) -> np.ndarray:
        return mfcc(load_audio(audio_path, self.features.sample_rate), self.features)

    def transcribe(self, audio_path: str, options: DecodeOptions | None = None, scorer: Scorer | None = None) -> str:
        """The transcript of one file; `options` default to the model's beam width."""
        probs = self.probabilities(self.audio_features(audio_path))
        return self.alphabet.decode(beam_search(probs, options or DecodeOptions(self.beam_width), scorer))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coqui_stt_training.inference", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="ONNX model written by coqui_stt_training.export")
    parser.add_argument("--audio", required=True, nargs="+", help="audio files (WAV, FLAC, Ogg, Opus; any rate)")
    parser.add_argument("--beam_width", type=int, default=0, help="beam width (default: the model's)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--scorer_path", default="", help="Coqui scorer package (needs the kenlm package)")
    parser.add_argument("--lm_alpha", type=float, default=None, help="language model weight (default: the package's)")
    parser.add_argument("--lm_beta", type=float, default=None, help="word insertion bonus (default: the package's)")
    args = parser.parse_args(argv)
    try:
        model = OnnxModel(args.model, args.threads)
    except Exception as e:  # onnxruntime reports a missing or foreign file in several ways
        sys.exit(f"E {args.model}: cannot load the model ({str(e).splitlines()[0]})")
    try:
        scorer = Scorer(args.scorer_path, model.alphabet, args.lm_alpha, args.lm_beta) if args.scorer_path else None
        options = DecodeOptions(args.beam_width or model.beam_width)
        for path in args.audio:
            print(f"{path}: {model.transcribe(path, options, scorer)}", flush=True)
    except UserError as e:
        sys.exit(f"E {e}")


if __name__ == "__main__":
    main()
