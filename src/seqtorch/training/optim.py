"""Optimizers with Keras' defaults, and Keras' exact update rules for the Keras recipe (the scripts'
default; ``--torch-defaults`` selects torch.optim's rules).

torch's RMSprop and Adam differ from Keras in where epsilon enters the update:

* RMSprop: torch divides by ``sqrt(v) + eps``; tf.keras 2.x and Keras 3 divide by ``sqrt(v + eps)``.
* Adam: torch adds eps to the bias-corrected ``sqrt(v_hat)``; Keras adds it to the uncorrected
  ``sqrt(v)`` and folds the bias corrections into the step size ("epsilon hat").

With eps = 1e-7 the difference matters only while ``v`` is tiny, but it is the difference
between "close to the book" and "the book's formula", so both exist here.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer

KERAS_EPSILON = 1e-7
KERAS_RHO = 0.9
KERAS_BETAS = (0.9, 0.999)


def make_optimizer(
    name: str, params: Iterable, lr: float = 1e-3, keras_faithful: bool = False
) -> Optimizer:
    """``"rmsprop"`` or ``"adam"`` with Keras' defaults (rho 0.9, betas (0.9, 0.999), eps 1e-7)."""
    params = list(params)
    if name == "rmsprop":
        if keras_faithful:
            return KerasRMSprop(params, lr=lr, rho=KERAS_RHO, eps=KERAS_EPSILON)
        return torch.optim.RMSprop(params, lr=lr, alpha=KERAS_RHO, eps=KERAS_EPSILON)
    if name == "adam":
        if keras_faithful:
            return KerasAdam(params, lr=lr, betas=KERAS_BETAS, eps=KERAS_EPSILON)
        return torch.optim.Adam(params, lr=lr, betas=KERAS_BETAS, eps=KERAS_EPSILON)
    raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {name!r}")


class KerasRMSprop(Optimizer):
    """Keras' RMSprop: ``v = rho*v + (1-rho)*g^2``; ``p -= lr * g / sqrt(v + eps)`` (v starts at 0)."""

    def __init__(self, params, lr: float = 1e-3, rho: float = KERAS_RHO, eps: float = KERAS_EPSILON):
        if not lr > 0 or not 0.0 <= rho < 1.0 or not eps >= 0:
            raise ValueError(f"need lr > 0, 0 <= rho < 1, eps >= 0; got lr={lr}, rho={rho}, eps={eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["velocity"]
                v.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                p.addcdiv_(p.grad, (v + eps).sqrt_(), value=-lr)
        return loss


class KerasAdam(Optimizer):
    """Keras' Adam: ``p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``."""

    def __init__(self, params, lr: float = 1e-3, betas=KERAS_BETAS, eps: float = KERAS_EPSILON):
        b1, b2 = betas
        if not lr > 0 or not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0 or not eps >= 0:
            raise ValueError(f"need lr > 0, 0 <= betas < 1, eps >= 0; got lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    # A plain int step keeps the state loadable with torch.load(weights_only=True).
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                m.lerp_(p.grad, 1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.addcdiv_(m, v.sqrt().add_(eps), value=-alpha)
        return loss
