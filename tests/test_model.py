import numpy as np
import torch

from coqui_stt_training.checkpoints.layout import LSTM_SCOPE, variables
from coqui_stt_training.model.deepspeech import DeepSpeech, Dense, ModelDimensions, _dropout
from coqui_stt_training.model.features import context_windows
from coqui_stt_training.model.loss import ctc_loss


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def tf_lstm_reference(x, kernel, bias):
    """LSTMBlockFusedCell as Coqui's graph uses it: [x, h]·W + b, blocks i, c, f, o, forget_bias 0."""
    hidden = kernel.shape[1] // 4
    h = np.zeros((x.shape[1], hidden))
    c = np.zeros_like(h)
    outputs = []
    for x_t in x:
        z = np.concatenate([x_t, h], 1) @ kernel + bias
        i, ci, f, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(ci)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs)


def test_lstm_loaded_from_tf_layout_computes_tf_cell():
    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(n_hidden=8, n_classes=5))
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(16, 32)).astype(np.float32)
    bias = rng.normal(size=32).astype(np.float32)
    by_name = {v.name: v for v in variables(model)}
    with torch.no_grad():
        for name, value in ((f"{LSTM_SCOPE}/kernel", kernel), (f"{LSTM_SCOPE}/bias", bias)):
            var = by_name[name]
            var.load_tf(var.params, torch.from_numpy(value))
        # and the conversion back gives the TF tensors again
        assert np.array_equal(
            by_name[f"{LSTM_SCOPE}/kernel"].to_tf(by_name[f"{LSTM_SCOPE}/kernel"].params).numpy(), kernel
        )
    x = rng.normal(size=(6, 2, 8)).astype(np.float32)
    ours, _ = model.lstm(torch.from_numpy(x))
    np.testing.assert_allclose(ours.detach().numpy(), tf_lstm_reference(x, kernel, bias), atol=1e-5)


def test_context_windows_are_offset_major_with_zero_padding():
    features = torch.arange(2 * 12 * 26, dtype=torch.float32).reshape(2, 12, 26)
    windows = context_windows(features)
    for t in range(12):
        for offset in range(-9, 10):
            expected = features[:, t + offset] if 0 <= t + offset < 12 else torch.zeros(2, 26)
            assert torch.equal(windows[:, t, offset + 9], expected)


def test_variable_names_and_shapes_are_coquis():
    model = DeepSpeech(ModelDimensions(n_hidden=100, n_classes=29, layer_norm=True))
    shapes = {v.name: tuple(v.to_tf(v.params).shape) for v in variables(model)}
    assert shapes["layer_1/weights"] == (494, 100)
    assert shapes["layer_6/weights"] == (100, 29)
    assert shapes[f"{LSTM_SCOPE}/kernel"] == (200, 400)
    assert shapes[f"{LSTM_SCOPE}/bias"] == (400,)
    assert shapes["layer_5/LayerNorm/gamma"] == (100,)
    plain = DeepSpeech(ModelDimensions(n_hidden=100, n_classes=29))
    assert sum(int(np.prod(s)) for n, s in ((v.name, v.to_tf(v.params).shape) for v in variables(plain))) == 163_129


def test_clipped_relu_and_dropout_placement():
    model = DeepSpeech(ModelDimensions(n_hidden=4, n_classes=3), relu_clip=20.0, dropout=(0.0, 0.0, 0.0, 1.0))
    model.reset_parameters(torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.layer_6.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    model.train()
    # layer_5's output fully dropped (Coqui's dropout_rate6 sits on layer 5): only layer_6's bias remains
    logits = model(torch.randn(1, 7, 26))
    assert torch.allclose(logits, torch.tensor([1.0, 2.0, 3.0]).expand(7, 1, 3))
    x = torch.tensor([[-5.0, 3.0, 50.0]])
    dense = Dense(3, 3)
    with torch.no_grad():
        dense.weights.copy_(torch.eye(3))
    assert torch.equal(dense(x, relu_clip=20.0), torch.tensor([[0.0, 3.0, 20.0]]))


def test_glorot_uniform_limits():
    model = DeepSpeech(ModelDimensions(n_hidden=64, n_classes=10))
    model.reset_parameters(torch.Generator().manual_seed(0))
    limit = np.sqrt(6 / (494 + 64))
    w = model.layer_1.weights.detach()
    assert w.abs().max() <= limit
    assert w.abs().max() > 0.95 * limit
    assert float(model.layer_1.bias.detach().abs().max()) == 0
    lstm_limit = np.sqrt(6 / (128 + 256))
    assert model.lstm.weight_hh_l0.detach().abs().max() <= lstm_limit
    assert float(model.lstm.bias_hh_l0.abs().max()) == 0


def test_ctc_loss_is_per_utterance_sum_with_blank_last():
    logits = torch.zeros(4, 1, 3)  # uniform over {a, b, blank}
    loss = ctc_loss(logits, torch.tensor([4]), torch.tensor([0]), torch.tensor([1]))
    # paths of length 4 emitting exactly "a": blanks and a's with one contiguous run of a -> 10 paths
    assert torch.allclose(loss, torch.tensor([-np.log(10 / 3**4)], dtype=torch.float32))


def test_streaming_windows_with_the_state_carried_give_the_whole_utterances_logits():
    """from_windows is what the export calls a few frames at a time; forward runs it once from zero state."""
    model = DeepSpeech(ModelDimensions(n_hidden=16, n_classes=6)).eval()
    features = torch.randn(2, 23, 26)
    whole = model(features)
    windows = context_windows(features)
    state, pieces = None, []
    for start in range(0, 23, 5):
        logits, state = model.from_windows(windows[:, start : start + 5], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=1e-5, atol=1e-5)


def test_chunked_inference_gives_the_logits_of_the_whole():
    """Evaluation and transcription run the layers a chunk of frames at a time, carrying the LSTM state."""
    torch.manual_seed(0)
    model = DeepSpeech(ModelDimensions(32, 10)).eval()
    features = torch.randn(2, 500, 26)
    with torch.no_grad():
        whole = model(features)
        for chunk in (7, 64, 499, 500, 2048):
            torch.testing.assert_close(model.infer(features, chunk_frames=chunk), whole, rtol=1e-5, atol=1e-5)


def test_dropout_on_the_cpu_drops_at_its_rate_and_scales_what_it_keeps():
    for rate in (0.05, 0.3):
        x = torch.ones(2_000_000, requires_grad=True)
        y = _dropout(x, rate)
        dropped = float((y == 0).float().mean())
        assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / x.numel())  # five standard deviations
        assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - rate)))
        y.sum().backward()  # the gradient passes exactly where the value did, scaled alike
        assert x.grad is not None and torch.equal(x.grad, y.detach())
    # torch's generator decides the mask: a seed (or a resumed run's generator state) repeats it
    torch.manual_seed(7)
    first = _dropout(torch.ones(1000), 0.5)
    torch.manual_seed(7)
    assert torch.equal(first, _dropout(torch.ones(1000), 0.5))
    assert not torch.equal(first, _dropout(torch.ones(1000), 0.5))
    assert torch.equal(_dropout(torch.ones(10), 1.0), torch.zeros(10))
