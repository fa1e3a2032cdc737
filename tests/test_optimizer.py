import subprocess
import sys

import numpy as np
import pytest
import torch

from coqui_stt_training.model.optimizer import TFAdam


def tf_adam_reference(params, grads_per_step, lr, beta1, beta2, eps):
    """TF1's AdamOptimizer written out: epsilon on the uncorrected root."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1_power, beta2_power = beta1, beta2
    for grads in grads_per_step:
        lr_t = lr * np.sqrt(1 - beta2_power) / (1 - beta1_power)
        for i, g in enumerate(grads):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            params[i] -= lr_t * m[i] / (np.sqrt(v[i]) + eps)
        beta1_power *= beta1
        beta2_power *= beta2
    return params, m, v, beta1_power, beta2_power


def test_matches_tensorflow_update_rule():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    # Tiny gradients make epsilon's placement matter: torch.optim.Adam would differ here.
    steps = [[rng.normal(size=p.shape) * 1e-7 for p in start] for _ in range(5)]
    params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in start]
    optimizer = TFAdam(params, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.astype(np.float32))
        optimizer.step()
    expected, _m, v, b1p, b2p = tf_adam_reference(start, steps, 0.01, 0.9, 0.999, 1e-8)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(optimizer.slots(params[0])[1].numpy(), v[0], rtol=1e-4)
    assert abs(float(optimizer.beta1_power) - b1p) < 1e-6  # float32, as in TF
    assert abs(float(optimizer.beta2_power) - b2p) < 1e-6

    torch_params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in start]
    torch_adam = torch.optim.Adam(torch_params, lr=0.01, eps=1e-8)
    for grads in steps:
        for p, g in zip(torch_params, grads):
            p.grad = torch.from_numpy(g.astype(np.float32))
        torch_adam.step()
    assert not np.allclose(torch_params[0].detach().numpy(), expected[0], rtol=1e-5, atol=1e-7)


def test_parameters_without_gradient_are_untouched():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = TFAdam([a, b])
    a.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(b.detach(), torch.ones(2))
    assert not torch.equal(a.detach(), torch.ones(2))


def test_groups_take_the_defaults_and_a_parameter_belongs_to_one_group():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    optimizer = TFAdam([{"params": [a], "name": "first"}, {"params": b, "lr_scale": 0.5}], lr=0.01)
    assert [g["params"] for g in optimizer.param_groups] == [[a], [b]]
    assert optimizer.param_groups[1]["lr_scale"] == 0.5 and optimizer.param_groups[0]["beta2"] == 0.999
    with pytest.raises(ValueError, match="more than one parameter group"):
        TFAdam([{"params": [a]}, {"params": [a, b]}])
    a.grad, b.grad = torch.ones(2), torch.ones(3)
    optimizer.zero_grad(set_to_none=False)
    assert torch.equal(a.grad, torch.zeros(2))
    optimizer.zero_grad()
    assert a.grad is None and b.grad is None


def test_a_training_step_does_not_import_torchdynamo():
    """torch.optim's own add_param_group and zero_grad import TorchDynamo on first use: 1.2 s of start-up."""
    script = (
        "import sys, torch\n"
        "from coqui_stt_training.model.optimizer import TFAdam\n"
        "p = torch.nn.Parameter(torch.ones(3))\n"
        "o = TFAdam([p])\n"
        "(p * p).sum().backward()\n"
        "o.step()\n"
        "o.zero_grad()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
