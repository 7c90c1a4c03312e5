"""The LayerNorm LSTM's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the LSTM's
``triton.py`` describes the arguments). Equations and layout as this folder's ``__init__.py``: weights W2 =
g_hh (4H), W3 = g_c (H), W4 = b_c (H); saved A (4H), XH (4H), RS (rstd of the product at column 0, of c' at
1), CH (H), Y (H), PRE (4H, hard sigmoids); gradient buffers dP0 (4H) and DLC (H). eps is CARGS[0].

A program owns whole batch rows (all 4H columns, in four gate tiles), so LN's row statistics are sums over
the four tiles; padded columns are masked out of them.
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
    # LN(h~ W_hh^T) over the row's 4H product
    b_p0 = dot(b_hin, b_w0)
    b_p1 = dot(b_hin, b_w1)
    b_p2 = dot(b_hin, b_w2)
    b_p3 = dot(b_hin, b_w3)
    mean = (row_sum(b_p0) + row_sum(b_p1) + row_sum(b_p2) + row_sum(b_p3)) / (4 * H)
    b_p0 = ln_center(b_p0, mean, m_row)
    b_p1 = ln_center(b_p1, mean, m_row)
    b_p2 = ln_center(b_p2, mean, m_row)
    b_p3 = ln_center(b_p3, mean, m_row)
    var = (row_sum(b_p0 * b_p0) + row_sum(b_p1 * b_p1) + row_sum(b_p2 * b_p2) + row_sum(b_p3 * b_p3)) / (4 * H)
    rstd_h = 1.0 / tl.sqrt(var + eps)
    b_x0 = b_p0 * rstd_h
    b_x1 = b_p1 * rstd_h
    b_x2 = b_p2 * rstd_h
    b_x3 = b_p3 * rstd_h
    a_i = load_tile(p_gx, m_bh, ACC) + b_x0 * load_row(p_w2, 0, H, o_h, ACC) + b_b0
    a_f = load_tile(p_gx + H, m_bh, ACC) + b_x1 * load_row(p_w2, 1, H, o_h, ACC) + b_b1
    a_g = load_tile(p_gx + 2 * H, m_bh, ACC) + b_x2 * load_row(p_w2, 2, H, o_h, ACC) + b_b2
    a_o = load_tile(p_gx + 3 * H, m_bh, ACC) + b_x3 * load_row(p_w2, 3, H, o_h, ACC) + b_b3
    b_i = gate(a_i, GATE)
    b_f = gate(a_f, GATE)
    b_g = act(a_g, RELU)
    b_o = gate(a_o, GATE)
    b_c_new = b_f * b_c + b_i * b_g
    # h' = sig(o) * act(LN(c') g_c + b_c), LN over the row's H
    b_cc = ln_center(b_c_new, row_sum(tl.where(m_row, b_c_new, 0.0)) / H, m_row)
    rstd_c = 1.0 / tl.sqrt(row_sum(b_cc * b_cc) / H + eps)
    b_ch = b_cc * rstd_c
    b_y = act(load_row(p_w4, 0, H, o_h, ACC) + b_ch * load_row(p_w3, 0, H, o_h, ACC), RELU)
    if SAVE:
        store_tile(p_s0, keep_valid(b_i, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s0 + H, keep_valid(b_f, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s0 + 2 * H, keep_valid(b_g, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s0 + 3 * H, keep_valid(b_o, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1, keep_valid(b_x0, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1 + H, keep_valid(b_x1, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1 + 2 * H, keep_valid(b_x2, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s1 + 3 * H, keep_valid(b_x3, b_valid, HAS_LENGTHS), m_bh)
        store_column(p_s2, keep_valid(rstd_h, b_valid, HAS_LENGTHS), m_bh, o_h)
        store_column(p_s2 + 1, keep_valid(rstd_c, b_valid, HAS_LENGTHS), m_bh, o_h)
        store_tile(p_s3, keep_valid(b_ch, b_valid, HAS_LENGTHS), m_bh)
        store_tile(p_s4, keep_valid(b_y, b_valid, HAS_LENGTHS), m_bh)
        if GATE != 0:
            store_tile(p_s5, keep_valid(a_i, b_valid, HAS_LENGTHS), m_bh)
            store_tile(p_s5 + H, keep_valid(a_f, b_valid, HAS_LENGTHS), m_bh)
            store_tile(p_s5 + 2 * H, keep_valid(a_g, b_valid, HAS_LENGTHS), m_bh)
            store_tile(p_s5 + 3 * H, keep_valid(a_o, b_valid, HAS_LENGTHS), m_bh)
    return b_o * b_y, b_c_new


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, p_g0, p_g1, H, P, o_h, b_w0, b_w1, b_w2, b_w3,
             p_s0, p_s1, p_s2, p_s3, p_s4, p_s5, p_u, p_w2, p_w3, p_w4, p_args, m_bh, b_valid,
             ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Returns (d h_in through the product, d h direct (none), d c of the state read); stores dgx, dP0, DLC."""
    m_row = (o_h < H)[None, :]
    b_i = load_tile(p_s0, m_bh, ACC)
    b_f = load_tile(p_s0 + H, m_bh, ACC)
    b_g = load_tile(p_s0 + 2 * H, m_bh, ACC)
    b_o = load_tile(p_s0 + 3 * H, m_bh, ACC)
    b_ch = load_tile(p_s3, m_bh, ACC)
    b_y = load_tile(p_s4, m_bh, ACC)
    if GATE != 0:
        p_i = load_tile(p_s5, m_bh, ACC)
        p_f = load_tile(p_s5 + H, m_bh, ACC)
        p_o = load_tile(p_s5 + 3 * H, m_bh, ACC)
    else:
        p_i = b_i
        p_f = b_f
        p_o = b_o
    b_da_o = keep_valid(b_dh * b_y * gate_grad(b_o, p_o, GATE), b_valid, HAS_LENGTHS)
    b_dlc = keep_valid(b_dh * b_o * act_grad(b_y, RELU), b_valid, HAS_LENGTHS)
    store_tile(p_g1, b_dlc, m_bh)
    # through LN(c'): its gain, then the normalization over the row's H
    b_dx = b_dlc * load_row(p_w3, 0, H, o_h, ACC)
    b_dcn = b_dc + ln_grad(b_dx, b_ch, row_sum(b_dx) / H, row_sum(b_dx * b_ch) / H,
                           load_column(p_s2 + 1, m_bh, o_h, ACC), m_row)
    b_da_i = keep_valid(b_dcn * b_g * gate_grad(b_i, p_i, GATE), b_valid, HAS_LENGTHS)
    b_da_f = keep_valid(b_dcn * b_cp * gate_grad(b_f, p_f, GATE), b_valid, HAS_LENGTHS)
    b_da_g = keep_valid(b_dcn * b_i * act_grad(b_g, RELU), b_valid, HAS_LENGTHS)
    store_tile(p_dgx, b_da_i, m_bh)
    store_tile(p_dgx + H, b_da_f, m_bh)
    store_tile(p_dgx + 2 * H, b_da_g, m_bh)
    store_tile(p_dgx + 3 * H, b_da_o, m_bh)
    # the product's gradient: through g_hh, then LN over the row's 4H
    b_d0 = b_da_i * load_row(p_w2, 0, H, o_h, ACC)
    b_d1 = b_da_f * load_row(p_w2, 1, H, o_h, ACC)
    b_d2 = b_da_g * load_row(p_w2, 2, H, o_h, ACC)
    b_d3 = b_da_o * load_row(p_w2, 3, H, o_h, ACC)
    b_x0 = load_tile(p_s1, m_bh, ACC)
    b_x1 = load_tile(p_s1 + H, m_bh, ACC)
    b_x2 = load_tile(p_s1 + 2 * H, m_bh, ACC)
    b_x3 = load_tile(p_s1 + 3 * H, m_bh, ACC)
    mean_d = (row_sum(b_d0) + row_sum(b_d1) + row_sum(b_d2) + row_sum(b_d3)) / (4 * H)
    mean_dx = (row_sum(b_d0 * b_x0) + row_sum(b_d1 * b_x1) + row_sum(b_d2 * b_x2) + row_sum(b_d3 * b_x3)) / (4 * H)
    rstd_h = load_column(p_s2, m_bh, o_h, ACC)
    b_dp0 = ln_grad(b_d0, b_x0, mean_d, mean_dx, rstd_h, m_row)
    b_dp1 = ln_grad(b_d1, b_x1, mean_d, mean_dx, rstd_h, m_row)
    b_dp2 = ln_grad(b_d2, b_x2, mean_d, mean_dx, rstd_h, m_row)
    b_dp3 = ln_grad(b_d3, b_x3, mean_d, mean_dx, rstd_h, m_row)
    store_tile(p_g0, b_dp0, m_bh)
    store_tile(p_g0 + H, b_dp1, m_bh)
    store_tile(p_g0 + 2 * H, b_dp2, m_bh)
    store_tile(p_g0 + 3 * H, b_dp3, m_bh)
    b_dhin = dot(b_dp0, b_w0) + dot(b_dp1, b_w1) + dot(b_dp2, b_w2) + dot(b_dp3, b_w3)
    return b_dhin, b_dh * 0.0, b_dcn * b_f
