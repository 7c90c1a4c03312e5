"""Layer normalization over a row of gate pre-activations, in the forms the LayerNorm cells' loops use.

``LN(v) = (v - mean(v)) / sqrt(var(v) + eps)`` over the last dimension, the biased variance, no affine
part (the cells apply their gains themselves). Its backward, from the normalized value ``xhat`` and
``rstd = 1 / sqrt(var + eps)``: ``dv = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``.
The reference steps use ``F.layer_norm`` itself.
"""

from __future__ import annotations

import torch
from torch import Tensor


def normalize(v: Tensor, eps: float, xhat: Tensor, rstd: Tensor) -> Tensor:
    """Writes LN(v) into ``xhat`` (B, W) and 1/sqrt(var + eps) into ``rstd`` (B, 1); returns xhat."""
    var, mean = torch.var_mean(v, dim=-1, keepdim=True, correction=0)
    torch.rsqrt(var.add_(eps), out=rstd)
    return torch.mul(v - mean, rstd, out=xhat)


def normalize_backward(dxhat: Tensor, xhat: Tensor, rstd: Tensor, out: Tensor | None = None) -> Tensor:
    """The gradient of v from that of xhat = LN(v)."""
    centered = dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True)
    return torch.mul(centered, rstd, out=out) if out is not None else centered * rstd
