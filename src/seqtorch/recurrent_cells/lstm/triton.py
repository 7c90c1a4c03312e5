"""The LSTM's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the arguments are the
interface of :mod:`~seqtorch.recurrent_cells.triton_math`): one step of one block of batch rows, on register
tiles. Equations and saved layout as this folder's ``__init__.py``: A = i, f, g, o at columns 0, H, 2H, 3H;
TC = act(c'); PRE = the pre-activations (hard sigmoids only). ``w[k]`` and ``b[k]`` are gate k's tile of
W_hh and row of b_hh.
"""

from __future__ import annotations

import triton.language as tl

from ..triton_math import act, act_grad, dot, gate, gate_grad, keep_valid, load_tile, slots, store_tile
from . import CELL

A, TC, PRE = slots(CELL.saved_names(), "A", "TC", "PRE")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    a_i = load_tile(p_gx, m_bh, ACC) + dot(b_hin, w[0]) + b[0]
    a_f = load_tile(p_gx + H, m_bh, ACC) + dot(b_hin, w[1]) + b[1]
    a_g = load_tile(p_gx + 2 * H, m_bh, ACC) + dot(b_hin, w[2]) + b[2]
    a_o = load_tile(p_gx + 3 * H, m_bh, ACC) + dot(b_hin, w[3]) + b[3]
    if SAVE:
        if GATE != 0:
            store_tile(saved[PRE], keep_valid(a_i, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + H, keep_valid(a_f, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + 2 * H, keep_valid(a_g, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + 3 * H, keep_valid(a_o, b_valid, HAS_VALID), m_bh)
    b_i = gate(a_i, GATE)
    b_f = gate(a_f, GATE)
    b_g = act(a_g, RELU)
    b_o = gate(a_o, GATE)
    b_c_new = b_f * b_c + b_i * b_g
    b_y = act(b_c_new, RELU)
    if SAVE:
        store_tile(saved[A], keep_valid(b_i, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + H, keep_valid(b_f, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + 2 * H, keep_valid(b_g, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + 3 * H, keep_valid(b_o, b_valid, HAS_VALID), m_bh)
        store_tile(saved[TC], keep_valid(b_y, b_valid, HAS_VALID), m_bh)
    return b_o * b_y, b_c_new


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    """Returns (d h_in through the product, d h direct, d c of the state read); stores dgx."""
    b_i = load_tile(saved[A], m_bh, ACC)
    b_f = load_tile(saved[A] + H, m_bh, ACC)
    b_g = load_tile(saved[A] + 2 * H, m_bh, ACC)
    b_o = load_tile(saved[A] + 3 * H, m_bh, ACC)
    b_y = load_tile(saved[TC], m_bh, ACC)
    if GATE != 0:
        p_i = load_tile(saved[PRE], m_bh, ACC)
        p_f = load_tile(saved[PRE] + H, m_bh, ACC)
        p_o = load_tile(saved[PRE] + 3 * H, m_bh, ACC)
    else:
        p_i = b_i
        p_f = b_f
        p_o = b_o
    b_dcn = b_dc + b_dh * b_o * act_grad(b_y, RELU)
    b_da_i = keep_valid(b_dcn * b_g * gate_grad(b_i, p_i, GATE), b_valid, HAS_VALID)
    b_da_f = keep_valid(b_dcn * b_cp * gate_grad(b_f, p_f, GATE), b_valid, HAS_VALID)
    b_da_g = keep_valid(b_dcn * b_i * act_grad(b_g, RELU), b_valid, HAS_VALID)
    b_da_o = keep_valid(b_dh * b_y * gate_grad(b_o, p_o, GATE), b_valid, HAS_VALID)
    store_tile(p_dgx, b_da_i, m_bh)
    store_tile(p_dgx + H, b_da_f, m_bh)
    store_tile(p_dgx + 2 * H, b_da_g, m_bh)
    store_tile(p_dgx + 3 * H, b_da_o, m_bh)
    b_dhin = dot(b_da_i, w[0]) + dot(b_da_f, w[1]) + dot(b_da_g, w[2]) + dot(b_da_o, w[3])
    return b_dhin, b_dh * 0.0, b_dcn * b_f
