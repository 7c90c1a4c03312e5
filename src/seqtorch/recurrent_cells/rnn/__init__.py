"""SimpleRNN (Elman): ``h' = act(gx + h~ W_hh^T + b_hh)``, ``act`` tanh or relu (torch's ``nonlinearity``).

Weights ``(weight_hh (H, H), bias_hh (H,) or None)``. One product, no saved buffers: the derivative comes
from the new state, which the scan keeps anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes


class SimpleRNNCell(Cell):
    name = "rnn"
    gates = 1
    states = ("h",)

    def step(self, gx, h_in, states, weights, acts: Acts):
        w_hh, b_hh = weights
        return (A.apply(acts.activation, gx + F.linear(h_in, w_hh, b_hh)),)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        return []

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        (h_next,) = s.next
        torch.add(s.gx, s.product, out=h_next)
        if s.weights[1] is not None:
            h_next.add_(s.weights[1])
        A.apply_(s.acts.activation, h_next)

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        torch.mul(s.d_next[0], A.derivative(s.acts.activation, s.next[0]), out=s.dgx)
        s.d_prev = [None]


CELL = SimpleRNNCell()
