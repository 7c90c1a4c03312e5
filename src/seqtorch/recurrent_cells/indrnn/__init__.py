"""IndRNN (Li et al. 2018; haste's IndRNN): every unit recurs only on itself::

    h' = act(gx + w_hh * h~ + b_hh)          w_hh (H,): a vector, an elementwise product

No recurrent matrix product; ``act`` is relu by default (tanh allowed). Weights ``(weight_hh (H,),
bias_hh (H,) or None)``; weight_hh starts uniform in [0, 1] (Li et al.'s choice for short sequences).
Keeping |w_hh| under a bound during training (Li et al.'s constraint) is the user's choice (README).
Saved per step ``Y`` = h' (the activation's derivative is written from it).
"""

from __future__ import annotations

import torch

from .. import activations as A
from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes


class IndRNNSpec(Cell):
    name = "indrnn"
    family = "rnn"
    options = ("activation",)
    gates = 1
    folds_input_bias = True
    states = ("h",)
    products = ()

    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        return [("weight_ih", (H, I)), ("weight_hh", (H,)), ("bias_ih", (H,)), ("bias_hh", (H,))]

    def init_(self, params: dict, scheme: str) -> None:
        with torch.no_grad():
            params["weight_hh"].uniform_(0.0, 1.0)

    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        w_hh, b_hh = weights
        pre = gx + w_hh * h_in
        return (A.apply(acts.activation, pre if b_hh is None else pre + b_hh),)

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        return [("Y", sizes.H)]

    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        y = torch.addcmul(s.gx, s.weights[0], s.h_in, out=s.saved["Y"])
        if s.weights[1] is not None:
            y.add_(s.weights[1])
        s.next[0].copy_(A.apply_(s.acts.activation, y))

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        torch.mul(s.d_next[0], A.derivative(s.acts.activation, s.saved["Y"]), out=s.dgx)
        s.d_h_in = s.dgx * s.weights[0]
        s.d_prev = [None]

    def weight_grads(self, grads, dgx, h_in, u, weights, needs, saved):
        """d w_hh = sum over steps and sequences of d pre * h~; d b_hh = sum of d pre (= dgx)."""
        dw = (dgx * h_in).sum((0, 1)) if needs[0] else None
        db = dgx.sum((0, 1)) if weights[1] is not None and needs[1] else None
        return [dw, db]


CELL = IndRNNSpec()
