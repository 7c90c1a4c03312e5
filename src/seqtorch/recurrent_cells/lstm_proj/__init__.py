"""LSTM with a projection (torch.nn.LSTM's ``proj_size``): the LSTM's gates, then ``h`` projected to P::

    i, f, g, o = split(gx + h~ W_hh^T + b_hh)        W_hh (4H, P): the products read the projected h
    c' = sig(f) * c + sig(i) * act(g)
    h' = (sig(o) * act(c')) W_hr^T                   W_hr (P, H), no bias

States h (P) and c (H). Two products: the projection needs the gates first, so a step runs in two stages
(stage 0: the LSTM's gates and c', and u = sig(o) * act(c'); stage 1: h' = u W_hr^T, the product itself).
Weights ``(weight_hh, bias_hh or None, weight_hr)``; saved as the LSTM (A, TC, PRE); the projection's
output gradient is a buffer of its own, ``dP1`` (P).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Product, Sizes
from ..lstm import CELL as LSTM


class LSTMProjectionSpec(Cell):
    name = "lstm_proj"
    family = "lstm"
    options = ("activation", "recurrent_activation")
    gates = 4
    folds_input_bias = True
    states = ("h", "c")
    projected = True
    weights = ("weight_hh", "bias_hh", "weight_hr")
    products = (Product(weight=0), Product(weight=2, input="u", bias=None))

    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        return [("weight_ih", (4 * H, I)), ("weight_hh", (4 * H, P)), ("bias_ih", (4 * H,)), ("bias_hh", (4 * H,)),
                ("weight_hr", (P, H))]

    def u_width(self, H: int, P: int) -> int:
        return H

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        h, c = states
        w_hh, b_hh, w_hr = weights
        sig = lambda x: A.apply(acts.recurrent, x)  # noqa: E731
        act = lambda x: A.apply(acts.activation, x)  # noqa: E731
        i, f, g, o = (gx + F.linear(h_in, w_hh, b_hh)).chunk(4, dim=-1)
        c_new = sig(f) * c + sig(i) * act(g)
        return F.linear(sig(o) * act(c_new), w_hr), c_new

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        return LSTM.saved(sizes, acts)

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        return [("dP1", sizes.P)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        if stage == 1:
            s.next[0].copy_(s.product)
            return
        # the LSTM's step, with the state it would output written to u for the projection
        LSTM.loop_forward(0, ForwardStep(gx=s.gx, product=s.product, h_in=s.h_in, prev=s.prev,
                                         next=(s.u, s.next[1]), u=None, weights=s.weights[:2], saved=s.saved,
                                         acts=s.acts, args=s.args))

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        if stage == 1:
            s.grads["dP1"].copy_(s.d_next[0])
            return
        inner = BackwardStep(d_next=(s.du, s.d_next[1]), prev=s.prev, h_in=s.h_in, u=None, weights=s.weights[:2],
                             saved=s.saved, acts=s.acts, dgx=s.dgx, grads={}, args=s.args, d_prev=[None, None])
        LSTM.loop_backward(0, inner)
        s.d_prev = [None, inner.d_prev[1]]


CELL = LSTMProjectionSpec()
