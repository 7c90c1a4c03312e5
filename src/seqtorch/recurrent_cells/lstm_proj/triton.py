"""The projected LSTM (proj_size): pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the
arguments are the interface of :mod:`~seqtorch.recurrent_cells.triton_math`). The LSTM's step
(``lstm/triton.py``, saving A, TC, PRE as this folder's ``__init__.py`` says) writes u = sig(o) * act(c') to
U; then h' = u W_hr^T, with W_hr (P, H) the cell's extra weight ``weight_hr``, is the second product, done
here in the same step. Gradient buffer dP1 (P) = d h'.

h is P wide: the kernel hands over h tiles masked to their first P columns and W_hh's tiles masked to P inputs.
W_hr is read from global memory (L2) each step, in one (BLOCK_H, BLOCK_H) tile masked to (P, H).
"""

from __future__ import annotations

import triton.language as tl

from ..lstm import CELL as LSTM
from ..lstm.triton import backward as lstm_backward
from ..lstm.triton import forward as lstm_forward
from ..triton_math import dot, extra_weights, keep_valid, slots, store_tile
from . import CELL

(W_HR,) = slots(extra_weights(CELL), "weight_hr")
(DP1,) = slots(CELL.grad_buffer_names(), "dP1")
# the LSTM's step reads and writes this cell's saved buffers at the LSTM's slots: they must be the same
if CELL.saved_names() != LSTM.saved_names():
    raise ValueError(f"lstm_proj's Triton step needs the LSTM's saved buffers {LSTM.saved_names()} in their "
                      f"order, its spec declares {CELL.saved_names()}")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    b_u, b_c_new = lstm_forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
                                ACC, SAVE, HAS_VALID, RELU, GATE)
    if SAVE:
        store_tile(p_u, keep_valid(b_u, b_valid, HAS_VALID), m_bh)
    # W_hr^T as a (H in, P out) tile: element [j, p] = W_hr[p, j]
    b_wr = tl.load(extra[W_HR] + o_h[None, :] * H + o_h[:, None], mask=(o_h < H)[:, None] & (o_h < P)[None, :],
                   other=0.0).to(ACC)
    return dot(b_u, b_wr), b_c_new


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Stores dP1 = d h' and, through the LSTM's backward with d u = d h' W_hr, dgx; h has no direct path."""
    store_tile(grads[DP1], keep_valid(b_dh, b_valid, HAS_VALID), m_bh & (o_h < P)[None, :])
    # W_hr as a (P out, H in) tile
    b_wr = tl.load(extra[W_HR] + o_h[:, None] * H + o_h[None, :], mask=(o_h < P)[:, None] & (o_h < H)[None, :],
                   other=0.0).to(ACC)
    b_dhin, b_none, b_dc_prev = lstm_backward(dot(b_dh, b_wr), b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved,
                                              p_u, w, extra, p_args, H, P, o_h, m_bh, b_valid, ACC, HAS_VALID,
                                              RELU, GATE)
    return b_dhin, b_dh * 0.0, b_dc_prev
