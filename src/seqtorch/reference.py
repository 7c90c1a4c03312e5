"""The recurrent math, written once in plain PyTorch: the one place to read the equations.

Everything here is differentiable with autograd, works on any device and dtype (float64 included),
and is the reference every fast path in :mod:`seqtorch.ops` is tested against.

Conventions (those of torch.nn):

* Gate order in the stacked weights: LSTM ``i, f, g, o``; GRU ``r, z, n``.
* ``gx`` is the input projection ``x @ W_ih^T + b_ih``, computed for all timesteps before the loop
  (it does not depend on the state); the loop only does the recurrent part.
* ``activation`` is the cell's main nonlinearity (torch's ``nonlinearity`` for SimpleRNN, Keras'
  ``activation`` for LSTM and GRU); ``recurrent_activation`` is the gates' squashing function.

Equations, with ``act`` = activation, ``sig`` = recurrent_activation, ``h~ = h * rec_mask``
(variational recurrent dropout; ``h~ = h`` without a mask)::

    SimpleRNN  h' = act(gx + h~ W_hh^T + b_hh)

    LSTM       i, f, g, o = split(gx + h~ W_hh^T + b_hh)
               c' = sig(f) * c + sig(i) * act(g)
               h' = sig(o) * act(c')

    GRU        r, z = sig(split(gx_rz + h~ W_hrz^T + b_hrz))
      reset_after=True  (torch, Keras >= 2.3 default):  n = act(gx_n + r * (h~ W_hn^T + b_hn))
      reset_after=False (Keras 2.0, the book):          n = act(gx_n + (r * h~) W_hn^T + b_hn)
               h' = (1 - z) * n + z * h

The recurrent dropout mask multiplies the state only where it enters a matrix product; the carried
state (``c`` and the ``z * h`` term) is the unmasked one, as in Keras.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu")
# "hard_sigmoid" is Keras 2's (and the book's) formula, kept under that name; "hard_sigmoid_keras2" names it
# unmistakably; "hardsigmoid" is torch's F.hardsigmoid, which Keras 3 also calls hard_sigmoid.
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2", "hardsigmoid")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def hard_sigmoid(x: Tensor) -> Tensor:
    """Keras 2's piecewise-linear sigmoid: ``clip(0.2 * x + 0.5, 0, 1)`` (torch's ``F.hardsigmoid``, which
    Keras 3 uses, is ``clip(x / 6 + 0.5, 0, 1)``)."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def activation_fn(name: str):
    """The elementwise function named ``name`` (one of :data:`ACTIVATIONS` or
    :data:`RECURRENT_ACTIVATIONS`)."""
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    if name == "sigmoid":
        return torch.sigmoid
    if name in ("hard_sigmoid", "hard_sigmoid_keras2"):
        return hard_sigmoid
    if name == "hardsigmoid":
        return F.hardsigmoid
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS + RECURRENT_ACTIVATIONS}")


def rnn_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, *, rec_mask: Tensor | None = None,
             activation: str = "tanh") -> Tensor:
    """One SimpleRNN step. gx: (B, H) input projection; h: (B, H). Returns h': (B, H)."""
    h_in = h if rec_mask is None else h * rec_mask
    return activation_fn(activation)(gx + F.linear(h_in, w_hh, b_hh))


def lstm_step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None, *,
              rec_mask: Tensor | None = None, activation: str = "tanh",
              recurrent_activation: str = "sigmoid") -> tuple[Tensor, Tensor]:
    """One LSTM step. gx: (B, 4H); h, c: (B, H). Returns (h', c'), each (B, H)."""
    act, sig = activation_fn(activation), activation_fn(recurrent_activation)
    h_in = h if rec_mask is None else h * rec_mask
    i, f, g, o = (gx + F.linear(h_in, w_hh, b_hh)).chunk(4, dim=-1)
    c_new = sig(f) * c + sig(i) * act(g)
    h_new = sig(o) * act(c_new)
    return h_new, c_new


def gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, *, rec_mask: Tensor | None = None,
             activation: str = "tanh", recurrent_activation: str = "sigmoid",
             reset_after: bool = True) -> Tensor:
    """One GRU step. gx: (B, 3H); h: (B, H). Returns h': (B, H)."""
    act, sig = activation_fn(activation), activation_fn(recurrent_activation)
    hidden = h.shape[-1]
    h_in = h if rec_mask is None else h * rec_mask
    gx_r, gx_z, gx_n = gx.chunk(3, dim=-1)
    w_rz, w_n = w_hh[: 2 * hidden], w_hh[2 * hidden:]
    b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * hidden], b_hh[2 * hidden:])
    gh_r, gh_z = F.linear(h_in, w_rz, b_rz).chunk(2, dim=-1)
    r = sig(gx_r + gh_r)
    z = sig(gx_z + gh_z)
    if reset_after:
        n = act(gx_n + r * F.linear(h_in, w_n, b_n))
    else:
        n = act(gx_n + F.linear(r * h_in, w_n, b_n))
    return (1 - z) * n + z * h


def recurrent_scan_reference(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                             b_hh: Tensor | None, *, lengths: Tensor | None = None,
                             rec_mask: Tensor | None = None, reverse: bool = False,
                             activation: str = "tanh", recurrent_activation: str = "sigmoid",
                             reset_after: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run one layer, one direction, over a whole sequence: the plain loop every fast path must equal.

    Args:
        mode: "rnn", "lstm" or "gru".
        gx: (T, B, G*H) input projection ``x @ W_ih^T + b_ih`` (G = 1, 4, 3 for rnn, lstm, gru).
        h0: (B, H) initial hidden state. c0: (B, H) initial cell state for "lstm", else None.
        w_hh: (G*H, H). b_hh: (G*H,) or None.
        lengths: (B,) int64 on gx's device, 1 <= lengths <= T, or None (all sequences are T long).
            Steps at or past a sequence's length leave its state unchanged and output zeros; the reverse
            direction therefore starts at each sequence's own last valid step.
        rec_mask: (B, H) variational recurrent-dropout mask (already scaled by 1/(1-p)), or None.
        reverse: run from t = T-1 down to 0.

    Returns:
        output (T, B, H), h_n (B, H), c_n (B, H) for "lstm" else None.
    """
    steps = range(gx.shape[0] - 1, -1, -1) if reverse else range(gx.shape[0])
    outputs: list[Tensor | None] = [None] * gx.shape[0]
    h, c = h0, c0
    for t in steps:
        if mode == "lstm":
            h_new, c_new = lstm_step(gx[t], h, c, w_hh, b_hh, rec_mask=rec_mask, activation=activation,
                                     recurrent_activation=recurrent_activation)
        elif mode == "gru":
            h_new = gru_step(gx[t], h, w_hh, b_hh, rec_mask=rec_mask, activation=activation,
                             recurrent_activation=recurrent_activation, reset_after=reset_after)
        else:
            h_new = rnn_step(gx[t], h, w_hh, b_hh, rec_mask=rec_mask, activation=activation)
        if lengths is None:
            h, outputs[t] = h_new, h_new
            if mode == "lstm":
                c = c_new
        else:
            valid = (lengths > t).unsqueeze(-1)  # (B, 1): is step t inside each sequence?
            h = torch.where(valid, h_new, h)
            outputs[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
            if mode == "lstm":
                c = torch.where(valid, c_new, c)
    return torch.stack(outputs), h, c
