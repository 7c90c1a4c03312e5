"""The LayerNorm GRU's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the LSTM's
``triton.py`` describes the arguments). Equations and layout as this folder's ``__init__.py``: weight W2 =
g_hh (3H); saved RZ (2H), N (H), GHN (H), XH (3H), RS (rstd at column 0), PRE (2H, hard sigmoids); gradient
buffers dP0 (3H) and DGH (3H). eps is CARGS[0].

A program owns whole batch rows (all 3H columns, in three gate tiles), so LN's row statistics are sums over
the three tiles; padded columns are masked out of them.
"""

from __future__ import annotations

import triton.language as tl

from ..triton_math import (act, act_grad, dot, gate, gate_grad, keep_valid, ln_center, ln_grad, load_column,
                           load_row, load_tile, row_sum, store_column, store_tile)


def forward(b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
            p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    eps = tl.load(p_args).to(ACC)
    m_row = (o_h < H)[None, :]
    # gh = LN(h~ W_hh^T) g_hh + b_hh, LN over the row's 3H product
    b_p0 = dot(b_hin, b_w0)
    b_p1 = dot(b_hin, b_w1)
    b_p2 = dot(b_hin, b_w2)
    mean = (row_sum(b_p0) + row_sum(b_p1) + row_sum(b_p2)) / (3 * H)
    b_p0 = ln_center(b_p0, mean, m_row)
    b_p1 = ln_center(b_p1, mean, m_row)
    b_p2 = ln_center(b_p2, mean, m_row)
    rstd = 1.0 / tl.sqrt((row_sum(b_p0 * b_p0) + row_sum(b_p1 * b_p1) + row_sum(b_p2 * b_p2)) / (3 * H) + eps)
    b_x0 = b_p0 * rstd
    b_x1 = b_p1 * rstd
    b_x2 = b_p2 * rstd
    a_r = load_tile(p_gx, m_bh, ACC) + (b_x0 * load_row(p_w2, 0, H, o_h, ACC) + b_b0)
    a_z = load_tile(p_gx + H, m_bh, ACC) + (b_x1 * load_row(p_w2, 1, H, o_h, ACC) + b_b1)
    b_ghn = b_x2 * load_row(p_w2, 2, H, o_h, ACC) + b_b2
    b_r = gate(a_r, GATE)
    b_z = gate(a_z, GATE)
    b_n = act(load_tile(p_gx + 2 * H, m_bh, ACC) + b_r * b_ghn, RELU)
    if SAVE:
        store_tile(p_s0, keep_valid(b_r, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s0 + H, keep_valid(b_z, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1, keep_valid(b_n, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s2, keep_valid(b_ghn, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s3, keep_valid(b_x0, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s3 + H, keep_valid(b_x1, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s3 + 2 * H, keep_valid(b_x2, b_valid, HAS_LENGTHS), m_bh)
        store_column(p_s4, keep_valid(rstd, b_valid, HAS_LENGTHS), m_bh, o_h)
        if GATE != 0:
            store_tile(p_s5, keep_valid(a_r, b_valid, HAS_LENGTHS), m_bh)
            store_tile(p_s5 + H, keep_valid(a_z, b_valid, HAS_LENGTHS), m_bh)
    return b_n + b_z * (b_h - b_n), b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1, H, P, o_h, b_w0, b_w1, b_w2, b_w3,
             p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
             ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Returns (d h_in through the product, d h direct, d c (none)); stores dgx, dP0, DGH."""
    m_row = (o_h < H)[None, :]
    b_r = load_tile(p_s0, m_bh, ACC)
    b_z = load_tile(p_s0 + H, m_bh, ACC)
    b_n = load_tile(p_s1, m_bh, ACC)
    b_ghn = load_tile(p_s2, m_bh, ACC)
    if GATE != 0:
        p_r = load_tile(p_s5, m_bh, ACC)
        p_z = load_tile(p_s5 + H, m_bh, ACC)
    else:
        p_r = b_r
        p_z = b_z
    b_dn = keep_valid(b_dh * (1.0 - b_z) * act_grad(b_n, RELU), b_valid, HAS_LENGTHS)
    b_dz = keep_valid(b_dh * (b_hp - b_n) * gate_grad(b_z, p_z, GATE), b_valid, HAS_LENGTHS)
    b_dr = b_dn * b_ghn * gate_grad(b_r, p_r, GATE)
    b_dghn = b_dn * b_r
    store_tile(p_dgx, b_dr, m_bh)
    store_tile(p_dgx + H, b_dz, m_bh)
    store_tile(p_dgx + 2 * H, b_dn, m_bh)
    store_tile(p_g1, b_dr, m_bh)
    store_tile(p_g1 + H, b_dz, m_bh)
    store_tile(p_g1 + 2 * H, b_dghn, m_bh)
    # the product's gradient: through g_hh, then LN over the row's 3H
    b_d0 = b_dr * load_row(p_w2, 0, H, o_h, ACC)
    b_d1 = b_dz * load_row(p_w2, 1, H, o_h, ACC)
    b_d2 = b_dghn * load_row(p_w2, 2, H, o_h, ACC)
    b_x0 = load_tile(p_s3, m_bh, ACC)
    b_x1 = load_tile(p_s3 + H, m_bh, ACC)
    b_x2 = load_tile(p_s3 + 2 * H, m_bh, ACC)
    mean_d = (row_sum(b_d0) + row_sum(b_d1) + row_sum(b_d2)) / (3 * H)
    mean_dx = (row_sum(b_d0 * b_x0) + row_sum(b_d1 * b_x1) + row_sum(b_d2 * b_x2)) / (3 * H)
    rstd = load_column(p_s4, m_bh, o_h, ACC)
    b_dp0 = ln_grad(b_d0, b_x0, mean_d, mean_dx, rstd, m_row)
    b_dp1 = ln_grad(b_d1, b_x1, mean_d, mean_dx, rstd, m_row)
    b_dp2 = ln_grad(b_d2, b_x2, mean_d, mean_dx, rstd, m_row)
    store_tile(p_g0, b_dp0, m_bh)
    store_tile(p_g0 + H, b_dp1, m_bh)
    store_tile(p_g0 + 2 * H, b_dp2, m_bh)
    return dot(b_dp0, b_w0) + dot(b_dp1, b_w1) + dot(b_dp2, b_w2), b_dh * b_z, b_dc
