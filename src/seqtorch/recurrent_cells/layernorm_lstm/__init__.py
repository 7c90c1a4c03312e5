"""The LayerNorm LSTM (Ba et al. 2016; the formulation of haste's LayerNormLSTM)::

    gx    = LN(x W_ih^T) * g_ih + b_ih                   (the input projection, all steps at once)
    gates = gx + LN(h~ W_hh^T) * g_hh + b_hh             i, f, g, o as the LSTM
    c'    = sig(f) * c + sig(i) * act(g)
    h'    = sig(o) * act(LN(c') * g_c + b_c)

``LN`` normalizes over the last dimension (all 4H gate pre-activations together; H for c') with the
biased variance and ``eps`` (the cell's one argument), no affine part of its own. Weights ``(weight_hh,
bias_hh or None, ln_hh_weight (4H,), ln_cell_weight (H,), ln_cell_bias (H,))``; the input side has
``ln_ih_weight`` (4H,). The gains start at 1, ``ln_cell_bias`` at 0.

Saved per step: ``A`` the gate activations (4H), ``XH`` the normalized product (4H), ``RS`` the two
``1/sqrt(var + eps)`` (of the product and of c'), ``CH`` the normalized c' (H), ``Y`` = act(LN(c') g_c
+ b_c) (H), ``PRE`` the gate pre-activations for the hard sigmoids. Per-step gradients for the weights:
``dP0`` of the product (4H) and ``DLC`` of LN(c') * g_c + b_c (H).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Product, Sizes
from ..layernorm import normalize, normalize_backward


class LayerNormLSTMSpec(Cell):
    name = "layernorm_lstm"
    family = "lstm"
    options = ("eps", "activation", "recurrent_activation")
    gates = 4
    reduces_over_hidden = True
    states = ("h", "c")
    weights = ("weight_hh", "bias_hh", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")
    input_weights = ("weight_ih", "bias_ih", "ln_ih_weight")
    products = (Product(weight=0, bias=None),)
    cell_args = ("eps",)

    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        G = 4 * H
        return [("weight_ih", (G, I)), ("weight_hh", (G, P)), ("bias_ih", (G,)), ("bias_hh", (G,)),
                ("ln_ih_weight", (G,)), ("ln_hh_weight", (G,)), ("ln_cell_weight", (H,)), ("ln_cell_bias", (H,))]

    def init_(self, params: dict, scheme: str) -> None:
        with torch.no_grad():
            for name in ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight"):
                params[name].fill_(1.0)
            params["ln_cell_bias"].zero_()

    def input_projection(self, x, weights, cell_args):
        w_ih, b_ih, g_ih = weights
        gx = F.layer_norm(F.linear(x, w_ih), (w_ih.shape[0],), g_ih, None, cell_args[0])
        return gx if b_ih is None else gx + b_ih

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        h, c = states
        w_hh, b_hh, g_hh, g_c, b_c = weights
        eps = args[0]
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        act = lambda x: A.apply(acts.activation, x)  # noqa: E731
        gh = F.layer_norm(F.linear(h_in, w_hh), (w_hh.shape[0],), g_hh, None, eps)
        i, f, g, o = (gx + gh if b_hh is None else gx + gh + b_hh).chunk(4, dim=-1)
        c_new = sig(f) * c + sig(i) * act(g)
        return sig(o) * act(F.layer_norm(c_new, (c_new.shape[-1],), g_c, b_c, eps)), c_new

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        H = sizes.H
        return [("A", 4 * H), ("XH", 4 * H), ("RS", 2), ("CH", H), ("Y", H),
                ("PRE", 4 * H if A.needs_pre(acts.recurrent) else 0)]

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        return [("dP0", 4 * sizes.H), ("DLC", sizes.H)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        sv = s.saved
        H = sv["CH"].shape[-1]
        w_hh, b_hh, g_hh, g_c, b_c = s.weights
        eps = s.args[0]
        xh = normalize(s.product, eps, sv["XH"], sv["RS"][:, :1])
        gates = torch.addcmul(s.gx, xh, g_hh, out=sv["A"])
        if b_hh is not None:
            gates.add_(b_hh)
        if sv["PRE"].numel():
            sv["PRE"].copy_(gates)
        A.apply_(s.acts.recurrent, gates[:, : 2 * H])
        A.apply_(s.acts.activation, gates[:, 2 * H: 3 * H])
        A.apply_(s.acts.recurrent, gates[:, 3 * H:])
        i, f, g, o = gates.split(H, dim=-1)
        h_next, c_next = s.next
        torch.mul(f, s.prev[1], out=c_next).addcmul_(i, g)
        ch = normalize(c_next, eps, sv["CH"], sv["RS"][:, 1:])
        y = torch.addcmul(b_c, ch, g_c, out=sv["Y"])
        torch.mul(o, A.apply_(s.acts.activation, y), out=h_next)

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        sv = s.saved
        H = sv["CH"].shape[-1]
        w_hh, b_hh, g_hh, g_c, b_c = s.weights
        dh, dc_next = s.d_next
        i, f, g, o = sv["A"].split(H, dim=-1)
        p = sv["PRE"].split(H, dim=-1) if sv["PRE"].numel() else (None,) * 4
        dsig = lambda y, k: A.derivative(s.acts.recurrent, y, p[k])  # noqa: E731
        y, ch = sv["Y"], sv["CH"]
        di, df, dg, do = s.dgx.split(H, dim=-1)
        torch.mul(dh * y, dsig(o, 3), out=do)
        dlc = torch.mul(dh * o, A.derivative(s.acts.activation, y), out=s.grads["DLC"])
        dc = dc_next + normalize_backward(dlc * g_c, ch, sv["RS"][:, 1:])
        torch.mul(dc * g, dsig(i, 0), out=di)
        torch.mul(dc * s.prev[1], dsig(f, 1), out=df)
        torch.mul(dc * i, A.derivative(s.acts.activation, g), out=dg)
        normalize_backward(s.dgx * g_hh, sv["XH"], sv["RS"][:, :1], out=s.grads["dP0"])
        s.d_prev = [None, dc * f]

    def weight_grads(self, grads, dgx, h_in, u, weights, needs, saved):
        """d W_hh from the product's gradient (one GEMM over all steps); b_hh and the gains are sums."""
        rows = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (T, B, W) -> (T*B, W)
        out = [None] * 5
        d, dlc = rows(dgx), rows(grads["DLC"])
        if needs[0]:
            out[0] = rows(grads["dP0"]).t() @ rows(h_in)
        if weights[1] is not None and needs[1]:
            out[1] = d.sum(0)
        if needs[2]:
            out[2] = (d * rows(saved["XH"])).sum(0)
        if needs[3]:
            out[3] = (dlc * rows(saved["CH"])).sum(0)
        if needs[4]:
            out[4] = dlc.sum(0)
        return out


CELL = LayerNormLSTMSpec()
