"""GRU as torch's (``reset_after=True``, also Keras >= 2.3's default; gate order r, z, n)::

    r, z = sig(gx_rz + h~ W_hrz^T + b_hrz)
    n = act(gx_n + r * (h~ W_hn^T + b_hn))
    h' = (1 - z) * n + z * h

The carried ``z * h`` uses the unmasked state. Weights ``(weight_hh (3H, H), bias_hh (3H,) or None)``.
Saved per step: ``RZ`` (2H), ``N`` (H), ``HN`` = h~ W_hn^T + b_hn (H), ``PRE`` the r, z pre-activations
(2H) for the hard sigmoids. The product's gradient differs from dgx in the n block (it is scaled by r),
so it is a buffer of its own, ``dP0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes


class GRUSpec(Cell):
    name = "gru"
    family = "gru"
    options = ("activation", "recurrent_activation")
    single_bias_conflict = ("the recurrent candidate bias b_hn is scaled by the reset gate, so it acts apart "
                            "from b_in (Keras' reset_after GRU has two biases too)")
    gates = 3
    states = ("h",)

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        (h,) = states
        w_hh, b_hh = weights
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        gx_r, gx_z, gx_n = gx.chunk(3, dim=-1)
        gh_r, gh_z, gh_n = F.linear(h_in, w_hh, b_hh).chunk(3, dim=-1)
        r, z = sig(gx_r + gh_r), sig(gx_z + gh_z)
        n = A.apply(acts.activation, gx_n + r * gh_n)
        return ((1 - z) * n + z * h,)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        H = sizes.H
        return [("RZ", 2 * H), ("N", H), ("HN", H), ("PRE", 2 * H if A.needs_pre(acts.recurrent) else 0)]

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        return [("dP0", 3 * sizes.H)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        rz, n, hn, pre = s.saved["RZ"], s.saved["N"], s.saved["HN"], s.saved["PRE"]
        H = n.shape[-1]
        b = s.weights[1]
        torch.add(s.gx[:, : 2 * H], s.product[:, : 2 * H], out=rz)
        if b is not None:
            rz.add_(b[: 2 * H])
            torch.add(s.product[:, 2 * H:], b[2 * H:], out=hn)
        else:
            hn.copy_(s.product[:, 2 * H:])
        if pre.numel():
            pre.copy_(rz)
        A.apply_(s.acts.recurrent, rz)
        r, z = rz.split(H, dim=-1)
        A.apply_(s.acts.activation, torch.addcmul(s.gx[:, 2 * H:], r, hn, out=n))
        torch.lerp(n, s.prev[0], z, out=s.next[0])  # (1 - z) n + z h

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        (dh,) = s.d_next
        rz, n, hn, pre = s.saved["RZ"], s.saved["N"], s.saved["HN"], s.saved["PRE"]
        H = n.shape[-1]
        r, z = rz.split(H, dim=-1)
        p_r, p_z = pre.split(H, dim=-1) if pre.numel() else (None, None)
        dr, dz, dn = s.dgx.split(H, dim=-1)
        torch.mul(dh * (1 - z), A.derivative(s.acts.activation, n), out=dn)
        torch.mul(dh * (s.prev[0] - n), A.derivative(s.acts.recurrent, z, p_z), out=dz)
        torch.mul(dn * hn, A.derivative(s.acts.recurrent, r, p_r), out=dr)
        dP = s.grads["dP0"]
        dP[:, : 2 * H].copy_(s.dgx[:, : 2 * H])
        torch.mul(dn, r, out=dP[:, 2 * H:])
        s.d_prev = [dh * z]


CELL = GRUSpec()
