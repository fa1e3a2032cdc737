"""TensorFlow 1's AdamOptimizer, which Coqui trains with (docs/compatibility.md, "Training").

It differs from torch.optim.Adam in where epsilon goes: TF folds both bias corrections into the
step size and adds epsilon to the *uncorrected* sqrt(v). The power accumulators beta1_power and
beta2_power are float32 scalars, as in Coqui's checkpoints, so a loaded run continues exactly.
"""

from __future__ import annotations

import math

import torch


class TFAdam(torch.optim.Optimizer):
    """`params` may be parameter groups; a group's `lr_scale` multiplies the learning rate for its
    parameters (transfer learning trains kept layers slower than new ones). `lr` is the one rate that
    Coqui's checkpoint stores and the plateau rule reduces."""

    def __init__(self, params, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        super().__init__(params, dict(lr=lr, lr_scale=1.0, beta1=beta1, beta2=beta2, epsilon=epsilon))
        self._lr = lr
        self.beta1_power = torch.tensor(beta1, dtype=torch.float32)
        self.beta2_power = torch.tensor(beta2, dtype=torch.float32)

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = value
        for group in self.param_groups:
            group["lr"] = value * group["lr_scale"]

    def set_lr_scale(self, group_name: str, scale: float) -> None:
        for group in self.param_groups:
            if group.get("name") == group_name:
                group["lr_scale"] = scale
        self.lr = self._lr

    # torch.optim.Optimizer wraps add_param_group and zero_grad to keep TorchDynamo out, and the wrapper's
    # first call imports TorchDynamo: 1.2 s of the README job's 4 s. These two do the same work unwrapped.
    def add_param_group(self, param_group: dict) -> None:
        params = param_group["params"]
        group = {
            **self.defaults,
            **param_group,
            "params": [params] if isinstance(params, torch.Tensor) else list(params),
        }
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().requires_grad_(False).zero_()

    def slots(self, param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and second moments of a parameter (Coqui's `<name>/Adam` and `<name>/Adam_1`)."""
        state = self.state[param]
        if "m" not in state:
            state["m"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state["m"], state["v"]

    @torch.no_grad()
    def step(self, closure=None):
        beta1_power, beta2_power = float(self.beta1_power), float(self.beta2_power)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            moments = [self.slots(p) for p in params]
            ms, vs = [m for m, _ in moments], [v for _, v in moments]
            beta1, beta2 = group["beta1"], group["beta2"]
            step_size = group["lr"] * math.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
            torch._foreach_lerp_(ms, grads, 1.0 - beta1)  # m += (g - m)(1 - beta1), TF's form
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
            denominators = torch._foreach_sqrt(vs)
            torch._foreach_add_(denominators, group["epsilon"])
            torch._foreach_addcdiv_(params, ms, denominators, value=-step_size)
        beta1, beta2 = self.defaults["beta1"], self.defaults["beta2"]
        self.beta1_power.mul_(beta1)
        self.beta2_power.mul_(beta2)
