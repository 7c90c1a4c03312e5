"""GRU with the reset gate applied before the product (``reset_after=False``: Keras 2.0's, the book's)::

    r, z = sig(gx_rz + h~ W_hrz^T + b_hrz)
    n = act(gx_n + (r * h~) W_hn^T + b_hn)
    h' = (1 - z) * n + z * h

Two products: ``(r * h~) W_hn^T`` needs r first, so a step runs in two stages around them (stage 0: r, z
and ``u = r * h~``; stage 1: n and h'). Weights ``(weight_hh (3H, H), bias_hh (3H,) or None)``, the same
layout as torch's GRU. Saved per step: ``A`` = r, z, n (3H) and ``PRE`` the r, z pre-activations (2H)
for the hard sigmoids; the scan saves u itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Product, Sizes


class GRUResetBeforeSpec(Cell):
    name = "gru_reset_before"
    family = "gru"
    options = ("activation", "recurrent_activation")
    gates = 3
    folds_input_bias = True
    states = ("h",)
    products = (Product(rows=(0, 2)), Product(rows=(2, 3), input="u"))

    def u_width(self, H: int, P: int) -> int:
        return H

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        (h,) = states
        w_hh, b_hh = weights
        H = h.shape[-1]
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * H], b_hh[2 * H:])
        gh_r, gh_z = F.linear(h_in, w_hh[: 2 * H], b_rz).chunk(2, dim=-1)
        r, z = sig(gx[..., :H] + gh_r), sig(gx[..., H: 2 * H] + gh_z)
        n = A.apply(acts.activation, gx[..., 2 * H:] + F.linear(r * h_in, w_hh[2 * H:], b_n))
        return ((1 - z) * n + z * h,)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        H = sizes.H
        return [("A", 3 * H), ("PRE", 2 * H if A.needs_pre(acts.recurrent) else 0)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        gates, pre = s.saved["A"], s.saved["PRE"]
        H = gates.shape[-1] // 3
        b = s.weights[1]
        if stage == 0:
            rz = gates[:, : 2 * H]
            torch.add(s.gx[:, : 2 * H], s.product, out=rz)
            if b is not None:
                rz.add_(b[: 2 * H])
            if pre.numel():
                pre.copy_(rz)
            A.apply_(s.acts.recurrent, rz)
            torch.mul(gates[:, :H], s.h_in, out=s.u)
            return
        n = gates[:, 2 * H:]
        torch.add(s.gx[:, 2 * H:], s.product, out=n)
        if b is not None:
            n.add_(b[2 * H:])
        A.apply_(s.acts.activation, n)
        torch.lerp(n, s.prev[0], gates[:, H: 2 * H], out=s.next[0])

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        gates, pre = s.saved["A"], s.saved["PRE"]
        H = gates.shape[-1] // 3
        r, z, n = gates.split(H, dim=-1)
        dr, dz, dn = s.dgx.split(H, dim=-1)
        if stage == 1:
            (dh,) = s.d_next
            p_z = pre[:, H:] if pre.numel() else None
            torch.mul(dh * (1 - z), A.derivative(s.acts.activation, n), out=dn)
            torch.mul(dh * (s.prev[0] - n), A.derivative(s.acts.recurrent, z, p_z), out=dz)
            s.d_prev = [dh * z]
            return
        p_r = pre[:, :H] if pre.numel() else None
        torch.mul(s.du * s.h_in, A.derivative(s.acts.recurrent, r, p_r), out=dr)
        s.d_h_in = s.du * r


CELL = GRUResetBeforeSpec()
