"""The LayerNorm LSTM's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the arguments are
the interface of :mod:`~seqtorch.recurrent_cells.triton_math`). Equations and layout as this folder's
``__init__.py``: extra weights ln_hh_weight = g_hh (4H), ln_cell_weight = g_c (H), ln_cell_bias = b_c (H);
saved A (4H), XH (4H), RS (rstd of the product at column 0, of c' at 1), CH (H), Y (H), PRE (4H, hard
sigmoids); gradient buffers dP0 (4H) and DLC (H); numeric option eps.

A program owns whole batch rows (all 4H columns, in four gate tiles), so LN's row statistics are sums over
the four tiles; padded columns are masked out of them.
"""

from __future__ import annotations

import triton.language as tl

from ..triton_math import (act, act_grad, dot, extra_weights, gate, gate_grad, keep_valid, ln_center, ln_grad,
                           load_column, load_row, load_tile, row_sum, slots, store_column, store_tile)
from . import CELL

A, XH, RS, CH, Y, PRE = slots(CELL.saved_names(), "A", "XH", "RS", "CH", "Y", "PRE")
DP0, DLC = slots(CELL.grad_buffer_names(), "dP0", "DLC")
LN_HH_WEIGHT, LN_CELL_WEIGHT, LN_CELL_BIAS = slots(extra_weights(CELL),
                                                   "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")
(EPS,) = slots(CELL.cell_args, "eps")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    eps = tl.load(p_args + EPS).to(ACC)
    m_row = (o_h < H)[None, :]
    # LN(h~ W_hh^T) over the row's 4H product
    b_p0 = dot(b_hin, w[0])
    b_p1 = dot(b_hin, w[1])
    b_p2 = dot(b_hin, w[2])
    b_p3 = dot(b_hin, w[3])
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
    a_i = load_tile(p_gx, m_bh, ACC) + b_x0 * load_row(extra[LN_HH_WEIGHT], 0, H, o_h, ACC) + b[0]
    a_f = load_tile(p_gx + H, m_bh, ACC) + b_x1 * load_row(extra[LN_HH_WEIGHT], 1, H, o_h, ACC) + b[1]
    a_g = load_tile(p_gx + 2 * H, m_bh, ACC) + b_x2 * load_row(extra[LN_HH_WEIGHT], 2, H, o_h, ACC) + b[2]
    a_o = load_tile(p_gx + 3 * H, m_bh, ACC) + b_x3 * load_row(extra[LN_HH_WEIGHT], 3, H, o_h, ACC) + b[3]
    b_i = gate(a_i, GATE)
    b_f = gate(a_f, GATE)
    b_g = act(a_g, RELU)
    b_o = gate(a_o, GATE)
    b_c_new = b_f * b_c + b_i * b_g
    # h' = sig(o) * act(LN(c') g_c + b_c), LN over the row's H
    b_cc = ln_center(b_c_new, row_sum(tl.where(m_row, b_c_new, 0.0)) / H, m_row)
    rstd_c = 1.0 / tl.sqrt(row_sum(b_cc * b_cc) / H + eps)
    b_ch = b_cc * rstd_c
    b_y = act(load_row(extra[LN_CELL_BIAS], 0, H, o_h, ACC) + b_ch * load_row(extra[LN_CELL_WEIGHT], 0, H, o_h, ACC),
              RELU)
    if SAVE:
        store_tile(saved[A], keep_valid(b_i, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + H, keep_valid(b_f, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + 2 * H, keep_valid(b_g, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + 3 * H, keep_valid(b_o, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH], keep_valid(b_x0, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH] + H, keep_valid(b_x1, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH] + 2 * H, keep_valid(b_x2, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH] + 3 * H, keep_valid(b_x3, b_valid, HAS_VALID), m_bh)
        store_column(saved[RS], keep_valid(rstd_h, b_valid, HAS_VALID), m_bh, o_h)
        store_column(saved[RS] + 1, keep_valid(rstd_c, b_valid, HAS_VALID), m_bh, o_h)
        store_tile(saved[CH], keep_valid(b_ch, b_valid, HAS_VALID), m_bh)
        store_tile(saved[Y], keep_valid(b_y, b_valid, HAS_VALID), m_bh)
        if GATE != 0:
            store_tile(saved[PRE], keep_valid(a_i, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + H, keep_valid(a_f, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + 2 * H, keep_valid(a_g, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + 3 * H, keep_valid(a_o, b_valid, HAS_VALID), m_bh)
    return b_o * b_y, b_c_new


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Returns (d h_in through the product, d h direct (none), d c of the state read); stores dgx, dP0, DLC."""
    m_row = (o_h < H)[None, :]
    b_i = load_tile(saved[A], m_bh, ACC)
    b_f = load_tile(saved[A] + H, m_bh, ACC)
    b_g = load_tile(saved[A] + 2 * H, m_bh, ACC)
    b_o = load_tile(saved[A] + 3 * H, m_bh, ACC)
    b_ch = load_tile(saved[CH], m_bh, ACC)
    b_y = load_tile(saved[Y], m_bh, ACC)
    if GATE != 0:
        p_i = load_tile(saved[PRE], m_bh, ACC)
        p_f = load_tile(saved[PRE] + H, m_bh, ACC)
        p_o = load_tile(saved[PRE] + 3 * H, m_bh, ACC)
    else:
        p_i = b_i
        p_f = b_f
        p_o = b_o
    b_da_o = keep_valid(b_dh * b_y * gate_grad(b_o, p_o, GATE), b_valid, HAS_VALID)
    b_dlc = keep_valid(b_dh * b_o * act_grad(b_y, RELU), b_valid, HAS_VALID)
    store_tile(grads[DLC], b_dlc, m_bh)
    # through LN(c'): its gain, then the normalization over the row's H
    b_dx = b_dlc * load_row(extra[LN_CELL_WEIGHT], 0, H, o_h, ACC)
    b_dcn = b_dc + ln_grad(b_dx, b_ch, row_sum(b_dx) / H, row_sum(b_dx * b_ch) / H,
                           load_column(saved[RS] + 1, m_bh, o_h, ACC), m_row)
    b_da_i = keep_valid(b_dcn * b_g * gate_grad(b_i, p_i, GATE), b_valid, HAS_VALID)
    b_da_f = keep_valid(b_dcn * b_cp * gate_grad(b_f, p_f, GATE), b_valid, HAS_VALID)
    b_da_g = keep_valid(b_dcn * b_i * act_grad(b_g, RELU), b_valid, HAS_VALID)
    store_tile(p_dgx, b_da_i, m_bh)
    store_tile(p_dgx + H, b_da_f, m_bh)
    store_tile(p_dgx + 2 * H, b_da_g, m_bh)
    store_tile(p_dgx + 3 * H, b_da_o, m_bh)
    # the product's gradient: through g_hh, then LN over the row's 4H
    b_d0 = b_da_i * load_row(extra[LN_HH_WEIGHT], 0, H, o_h, ACC)
    b_d1 = b_da_f * load_row(extra[LN_HH_WEIGHT], 1, H, o_h, ACC)
    b_d2 = b_da_g * load_row(extra[LN_HH_WEIGHT], 2, H, o_h, ACC)
    b_d3 = b_da_o * load_row(extra[LN_HH_WEIGHT], 3, H, o_h, ACC)
    b_x0 = load_tile(saved[XH], m_bh, ACC)
    b_x1 = load_tile(saved[XH] + H, m_bh, ACC)
    b_x2 = load_tile(saved[XH] + 2 * H, m_bh, ACC)
    b_x3 = load_tile(saved[XH] + 3 * H, m_bh, ACC)
    mean_d = (row_sum(b_d0) + row_sum(b_d1) + row_sum(b_d2) + row_sum(b_d3)) / (4 * H)
    mean_dx = (row_sum(b_d0 * b_x0) + row_sum(b_d1 * b_x1) + row_sum(b_d2 * b_x2) + row_sum(b_d3 * b_x3)) / (4 * H)
    rstd_h = load_column(saved[RS], m_bh, o_h, ACC)
    b_dp0 = ln_grad(b_d0, b_x0, mean_d, mean_dx, rstd_h, m_row)
    b_dp1 = ln_grad(b_d1, b_x1, mean_d, mean_dx, rstd_h, m_row)
    b_dp2 = ln_grad(b_d2, b_x2, mean_d, mean_dx, rstd_h, m_row)
    b_dp3 = ln_grad(b_d3, b_x3, mean_d, mean_dx, rstd_h, m_row)
    store_tile(grads[DP0], b_dp0, m_bh)
    store_tile(grads[DP0] + H, b_dp1, m_bh)
    store_tile(grads[DP0] + 2 * H, b_dp2, m_bh)
    store_tile(grads[DP0] + 3 * H, b_dp3, m_bh)
    b_dhin = dot(b_dp0, w[0]) + dot(b_dp1, w[1]) + dot(b_dp2, w[2]) + dot(b_dp3, w[3])
    return b_dhin, b_dh * 0.0, b_dcn * b_f
