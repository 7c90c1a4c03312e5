"""IndRNN's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the LSTM's
``triton.py`` describes the arguments). Its weight is a vector: the kernel hands it over as a (1, BLOCK_H)
row in ``b_w0`` (``W_VECTOR``). Saved Y = h'."""

from __future__ import annotations

import triton.language as tl

from ..triton_math import act, act_grad, keep_valid, load_tile, store_tile


def forward(b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
            p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    b_y = act(load_tile(p_gx, m_bh, ACC) + b_b0 + b_w0 * b_hin, RELU)
    if SAVE:
        store_tile(p_s0, keep_valid(b_y, b_valid, HAS_LENGTHS), m_bh)
    return b_y, b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1, H, P, o_h, b_w0, b_w1, b_w2, b_w3,
             p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
             ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    b_da = keep_valid(b_dh * act_grad(load_tile(p_s0, m_bh, ACC), RELU), b_valid, HAS_LENGTHS)
    store_tile(p_dgx, b_da, m_bh)
    return b_da * b_w0, b_dh * 0.0, b_dc
