"""The elementwise functions a cell uses, for the reference (autograd) and for the Python loops (in place,
with derivatives written from the saved output).

Names, as the layers take them:

* ``activation`` (the cell's main nonlinearity): ``"tanh"``, ``"relu"``.
* ``recurrent_activation`` (the gates' squashing function): ``"sigmoid"``; ``"hard_sigmoid_keras2"``,
  Keras 2's (and the book's) ``clip(0.2 x + 0.5, 0, 1)``, also accepted as ``"hard_sigmoid"``;
  ``"hardsigmoid"``, torch's ``F.hardsigmoid`` ``clip(x / 6 + 0.5, 0, 1)``, which Keras 3 calls
  ``hard_sigmoid``.

The derivatives are those of the reference's autograd formulas, exactly: tanh ``1 - y^2``, sigmoid
``y (1 - y)``, relu ``1[y > 0]``; Keras 2's hard sigmoid is a ``torch.clamp``, whose gradient passes at the
bounds (``0 <= 0.2 x + 0.5 <= 1``), torch's hardsigmoid passes strictly inside (``-3 < x < 3``). Both hard
functions need the pre-activation ``x`` for that, so the loops save it (:func:`needs_pre`).

torch computes hardsigmoid as ``clamp(x + 3, 0, 6) / 6`` (bitwise: not ``x / 6 + 0.5``), and its gradient
with the float32 constant ``1.0f / 6.0f`` in every dtype, float64 included: :data:`HARDSIGMOID_SLOPE`.
The kernels do the same, so they agree with the reference to the last bit of that constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = ("tanh", "relu")
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2", "hardsigmoid")
_ALIASES = {"hard_sigmoid": "hard_sigmoid_keras2"}
HARDSIGMOID_SLOPE = 0.1666666716337204  # float(float32(1 / 6)): torch's hardsigmoid_backward constant


def canonical(name: str) -> str:
    """The one name the kernels know for ``name`` (``"hard_sigmoid"`` is ``"hard_sigmoid_keras2"``)."""
    return _ALIASES.get(name, name)


def needs_pre(name: str) -> bool:
    """Whether the derivative of ``name`` needs the pre-activation (the hard sigmoids), not just the output."""
    return canonical(name) in ("hard_sigmoid_keras2", "hardsigmoid")


def hard_sigmoid_keras2(x: Tensor) -> Tensor:
    """Keras 2's piecewise-linear sigmoid: ``clip(0.2 * x + 0.5, 0, 1)``."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def apply(name: str, x: Tensor) -> Tensor:
    """``name(x)`` in differentiable PyTorch ops: the reference's definition of each function."""
    name = canonical(name)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu":
        return torch.relu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "hard_sigmoid_keras2":
        return hard_sigmoid_keras2(x)
    if name == "hardsigmoid":
        return hardsigmoid(x)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS + RECURRENT_ACTIVATIONS}")


def hardsigmoid(x: Tensor) -> Tensor:
    """torch's ``F.hardsigmoid``, bitwise, with torch's gradient (``HARDSIGMOID_SLOPE`` strictly inside
    ``-3 < x < 3``), written so that it can be differentiated again: torch has no double backward for
    ``hardsigmoid_backward``, and the reference must serve double backward. The added term is exactly 0 in
    value; its gradient is the slope (and its own derivative 0, as the function's)."""
    inside = ((x > -3) & (x < 3)).to(x.dtype)
    return F.hardsigmoid(x).detach() + HARDSIGMOID_SLOPE * inside * (x - x.detach())


def apply_(name: str, x: Tensor) -> Tensor:
    """``x = name(x)`` in place, bitwise equal to :func:`apply` (the same ops in the same order)."""
    name = canonical(name)
    if name == "tanh":
        return x.tanh_()
    if name == "relu":
        return x.relu_()
    if name == "sigmoid":
        return x.sigmoid_()
    if name == "hard_sigmoid_keras2":
        return x.mul_(0.2).add_(0.5).clamp_(0.0, 1.0)
    if name == "hardsigmoid":
        return x.add_(3.0).clamp_(0.0, 6.0).div_(6.0)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name: str, y: Tensor, pre: Tensor | None = None) -> Tensor:
    """d name(x) / dx at the points where ``y = name(x)``; the hard sigmoids read ``pre`` = x instead."""
    name = canonical(name)
    if name == "tanh":
        return 1 - y * y
    if name == "sigmoid":
        return y * (1 - y)
    if name == "relu":
        return (y > 0).to(y.dtype)
    if name == "hard_sigmoid_keras2":
        z = 0.2 * pre + 0.5
        return ((z >= 0) & (z <= 1)).to(pre.dtype) * 0.2
    if name == "hardsigmoid":
        return ((pre > -3) & (pre < 3)).to(pre.dtype) * HARDSIGMOID_SLOPE
    raise ValueError(f"unknown activation {name!r}")
