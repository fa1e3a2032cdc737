"""What an int8 (dynamic-range) TFLite model computes, in numpy: a test oracle for the int8 exports.

TFLite's hybrid FULLY_CONNECTED kernel quantises each input row on the fly (scale max|x| / 127, rounded half
away from zero), multiplies in int32 with the int8 weights, and scales back with the product of the two
scales onto the float bias; everything else (ReLU, the clip, the LSTM cell, softmax) stays float32. The
network is Coqui's exported graph: 9 zero frames of context either side, 16 windows per call with the
LSTM state carried, the last call zero-padded.
"""

from __future__ import annotations

import numpy as np

from coqui_stt_training.checkpoints.from_export import WEIGHT_SCOPES, ExportedModel, kernel_name
from coqui_stt_training.exports.to_tflite import quantize_symmetric


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def hybrid_dense(x: np.ndarray, q: np.ndarray, weight_scale: np.float32, bias: np.ndarray) -> np.ndarray:
    """x [rows, in] float32, q [out, in] int8 -> [rows, out] float32, as TFLite's hybrid kernel."""
    out = np.empty((x.shape[0], q.shape[0]), np.float32)
    for r, row in enumerate(x.astype(np.float32)):
        bound = np.float32(np.max(np.abs(row)))
        if bound == 0:
            out[r] = bias
            continue
        quantized = np.clip(_round_half_away(row * (np.float32(127) / bound)), -127, 127).astype(np.int64)
        products = (q.astype(np.int64) @ quantized).astype(np.float32)  # exact: far below 2**24
        out[r] = bias + products * np.float32(np.float32(bound / np.float32(127)) * weight_scale)
    return out


def int8_layers(model: ExportedModel) -> dict[str, tuple[np.ndarray, np.float32, np.ndarray]]:
    """Each layer's weights quantised as the export stores them ([out, in] int8, scale) and its bias."""
    layers = {}
    for scope in WEIGHT_SCOPES:
        q, scale = quantize_symmetric(model.get(kernel_name(scope)).T)
        layers[scope.split("/")[0]] = (q, scale, model.get(f"{scope}/bias").astype(np.float32))
    return layers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def int8_probabilities(model: ExportedModel, mfccs: np.ndarray, n_steps: int = 16) -> np.ndarray:
    """[frames, classes] softmax of the int8 model on MFCC frames, streamed as the native client streams."""
    layers = int8_layers(model)

    def dense(scope: str, x: np.ndarray) -> np.ndarray:
        return hybrid_dense(x, *layers[scope])

    frames = len(mfccs)
    padded = np.concatenate([np.zeros((9, 26), np.float32), mfccs, np.zeros((9, 26), np.float32)])
    windows = np.stack([padded[t : t + 19].reshape(-1) for t in range(frames)])
    hidden = layers["layer_1"][2].shape[0]
    c = h = np.zeros((1, hidden), np.float32)
    out = []
    for start in range(0, frames, n_steps):
        x = windows[start : start + n_steps]
        real = len(x)
        x = np.concatenate([x, np.zeros((n_steps - real, x.shape[1]), np.float32)])
        for scope in ("layer_1", "layer_2", "layer_3"):
            x = np.minimum(np.maximum(dense(scope, x), 0), 20)
        outputs = []
        for t in range(n_steps):
            i, j, f, o = np.split(dense("cudnn_lstm", np.concatenate([x[t : t + 1], h], 1)), 4, 1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(j)
            h = _sigmoid(o) * np.tanh(c)
            outputs.append(h)
        y = np.minimum(np.maximum(dense("layer_5", np.concatenate(outputs)), 0), 20)
        z = dense("layer_6", y)
        e = np.exp(z - z.max(1, keepdims=True))
        out.append((e / e.sum(1, keepdims=True))[:real])
    return np.concatenate(out)
