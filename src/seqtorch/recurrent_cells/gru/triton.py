"""torch's GRU (reset_after=True): pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`;
the LSTM's ``triton.py`` describes the arguments). Saved as this folder's ``__init__.py``: RZ (r at 0, z
at H), N, HN = h~ W_hn^T + b_hn, PRE (hard sigmoids); gradient buffer dP0 = (dr, dz, r dn)."""

from __future__ import annotations

import triton.language as tl

from ..triton_math import act, act_grad, dot, gate, gate_grad, keep_valid, load_tile, store_tile


def forward(b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
            p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    a_r = load_tile(p_gx, m_bh, ACC) + dot(b_hin, b_w0) + b_b0
    a_z = load_tile(p_gx + H, m_bh, ACC) + dot(b_hin, b_w1) + b_b1
    b_hn = dot(b_hin, b_w2) + b_b2
    b_r = gate(a_r, GATE)
    b_z = gate(a_z, GATE)
    b_n = act(load_tile(p_gx + 2 * H, m_bh, ACC) + b_r * b_hn, RELU)
    if SAVE:
        store_tile(p_s0, keep_valid(b_r, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s0 + H, keep_valid(b_z, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1, keep_valid(b_n, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s2, keep_valid(b_hn, b_valid, HAS_LENGTHS), m_bh)
        if GATE != 0:
            store_tile(p_s3, keep_valid(a_r, b_valid, HAS_LENGTHS), m_bh)
            store_tile(p_s3 + H, keep_valid(a_z, b_valid, HAS_LENGTHS), m_bh)
    return b_n + b_z * (b_h - b_n), b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1, H, P, o_h, b_w0, b_w1, b_w2, b_w3,
             p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
             ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    b_r = load_tile(p_s0, m_bh, ACC)
    b_z = load_tile(p_s0 + H, m_bh, ACC)
    b_n = load_tile(p_s1, m_bh, ACC)
    b_hn = load_tile(p_s2, m_bh, ACC)
    if GATE != 0:
        p_r = load_tile(p_s3, m_bh, ACC)
        p_z = load_tile(p_s3 + H, m_bh, ACC)
    else:
        p_r = b_r
        p_z = b_z
    b_dn = keep_valid(b_dh * (1.0 - b_z) * act_grad(b_n, RELU), b_valid, HAS_LENGTHS)
    b_dz = keep_valid(b_dh * (b_hp - b_n) * gate_grad(b_z, p_z, GATE), b_valid, HAS_LENGTHS)
    b_dr = b_dn * b_hn * gate_grad(b_r, p_r, GATE)
    b_drn = b_dn * b_r
    store_tile(p_dgx, b_dr, m_bh)
    store_tile(p_dgx + H, b_dz, m_bh)
    store_tile(p_dgx + 2 * H, b_dn, m_bh)
    store_tile(p_g0, b_dr, m_bh)
    store_tile(p_g0 + H, b_dz, m_bh)
    store_tile(p_g0 + 2 * H, b_drn, m_bh)
    return dot(b_dr, b_w0) + dot(b_dz, b_w1) + dot(b_drn, b_w2), b_dh * b_z, b_dc
