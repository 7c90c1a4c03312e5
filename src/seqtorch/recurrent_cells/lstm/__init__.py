"""LSTM (torch's gate order i, f, g, o)::

    i, f, g, o = split(gx + h~ W_hh^T + b_hh)
    c' = sig(f) * c + sig(i) * act(g)
    h' = sig(o) * act(c')

``sig`` = recurrent_activation, ``act`` = activation. Weights ``(weight_hh (4H, H), bias_hh (4H,) or
None)``. Saved per step: ``A`` the gate activations (4H), ``TC`` = act(c') (H), and ``PRE`` the gate
pre-activations (4H) for the hard sigmoids, whose derivative needs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes


class LSTMSpec(Cell):
    name = "lstm"
    family = "lstm"
    options = ("activation", "recurrent_activation")
    gates = 4
    folds_input_bias = True
    states = ("h", "c")

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        h, c = states
        w_hh, b_hh = weights
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        act = lambda x: A.apply(acts.activation, x)  # noqa: E731
        i, f, g, o = (gx + F.linear(h_in, w_hh, b_hh)).chunk(4, dim=-1)
        c_new = sig(f) * c + sig(i) * act(g)
        return sig(o) * act(c_new), c_new

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        H = sizes.H
        return [("A", 4 * H), ("TC", H), ("PRE", 4 * H if A.needs_pre(acts.recurrent) else 0)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        gates, tc = s.saved["A"], s.saved["TC"]
        H = tc.shape[-1]
        torch.add(s.gx, s.product, out=gates)
        if s.weights[1] is not None:
            gates.add_(s.weights[1])
        if s.saved["PRE"].numel():
            s.saved["PRE"].copy_(gates)
        A.apply_(s.acts.recurrent, gates[:, : 2 * H])
        A.apply_(s.acts.activation, gates[:, 2 * H: 3 * H])
        A.apply_(s.acts.recurrent, gates[:, 3 * H:])
        i, f, g, o = gates.split(H, dim=-1)
        h_next, c_next = s.next
        torch.mul(f, s.prev[1], out=c_next)
        c_next.addcmul_(i, g)
        A.apply_(s.acts.activation, tc.copy_(c_next))
        torch.mul(o, tc, out=h_next)

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        dh, dc = s.d_next
        gates, tc, pre = s.saved["A"], s.saved["TC"], s.saved["PRE"]
        H = tc.shape[-1]
        i, f, g, o = gates.split(H, dim=-1)
        p = pre.split(H, dim=-1) if pre.numel() else (None,) * 4
        dsig = lambda y, k: A.derivative(s.acts.recurrent, y, p[k])  # noqa: E731
        dc = dc + dh * o * A.derivative(s.acts.activation, tc)
        di, df, dg, do = s.dgx.split(H, dim=-1)
        torch.mul(dc * g, dsig(i, 0), out=di)
        torch.mul(dc * s.prev[1], dsig(f, 1), out=df)
        torch.mul(dc * i, A.derivative(s.acts.activation, g), out=dg)
        torch.mul(dh * tc, dsig(o, 3), out=do)
        s.d_prev = [None, dc * f]


CELL = LSTMSpec()
