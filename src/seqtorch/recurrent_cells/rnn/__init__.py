"""SimpleRNN (Elman): ``h' = act(gx + h~ W_hh^T + b_hh)``, ``act`` tanh or relu (torch's ``nonlinearity``).

Weights ``(weight_hh (H, H), bias_hh (H,) or None)``. One product; saved per step ``Y`` = h' (H), the
activation's output its derivative is written from (the state the scan keeps differs from it under
zoneout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes


class SimpleRNNSpec(Cell):
    name = "rnn"
    family = "rnn"
    options = ("activation",)
    gates = 1
    folds_input_bias = True
    states = ("h",)

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        w_hh, b_hh = weights
        return (A.apply(acts.activation, gx + F.linear(h_in, w_hh, b_hh)),)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        return [("Y", sizes.H)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        y = s.saved["Y"]
        torch.add(s.gx, s.product, out=y)
        if s.weights[1] is not None:
            y.add_(s.weights[1])
        s.next[0].copy_(A.apply_(s.acts.activation, y))

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        torch.mul(s.d_next[0], A.derivative(s.acts.activation, s.saved["Y"]), out=s.dgx)
        s.d_prev = [None]


CELL = SimpleRNNSpec()
