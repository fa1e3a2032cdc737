"""The DeepSpeech acoustic model of Coqui STT 1.4 (spec §2) and its CTC loss.

features [B, T, 26] -> 19-frame context windows [B, T, 494] -> three clipped-ReLU dense layers ->
unidirectional LSTM -> clipped-ReLU dense -> linear output with the CTC blank as the last class.

Dense weights are stored as TensorFlow stores them, [in, out], so checkpoints map one to one. The
LSTM is PyTorch's own (fast fused kernels, cuDNN on GPU); its `bias_hh` stays zero and frozen so that
it has exactly TensorFlow's single bias. Conversion to Coqui's kernel layout lives in checkpoint.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_INPUT = 26  # MFCC coefficients
N_CONTEXT = 9  # frames of context on each side


class LayerNorm(nn.Module):
    """tf.contrib.layers.layer_norm: normalise the last axis; variables named beta and gamma."""

    def __init__(self, size: int):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(size))
        self.gamma = nn.Parameter(torch.ones(size))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, eps=1e-12)


class Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int, layer_norm: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.LayerNorm = LayerNorm(n_out) if layer_norm else None

    def forward(self, x, relu_clip: float | None = None, dropout: float = 0.0):
        x = torch.addmm(self.bias, x, self.weights) if x.dim() == 2 else x @ self.weights + self.bias
        if relu_clip is None:
            return x
        x = torch.clamp(x, min=0.0, max=relu_clip)
        if self.LayerNorm is not None:
            x = self.LayerNorm(x)
        return F.dropout(x, dropout, self.training) if dropout > 0 else x


class DeepSpeech(nn.Module):
    def __init__(
        self,
        n_hidden: int,
        n_classes: int,
        relu_clip: float = 20.0,
        layer_norm: bool = False,
        dropout: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    ):
        """n_classes includes the blank. dropout holds the rates of layers 1, 2, 3 and 5 (Coqui's
        dropout_rate, dropout_rate2, dropout_rate3 and dropout_rate6)."""
        super().__init__()
        self.n_hidden, self.n_classes, self.relu_clip, self.dropout = n_hidden, n_classes, relu_clip, dropout
        n_window = (2 * N_CONTEXT + 1) * N_INPUT
        self.layer_1 = Dense(n_window, n_hidden, layer_norm)
        self.layer_2 = Dense(n_hidden, n_hidden, layer_norm)
        self.layer_3 = Dense(n_hidden, n_hidden, layer_norm)
        self.lstm = nn.LSTM(n_hidden, n_hidden)
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.layer_5 = Dense(n_hidden, n_hidden, layer_norm)
        self.layer_6 = Dense(n_hidden, n_classes)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Coqui's initialisers: Glorot-uniform weights (the LSTM's over its whole [in+H, 4H] kernel), zero biases."""
        with torch.no_grad():
            for layer in (self.layer_1, self.layer_2, self.layer_3, self.layer_5, self.layer_6):
                _glorot_uniform_(layer.weights, *layer.weights.shape, generator)
                layer.bias.zero_()
                if layer.LayerNorm is not None:
                    layer.LayerNorm.beta.zero_()
                    layer.LayerNorm.gamma.fill_(1.0)
            fan_in, fan_out = 2 * self.n_hidden, 4 * self.n_hidden
            _glorot_uniform_(self.lstm.weight_ih_l0, fan_in, fan_out, generator)
            _glorot_uniform_(self.lstm.weight_hh_l0, fan_in, fan_out, generator)
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_hh_l0.zero_()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for params in self.layer_parameters().values() for p in params]

    def layer_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Trained parameters by layer, keyed by the layer's scope in Coqui's checkpoints."""
        layers = {name: list(getattr(self, name).parameters()) for name in ("layer_1", "layer_2", "layer_3")}
        layers["cudnn_lstm"] = [self.lstm.weight_ih_l0, self.lstm.weight_hh_l0, self.lstm.bias_ih_l0]  # TF: one bias
        layers.update({name: list(getattr(self, name).parameters()) for name in ("layer_5", "layer_6")})
        return layers

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, T, 26] (zero beyond each length) -> logits [T, B, C], time-major as CTC wants.

        Frames past a sample's length never influence earlier frames (the LSTM is unidirectional), so
        no packing is needed: the loss and the decoder read only the first `length` frames."""
        batch, time, _ = features.shape
        x = context_windows(features).transpose(0, 1).reshape(time * batch, -1)
        d1, d2, d3, d5 = self.dropout
        x = self.layer_1(x, self.relu_clip, d1)
        x = self.layer_2(x, self.relu_clip, d2)
        x = self.layer_3(x, self.relu_clip, d3)
        x, _ = self.lstm(x.reshape(time, batch, self.n_hidden))
        x = self.layer_5(x.reshape(time * batch, self.n_hidden), self.relu_clip, d5)
        return self.layer_6(x).reshape(time, batch, self.n_classes)


def context_windows(features: torch.Tensor) -> torch.Tensor:
    """[B, T, 26] -> [B, T, 19*26]: frames t-9..t+9 with zero padding, flattened offset-major like Coqui's conv."""
    padded = F.pad(features, (0, 0, N_CONTEXT, N_CONTEXT))
    windows = padded.unfold(1, 2 * N_CONTEXT + 1, 1)  # [B, T, 26, 19]
    return windows.transpose(2, 3).reshape(features.shape[0], features.shape[1], -1)


def ctc_loss(logits: torch.Tensor, feature_lengths, labels, label_lengths) -> torch.Tensor:
    """Per-sample CTC negative log-likelihood (a sum over the utterance, not normalised), blank last.
    Computed in float32 whatever the logits' dtype."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return F.ctc_loss(
        log_probs,
        labels,
        feature_lengths,
        label_lengths,
        blank=logits.shape[-1] - 1,
        reduction="none",
        zero_infinity=False,
    )


def _glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int, generator) -> None:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    tensor.uniform_(-limit, limit, generator=generator)
