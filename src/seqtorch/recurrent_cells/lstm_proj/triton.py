"""The projected LSTM (proj_size): pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`;
the LSTM's ``triton.py`` describes the arguments). The LSTM's step (``lstm/triton.py``, saving A, TC, PRE as
this folder's ``__init__.py`` says) writes u = sig(o) * act(c') to U; then h' = u W_hr^T, with W_hr (P, H) the
cell's weight W2, is the second product, done here in the same step. Gradient buffer dP1 (P) = d h'.

h is P wide: the kernel hands over h tiles masked to their first P columns and W_hh's tiles masked to P inputs.
W_hr is read from global memory (L2) each step, in one (BLOCK_H, BLOCK_H) tile masked to (P, H).
"""

from __future__ import annotations

import triton.language as tl

from ..lstm.triton import backward as lstm_backward
from ..lstm.triton import forward as lstm_forward
from ..triton_math import dot, keep_valid, store_tile


def forward(b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
            p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    b_u, b_c_new = lstm_forward(b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
                                p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
                                ACC, SAVE, HAS_LENGTHS, RELU, GATE)
    if SAVE:
        store_tile(p_u, keep_valid(b_u, b_valid, HAS_LENGTHS), m_bh)
    # W_hr^T as a (H in, P out) tile: element [j, p] = W_hr[p, j]
    b_wr = tl.load(p_w2 + o_h[None, :] * H + o_h[:, None], mask=(o_h < H)[:, None] & (o_h < P)[None, :],
                   other=0.0).to(ACC)
    return dot(b_u, b_wr), b_c_new


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1, H, P, o_h, b_w0, b_w1, b_w2, b_w3,
             p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
             ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Stores dP1 = d h' and, through the LSTM's backward with d u = d h' W_hr, dgx; h has no direct path."""
    store_tile(p_g0, keep_valid(b_dh, b_valid, HAS_LENGTHS), m_bh & (o_h < P)[None, :])
    # W_hr as a (P out, H in) tile
    b_wr = tl.load(p_w2 + o_h[:, None] * H + o_h[None, :], mask=(o_h < P)[:, None] & (o_h < H)[None, :],
                   other=0.0).to(ACC)
    b_dhin, b_none, b_dc_prev = lstm_backward(dot(b_dh, b_wr), b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1,
                                              H, P, o_h, b_w0, b_w1, b_w2, b_w3, p_s0, p_s1, p_s2, p_s3, p_s4, p_s5,
                                              p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid, ACC, HAS_LENGTHS, RELU,
                                              GATE)
    return b_dhin, b_dh * 0.0, b_dc_prev
