"""Our ONNX export (exports/to_onnx.py) run by onnxruntime: the streaming interface of Coqui's graph (context
windows and the LSTM state in; the softmax and the new state out), with what the export says about itself in
its metadata (sample rate, feature window, context, n_hidden, n_steps, beam width, alphabet). Used by the
torch-free `inference` command and the client.
"""

from __future__ import annotations

import json

import numpy as np

from .alphabet import Alphabet, AnyAlphabet, UTF8Alphabet
from .features import N_CONTEXT, FeatureSettings


class OnnxDeepSpeech:
    def __init__(self, path: str, threads: int = 0):
        import onnxruntime  # the onnx extra

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.features = FeatureSettings(
            int(meta["sample_rate"]), int(meta["feature_win_len"]), int(meta["feature_win_step"])
        )
        if int(meta["n_context"]) != N_CONTEXT:
            raise ValueError(f"its windows have {meta['n_context']} frames of context, not {N_CONTEXT}")
        self.n_hidden, self.n_steps, self.beam_width = (
            int(meta["n_hidden"]),
            int(meta["n_steps"]),
            int(meta["beam_width"]),
        )
        labels = json.loads(meta["alphabet"])
        self.alphabet: AnyAlphabet = UTF8Alphabet() if labels == "UTF-8 bytes" else Alphabet(labels)
        self.n_classes = self.alphabet.size + 1

    def zero_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((batch, self.n_hidden), np.float32), np.zeros((batch, self.n_hidden), np.float32)

    def run(self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]):
        """windows [batch, steps, 19, 26] -> (probabilities [steps, batch, classes], new state)."""
        probs, c, h = self.session.run(
            None,
            {
                "input_node": np.ascontiguousarray(windows, np.float32),
                "previous_state_c": state[0],
                "previous_state_h": state[1],
            },
        )
        return probs, (c, h)

    def step(
        self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """One stream's windows [steps, 19, 26] -> probabilities [steps, classes] and the new state."""
        probs, state = self.run(windows[None], state)
        return probs[:, 0], state
