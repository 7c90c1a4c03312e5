"""Parameter initialization schemes: torch.nn's default and Keras' (what the book's numbers assume)."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

INITS = ("torch", "keras")


@torch.no_grad()
def torch_default_(parameters: Iterable[Tensor], hidden_size: int) -> None:
    """torch.nn.RNN/LSTM/GRU's scheme: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).

    Drawn in the order given, which for seqtorch's layers and cells is torch.nn's registration
    order: with the same seed, seqtorch and torch.nn start from identical weights.
    """
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in parameters:
        p.uniform_(-bound, bound)


@torch.no_grad()
def keras_(family: str, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> None:
    """Keras' defaults for one recurrent layer (one direction) of a cell of ``family`` ("rnn", "lstm", "gru").

    * input kernel: glorot uniform over the whole (I, G*H) kernel, so the bound is sqrt(6 / (I + G*H));
    * recurrent kernel: orthogonal over the whole (H, G*H) kernel (in torch's (G*H, H) layout the
      columns are orthonormal);
    * biases: zeros, except the LSTM forget gate's, which is 1 (Keras' ``unit_forget_bias``). Keras has
      one bias where torch has two; the 1 goes in ``b_ih`` and ``b_hh`` stays zero, so the sum matches.
    """
    nn.init.xavier_uniform_(w_ih)
    if w_hh.dim() == 2:  # a weight vector (IndRNN) has its own initialization (the cell's init_)
        nn.init.orthogonal_(w_hh)
    for b in (b_ih, b_hh):
        if b is not None:
            b.zero_()
    if family == "lstm" and b_ih is not None:
        hidden = w_hh.shape[1]
        b_ih[hidden: 2 * hidden] = 1.0
