"""The DeepSpeech network run in numpy, from its weights in TensorFlow's layout: what Coqui's native client
runs, for apps that load an exported model without torch (client/).

A call takes a batch of context windows and the LSTM state before them and returns the softmax and the state
after them, as the exported graph's `input_node`, `previous_state_c/h` -> `logits`, `new_state_c/h` do:
three clipped-ReLU dense layers, Coqui's CudnnCompatibleLSTMCell (gates i, j, f, o from [x, h] @ kernel + bias;
no forget bias beyond the bias itself), a clipped-ReLU dense layer and the output layer, in float32: within
4e-7 of TensorFlow's own on Coqui's float32 exports (tests/test_client.py). An int8 export's
weights come dequantised (checkpoints/from_export.py), so its results differ from TFLite's hybrid int8
kernels by their rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .features import N_CONTEXT, N_INPUT

RELU_CLIP = 20.0
WINDOW_SIZE = (2 * N_CONTEXT + 1) * N_INPUT
DENSE = ("layer_1", "layer_2", "layer_3")


class NumpyDeepSpeech:
    """The network's weights as float32 arrays, read by name (`get`: a checkpoint's or an export's tensor)."""

    def __init__(self, get: Callable[[str], np.ndarray]):
        def tensor(name: str) -> np.ndarray:
            return np.ascontiguousarray(get(name), np.float32)

        self.dense = [(tensor(f"{name}/weights"), tensor(f"{name}/bias")) for name in DENSE]
        self.lstm_kernel = tensor("cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/kernel")
        self.lstm_bias = tensor("cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/bias")
        self.layer_5 = (tensor("layer_5/weights"), tensor("layer_5/bias"))
        self.layer_6 = (tensor("layer_6/weights"), tensor("layer_6/bias"))
        self.n_hidden = self.lstm_kernel.shape[1] // 4
        self.n_classes = self.layer_6[1].shape[0]
        if self.dense[0][0].shape[0] != WINDOW_SIZE:
            raise ValueError(f"layer_1 takes {self.dense[0][0].shape[0]} inputs, not a context window's {WINDOW_SIZE}")
        # the input half of the LSTM kernel applies to every frame at once; only the recurrent half is per frame
        self.lstm_input, self.lstm_recurrent = self.lstm_kernel[: -self.n_hidden], self.lstm_kernel[-self.n_hidden :]

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_hidden, np.float32), np.zeros(self.n_hidden, np.float32)

    def step(
        self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """windows [steps, 19, 26] and (c, h) -> probabilities [steps, classes] and the new (c, h)."""
        x = np.ascontiguousarray(windows, np.float32).reshape(len(windows), WINDOW_SIZE)
        for weights, bias in self.dense:
            x = np.clip(x @ weights + bias, 0.0, RELU_CLIP)
        gates_in = x @ self.lstm_input + self.lstm_bias
        c, h = state
        outputs = np.empty((len(windows), self.n_hidden), np.float32)
        n = self.n_hidden
        for t in range(len(windows)):
            gates = gates_in[t] + h @ self.lstm_recurrent
            i, j, f, o = gates[:n], gates[n : 2 * n], gates[2 * n : 3 * n], gates[3 * n :]
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
            h = _sigmoid(o) * np.tanh(c)
            outputs[t] = h
        x = np.clip(outputs @ self.layer_5[0] + self.layer_5[1], 0.0, RELU_CLIP)
        logits = x @ self.layer_6[0] + self.layer_6[1]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), (c, h)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
