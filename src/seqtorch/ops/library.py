"""The fused scan as ``torch.library`` custom ops, so torch.compile sees one opaque op and no graph break.

Two ops and the autograd formula that links them (the hand-written BPTT is the backward):

* ``seqtorch::recurrent_scan_forward(...) -> Tensor[]``: the buffers of
  :func:`.cpu_loops.forward_scan` (state history first, then what the backward needs).
* ``seqtorch::recurrent_scan_backward(...) -> Tensor[]``: ``[dgx, dh0, dc0, dw_hh, db_hh]``.

Optional inputs (``c0``, ``b_hh``, ``lengths``, ``rec_mask``) are ``Tensor?`` in the schema; absent
outputs are 0-element tensors (an op cannot return None). The fake (meta) implementations allocate the
same buffers as the real ones, from the same shape function, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import cpu_loops


@torch.library.custom_op("seqtorch::recurrent_scan_forward", mutates_args=())
def recurrent_scan_forward(mode: str, gx: Tensor, h0: Tensor, c0: Optional[Tensor], w_hh: Tensor,
                           b_hh: Optional[Tensor], lengths: Optional[Tensor], rec_mask: Optional[Tensor],
                           reverse: bool, activation: str, recurrent_activation: str,
                           reset_after: bool) -> list[Tensor]:
    """Forward scan (shapes in :func:`.cpu_loops.forward_scan`); inputs share one dtype."""
    # Autocast would turn the loop's addmm into bf16 GEMMs; the caller already chose the dtype.
    with torch.autocast(device_type=gx.device.type, enabled=False):
        return cpu_loops.forward_scan(mode, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, reverse, activation,
                                      recurrent_activation, reset_after)


@recurrent_scan_forward.register_fake
def _forward_fake(mode, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, reverse, activation, recurrent_activation,
                  reset_after):
    T, B, _ = gx.shape
    hard = recurrent_activation == "hard_sigmoid" and mode != "rnn"
    return cpu_loops.forward_buffers(mode, T, B, h0.shape[-1], has_mask=rec_mask is not None, hard=hard,
                                     reset_after=reset_after, like=gx)


@torch.library.custom_op("seqtorch::recurrent_scan_backward", mutates_args=())
def recurrent_scan_backward(mode: str, grad_states: Optional[Tensor], grad_cells: Optional[Tensor],
                            saved: list[Tensor], w_hh: Tensor, has_bias: bool, has_c: bool,
                            lengths: Optional[Tensor], rec_mask: Optional[Tensor], reverse: bool,
                            activation: str, recurrent_activation: str, reset_after: bool) -> list[Tensor]:
    """BPTT (shapes in :func:`.cpu_loops.backward_scan`)."""
    with torch.autocast(device_type=w_hh.device.type, enabled=False):
        return cpu_loops.backward_scan(mode, grad_states, grad_cells, list(saved), w_hh, has_bias, has_c, lengths,
                                       rec_mask, reverse, activation, recurrent_activation, reset_after)


@recurrent_scan_backward.register_fake
def _backward_fake(mode, grad_states, grad_cells, saved, w_hh, has_bias, has_c, lengths, rec_mask, reverse,
                   activation, recurrent_activation, reset_after):
    T1, B, H = saved[0].shape
    return cpu_loops.backward_buffers(mode, T1 - 1, B, H, has_c=has_c, has_bias=has_bias, like=saved[0])


def _setup_context(ctx, inputs, output) -> None:
    mode, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, reverse, activation, recurrent_activation, reset_after = inputs
    # Only the state buffers (S, C) reach the user; the other outputs are saved activations whose
    # gradients are always None: don't let autograd allocate zeros for them.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(w_hh, lengths, rec_mask, *output)
    ctx.options = (mode, b_hh is not None, c0 is not None, reverse, activation, recurrent_activation, reset_after)


def _backward(ctx, grads):
    w_hh, lengths, rec_mask, *saved = ctx.saved_tensors
    mode, has_bias, has_c, reverse, activation, recurrent_activation, reset_after = ctx.options
    grad_states, grad_cells = grads[0], grads[1]
    if grad_states is None and grad_cells is None:
        return (None,) * 12
    dgx, dh0, dc0, dw, db = recurrent_scan_backward(
        mode, grad_states, grad_cells if mode == "lstm" else None, saved, w_hh, has_bias, has_c, lengths, rec_mask,
        reverse, activation, recurrent_activation, reset_after)
    return (None, dgx, dh0, dc0 if has_c and mode == "lstm" else None, dw, db if has_bias else None,
            None, None, None, None, None, None)


recurrent_scan_forward.register_autograd(_backward, setup_context=_setup_context)
