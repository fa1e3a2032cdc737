"""The DeepSpeech acoustic model of Coqui STT 1.4 (docs/compatibility.md, "Model"); its CTC loss is loss.py's.

features [B, T, 26] -> 19-frame context windows [B, T, 19, 26] -> three clipped-ReLU dense layers ->
unidirectional LSTM -> clipped-ReLU dense -> linear output with the CTC blank as the last class.

Dense weights are stored as TensorFlow stores them, [in, out], so checkpoints map one to one. The
LSTM is PyTorch's own (fast fused kernels, cuDNN on GPU); its `bias_hh` stays zero and frozen so that
it has exactly TensorFlow's single bias. The mapping to Coqui's variable names is checkpoints/layout.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import N_CONTEXT, N_INPUT, context_windows

WINDOW_SIZE = (2 * N_CONTEXT + 1) * N_INPUT  # layer 1's input: one flattened context window
INFERENCE_CHUNK_FRAMES = 2048  # about 41 s of audio per pass of the layers when evaluating


@dataclass(frozen=True)
class ModelDimensions:
    """The shape of a model, which a checkpoint's own tensors determine (layout.dimensions reads it)."""

    n_hidden: int  # width of the hidden layers and the LSTM
    n_classes: int  # output classes, the blank (last) included: the alphabet's size + 1
    layer_norm: bool = False  # layer normalisation after layers 1, 2, 3 and 5


LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [1, B, n_hidden]


class LSTMWeights(NamedTuple):
    """nn.LSTM's parameters of its one layer, gate blocks in torch's order i, f, g, o (checkpoints/layout.py maps them
    to TensorFlow's kernel and bias)."""

    weight_ih: nn.Parameter  # [4H, in]
    weight_hh: nn.Parameter  # [4H, H]
    bias_ih: nn.Parameter  # [4H]
    bias_hh: nn.Parameter  # [4H], always zero


class LayerNorm(nn.Module):
    """tf.contrib.layers.layer_norm: normalise the last axis; variables named beta and gamma."""

    def __init__(self, size: int):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(size))
        self.gamma = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, eps=1e-12)


class Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int, layer_norm: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.LayerNorm = LayerNorm(n_out) if layer_norm else None

    def forward(self, x: torch.Tensor, relu_clip: float | None = None, dropout: float = 0.0) -> torch.Tensor:
        x = torch.addmm(self.bias, x, self.weights) if x.dim() == 2 else x @ self.weights + self.bias
        if relu_clip is None:
            return x
        x = torch.clamp(x, min=0.0, max=relu_clip)
        if self.LayerNorm is not None:
            x = self.LayerNorm(x)
        return _dropout(x, dropout) if dropout > 0 and self.training else x


class DeepSpeech(nn.Module):
    def __init__(
        self,
        dims: ModelDimensions,
        relu_clip: float = 20.0,
        dropout: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    ):
        """dropout holds the rates of layers 1, 2, 3 and 5 (Coqui's dropout_rate, dropout_rate2,
        dropout_rate3 and dropout_rate6); they apply in training mode only."""
        super().__init__()
        self.dims, self.relu_clip, self.dropout = dims, relu_clip, dropout
        n_hidden, layer_norm = dims.n_hidden, dims.layer_norm
        self.layer_1 = Dense(WINDOW_SIZE, n_hidden, layer_norm)
        self.layer_2 = Dense(n_hidden, n_hidden, layer_norm)
        self.layer_3 = Dense(n_hidden, n_hidden, layer_norm)
        self.lstm = nn.LSTM(n_hidden, n_hidden)
        self.lstm_weights.bias_hh.requires_grad_(False)
        self.layer_5 = Dense(n_hidden, n_hidden, layer_norm)
        self.layer_6 = Dense(n_hidden, dims.n_classes)
        self.reset_parameters()

    @property
    def n_hidden(self) -> int:
        return self.dims.n_hidden

    @property
    def n_classes(self) -> int:
        return self.dims.n_classes

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Coqui's initialisers: Glorot-uniform weights (the LSTM's over its whole [in+H, 4H] kernel), zero biases."""
        with torch.no_grad():
            for layer in (self.layer_1, self.layer_2, self.layer_3, self.layer_5, self.layer_6):
                fan_in, fan_out = layer.weights.shape
                _glorot_uniform_(layer.weights, fan_in, fan_out, generator)
                layer.bias.zero_()
                if layer.LayerNorm is not None:
                    layer.LayerNorm.beta.zero_()
                    layer.LayerNorm.gamma.fill_(1.0)
            lstm = self.lstm_weights
            _glorot_uniform_(lstm.weight_ih, 2 * self.n_hidden, 4 * self.n_hidden, generator)
            _glorot_uniform_(lstm.weight_hh, 2 * self.n_hidden, 4 * self.n_hidden, generator)
            lstm.bias_ih.zero_()
            lstm.bias_hh.zero_()

    @property
    def lstm_weights(self) -> LSTMWeights:
        lstm = self.lstm
        return LSTMWeights(lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)  # type: ignore[arg-type]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for params in self.layer_parameters().values() for p in params]

    def layer_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trained parameters by layer, keyed by the layer's scope in Coqui's checkpoints."""
        layers = {name: list(getattr(self, name).parameters()) for name in ("layer_1", "layer_2", "layer_3")}
        lstm = self.lstm_weights
        layers["cudnn_lstm"] = [lstm.weight_ih, lstm.weight_hh, lstm.bias_ih]  # TF has one bias: bias_hh stays 0
        layers.update({name: list(getattr(self, name).parameters()) for name in ("layer_5", "layer_6")})
        return layers

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, T, 26] (zero beyond each length) -> logits [T, B, C], time-major as CTC wants.

        Frames past a sample's length never influence earlier frames (the LSTM is unidirectional), so
        no packing is needed: the loss and the decoder read only the first `length` frames."""
        logits, _ = self.from_windows(context_windows(features))
        return logits

    def infer(self, features: torch.Tensor, chunk_frames: int = INFERENCE_CHUNK_FRAMES) -> torch.Tensor:
        """forward() for evaluation and transcription, in memory bounded whatever the length: the windows
        (a view of the features) go through the layers chunk_frames at a time, the LSTM state carried
        from one chunk to the next, as Coqui's streaming client runs. The logits equal forward()'s to
        rounding."""
        windows = context_windows(features)
        state, pieces = None, []
        for start in range(0, max(windows.shape[1], 1), chunk_frames):
            logits, state = self.from_windows(windows[:, start : start + chunk_frames], state)
            pieces.append(logits)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def from_windows(self, windows: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """windows [B, T, 19, 26] and the LSTM's state before them (None: zeros) -> logits [T, B, C] and
        the state after them. Training and evaluation start from zeros; an exported model is called
        a few frames at a time, carrying the state (Coqui's streaming interface)."""
        batch, time = windows.shape[0], windows.shape[1]
        x = windows.reshape(batch, time, WINDOW_SIZE).transpose(0, 1).reshape(time * batch, WINDOW_SIZE)
        d1, d2, d3, d5 = self.dropout
        x = self.layer_1(x, self.relu_clip, d1)
        x = self.layer_2(x, self.relu_clip, d2)
        x = self.layer_3(x, self.relu_clip, d3)
        x, state = self.lstm(x.reshape(time, batch, self.n_hidden), state)
        x = self.layer_5(x.reshape(time * batch, self.n_hidden), self.relu_clip, d5)
        return self.layer_6(x).reshape(time, batch, self.n_classes), state


def _dropout(x: torch.Tensor, rate: float) -> torch.Tensor:
    """F.dropout in training: each element zeroed with probability `rate` (to 2^-32), the rest scaled by
    1 / (1 - rate). On a CPU the mask comes from 32 random bits an element of numpy's SFC64, seeded by one
    draw from torch's generator (so seeds and a resumed run's generator states decide it, as before): torch's
    CPU bernoulli_ takes 13 ns an element, 9 % of a training step at n_hidden 512 on two AVX2 cores, these
    bits about 2 ns (docs/benchmarks.md). On a GPU torch's fused kernel is the fast one."""
    if x.device.type != "cpu" or rate >= 1.0:
        return F.dropout(x, rate, True)
    seed = int(torch.randint(0, 2**63 - 1, ()))
    n = x.numel()
    bits = np.random.SFC64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    keep = torch.from_numpy(bits >= min(round(rate * 2**32), 2**32 - 1)).view(x.shape)
    return x.mul(keep).mul_(1.0 / (1.0 - rate))


def _glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator | None) -> None:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    tensor.uniform_(-limit, limit, generator=generator)
