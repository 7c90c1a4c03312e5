"""The LayerNorm GRU's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the arguments are
the interface of :mod:`~seqtorch.recurrent_cells.triton_math`). Equations and layout as this folder's
``__init__.py``: extra weight ln_hh_weight = g_hh (3H); saved RZ (2H), N (H), GHN (H), XH (3H), RS (rstd at
column 0), PRE (2H, hard sigmoids); gradient buffers dP0 (3H) and DGH (3H); numeric option eps.

A program owns whole batch rows (all 3H columns, in three gate tiles), so LN's row statistics are sums over
the three tiles; padded columns are masked out of them.
"""

from __future__ import annotations

import triton.language as tl

from ..triton_math import (act, act_grad, dot, extra_weights, gate, gate_grad, keep_valid, ln_center, ln_grad,
                           load_column, load_row, load_tile, row_sum, slots, store_column, store_tile)
from . import CELL

RZ, N, GHN, XH, RS, PRE = slots(CELL.saved_names(), "RZ", "N", "GHN", "XH", "RS", "PRE")
DP0, DGH = slots(CELL.grad_buffer_names(), "dP0", "DGH")
(LN_HH_WEIGHT,) = slots(extra_weights(CELL), "ln_hh_weight")
(EPS,) = slots(CELL.cell_args, "eps")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    eps = tl.load(p_args + EPS).to(ACC)
    m_row = (o_h < H)[None, :]
    # gh = LN(h~ W_hh^T) g_hh + b_hh, LN over the row's 3H product
    b_p0 = dot(b_hin, w[0])
    b_p1 = dot(b_hin, w[1])
    b_p2 = dot(b_hin, w[2])
    mean = (row_sum(b_p0) + row_sum(b_p1) + row_sum(b_p2)) / (3 * H)
    b_p0 = ln_center(b_p0, mean, m_row)
    b_p1 = ln_center(b_p1, mean, m_row)
    b_p2 = ln_center(b_p2, mean, m_row)
    rstd = 1.0 / tl.sqrt((row_sum(b_p0 * b_p0) + row_sum(b_p1 * b_p1) + row_sum(b_p2 * b_p2)) / (3 * H) + eps)
    b_x0 = b_p0 * rstd
    b_x1 = b_p1 * rstd
    b_x2 = b_p2 * rstd
    a_r = load_tile(p_gx, m_bh, ACC) + (b_x0 * load_row(extra[LN_HH_WEIGHT], 0, H, o_h, ACC) + b[0])
    a_z = load_tile(p_gx + H, m_bh, ACC) + (b_x1 * load_row(extra[LN_HH_WEIGHT], 1, H, o_h, ACC) + b[1])
    b_ghn = b_x2 * load_row(extra[LN_HH_WEIGHT], 2, H, o_h, ACC) + b[2]
    b_r = gate(a_r, GATE)
    b_z = gate(a_z, GATE)
    b_n = act(load_tile(p_gx + 2 * H, m_bh, ACC) + b_r * b_ghn, RELU)
    if SAVE:
        store_tile(saved[RZ], keep_valid(b_r, b_valid, HAS_VALID), m_bh)
        store_tile(saved[RZ] + H, keep_valid(b_z, b_valid, HAS_VALID), m_bh)
        store_tile(saved[N], keep_valid(b_n, b_valid, HAS_VALID), m_bh)
        store_tile(saved[GHN], keep_valid(b_ghn, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH], keep_valid(b_x0, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH] + H, keep_valid(b_x1, b_valid, HAS_VALID), m_bh)
        store_tile(saved[XH] + 2 * H, keep_valid(b_x2, b_valid, HAS_VALID), m_bh)
        store_column(saved[RS], keep_valid(rstd, b_valid, HAS_VALID), m_bh, o_h)
        if GATE != 0:
            store_tile(saved[PRE], keep_valid(a_r, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + H, keep_valid(a_z, b_valid, HAS_VALID), m_bh)
    return b_n + b_z * (b_h - b_n), b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Returns (d h_in through the product, d h direct, d c (none)); stores dgx, dP0, DGH."""
    m_row = (o_h < H)[None, :]
    b_r = load_tile(saved[RZ], m_bh, ACC)
    b_z = load_tile(saved[RZ] + H, m_bh, ACC)
    b_n = load_tile(saved[N], m_bh, ACC)
    b_ghn = load_tile(saved[GHN], m_bh, ACC)
    if GATE != 0:
        p_r = load_tile(saved[PRE], m_bh, ACC)
        p_z = load_tile(saved[PRE] + H, m_bh, ACC)
    else:
        p_r = b_r
        p_z = b_z
    b_dn = keep_valid(b_dh * (1.0 - b_z) * act_grad(b_n, RELU), b_valid, HAS_VALID)
    b_dz = keep_valid(b_dh * (b_hp - b_n) * gate_grad(b_z, p_z, GATE), b_valid, HAS_VALID)
    b_dr = b_dn * b_ghn * gate_grad(b_r, p_r, GATE)
    b_dghn = b_dn * b_r
    store_tile(p_dgx, b_dr, m_bh)
    store_tile(p_dgx + H, b_dz, m_bh)
    store_tile(p_dgx + 2 * H, b_dn, m_bh)
    store_tile(grads[DGH], b_dr, m_bh)
    store_tile(grads[DGH] + H, b_dz, m_bh)
    store_tile(grads[DGH] + 2 * H, b_dghn, m_bh)
    # the product's gradient: through g_hh, then LN over the row's 3H
    b_d0 = b_dr * load_row(extra[LN_HH_WEIGHT], 0, H, o_h, ACC)
    b_d1 = b_dz * load_row(extra[LN_HH_WEIGHT], 1, H, o_h, ACC)
    b_d2 = b_dghn * load_row(extra[LN_HH_WEIGHT], 2, H, o_h, ACC)
    b_x0 = load_tile(saved[XH], m_bh, ACC)
    b_x1 = load_tile(saved[XH] + H, m_bh, ACC)
    b_x2 = load_tile(saved[XH] + 2 * H, m_bh, ACC)
    mean_d = (row_sum(b_d0) + row_sum(b_d1) + row_sum(b_d2)) / (3 * H)
    mean_dx = (row_sum(b_d0 * b_x0) + row_sum(b_d1 * b_x1) + row_sum(b_d2 * b_x2)) / (3 * H)
    rstd = load_column(saved[RS], m_bh, o_h, ACC)
    b_dp0 = ln_grad(b_d0, b_x0, mean_d, mean_dx, rstd, m_row)
    b_dp1 = ln_grad(b_d1, b_x1, mean_d, mean_dx, rstd, m_row)
    b_dp2 = ln_grad(b_d2, b_x2, mean_d, mean_dx, rstd, m_row)
    store_tile(grads[DP0], b_dp0, m_bh)
    store_tile(grads[DP0] + H, b_dp1, m_bh)
    store_tile(grads[DP0] + 2 * H, b_dp2, m_bh)
    return dot(b_dp0, w[0]) + dot(b_dp1, w[1]) + dot(b_dp2, w[2]), b_dh * b_z, b_dc
