"""The LayerNorm GRU (Ba et al. 2016; the formulation of haste's LayerNormGRU, reset after the product)::

    gx = LN(x W_ih^T) * g_ih + b_ih ;  gh = LN(h~ W_hh^T) * g_hh + b_hh      (r, z, n as the GRU)
    r = sig(gx_r + gh_r);  z = sig(gx_z + gh_z);  n = act(gx_n + r * gh_n);  h' = (1 - z) * n + z * h

``LN`` normalizes over all 3H pre-activations together with the biased variance and ``eps``, no affine
part of its own. Weights ``(weight_hh, bias_hh or None, ln_hh_weight (3H,))``; the input side has
``ln_ih_weight`` (3H,); the gains start at 1.

Saved per step: ``RZ`` (2H), ``N`` (H), ``GHN`` = gh's n block (H), ``XH`` the normalized product (3H),
``RS`` 1/sqrt(var + eps) (1), ``PRE`` the r, z pre-activations for the hard sigmoids. Per-step gradients:
``dP0`` of the product (3H) and ``DGH`` of gh (3H).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Product, Sizes
from ..layernorm import normalize, normalize_backward


class LayerNormGRUSpec(Cell):
    name = "layernorm_gru"
    family = "gru"
    options = ("eps", "activation", "recurrent_activation")
    single_bias_conflict = ("the recurrent candidate bias b_hn is scaled by the reset gate, so it acts apart "
                            "from b_in (Keras' reset_after GRU has two biases too)")
    gates = 3
    reduces_over_hidden = True
    states = ("h",)
    weights = ("weight_hh", "bias_hh", "ln_hh_weight")
    input_weights = ("weight_ih", "bias_ih", "ln_ih_weight")
    products = (Product(weight=0, bias=None),)
    cell_args = ("eps",)

    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        G = 3 * H
        return [("weight_ih", (G, I)), ("weight_hh", (G, P)), ("bias_ih", (G,)), ("bias_hh", (G,)),
                ("ln_ih_weight", (G,)), ("ln_hh_weight", (G,))]

    def init_(self, params: dict, scheme: str) -> None:
        with torch.no_grad():
            params["ln_ih_weight"].fill_(1.0)
            params["ln_hh_weight"].fill_(1.0)

    def input_projection(self, x, weights, cell_args):
        w_ih, b_ih, g_ih = weights
        gx = F.layer_norm(F.linear(x, w_ih), (w_ih.shape[0],), g_ih, None, cell_args[0])
        return gx if b_ih is None else gx + b_ih

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        (h,) = states
        w_hh, b_hh, g_hh = weights
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        gh = F.layer_norm(F.linear(h_in, w_hh), (w_hh.shape[0],), g_hh, None, args[0])
        if b_hh is not None:
            gh = gh + b_hh
        gx_r, gx_z, gx_n = gx.chunk(3, dim=-1)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
        r, z = sig(gx_r + gh_r), sig(gx_z + gh_z)
        n = A.apply(acts.activation, gx_n + r * gh_n)
        return ((1 - z) * n + z * h,)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        H = sizes.H
        return [("RZ", 2 * H), ("N", H), ("GHN", H), ("XH", 3 * H), ("RS", 1),
                ("PRE", 2 * H if A.needs_pre(acts.recurrent) else 0)]

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        return [("dP0", 3 * sizes.H), ("DGH", 3 * sizes.H)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        sv = s.saved
        H = sv["N"].shape[-1]
        w_hh, b_hh, g_hh = s.weights
        xh = normalize(s.product, s.args[0], sv["XH"], sv["RS"])
        gh = xh * g_hh
        if b_hh is not None:
            gh.add_(b_hh)
        rz = torch.add(s.gx[:, : 2 * H], gh[:, : 2 * H], out=sv["RZ"])
        if sv["PRE"].numel():
            sv["PRE"].copy_(rz)
        A.apply_(s.acts.recurrent, rz)
        r, z = rz.split(H, dim=-1)
        ghn = sv["GHN"].copy_(gh[:, 2 * H:])
        n = A.apply_(s.acts.activation, torch.addcmul(s.gx[:, 2 * H:], r, ghn, out=sv["N"]))
        torch.lerp(n, s.prev[0], z, out=s.next[0])

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        sv = s.saved
        H = sv["N"].shape[-1]
        w_hh, b_hh, g_hh = s.weights
        (dh,) = s.d_next
        r, z = sv["RZ"].split(H, dim=-1)
        n = sv["N"]
        p_r, p_z = sv["PRE"].split(H, dim=-1) if sv["PRE"].numel() else (None, None)
        dr, dz, dn = s.dgx.split(H, dim=-1)
        torch.mul(dh * (1 - z), A.derivative(s.acts.activation, n), out=dn)
        torch.mul(dh * (s.prev[0] - n), A.derivative(s.acts.recurrent, z, p_z), out=dz)
        torch.mul(dn * sv["GHN"], A.derivative(s.acts.recurrent, r, p_r), out=dr)
        dgh = s.grads["DGH"]
        dgh[:, : 2 * H].copy_(s.dgx[:, : 2 * H])
        torch.mul(dn, r, out=dgh[:, 2 * H:])
        normalize_backward(dgh * g_hh, sv["XH"], sv["RS"], out=s.grads["dP0"])
        s.d_prev = [dh * z]

    def weight_grads(self, grads, dgx, h_in, u, weights, needs, saved):
        """d W_hh from the product's gradient (one GEMM over all steps); b_hh and the gain are sums."""
        rows = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (T, B, W) -> (T*B, W)
        out = [None] * 3
        dgh = rows(grads["DGH"])
        if needs[0]:
            out[0] = rows(grads["dP0"]).t() @ rows(h_in)
        if weights[1] is not None and needs[1]:
            out[1] = dgh.sum(0)
        if needs[2]:
            out[2] = (dgh * rows(saved["XH"])).sum(0)
        return out


CELL = LayerNormGRUSpec()
