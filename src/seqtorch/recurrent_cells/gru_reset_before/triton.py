"""The reset-before GRU (reset_after=False): pointwise code for the Triton kernels
(:mod:`seqtorch.ops.triton`; the arguments are the interface of :mod:`~seqtorch.recurrent_cells.triton_math`).
Its second product ``(r * h~) W_hn^T`` follows the first inside the step; u = r * h~ is saved for the weight
gradient (``p_u``). Saved A = r, z, n and PRE (hard sigmoids) as this folder's ``__init__.py``."""

from __future__ import annotations

import triton.language as tl

from ..triton_math import act, act_grad, dot, gate, gate_grad, keep_valid, load_tile, slots, store_tile
from . import CELL

A, PRE = slots(CELL.saved_names(), "A", "PRE")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    a_r = load_tile(p_gx, m_bh, ACC) + dot(b_hin, w[0]) + b[0]
    a_z = load_tile(p_gx + H, m_bh, ACC) + dot(b_hin, w[1]) + b[1]
    b_r = gate(a_r, GATE)
    b_z = gate(a_z, GATE)
    b_u = b_r * b_hin
    b_n = act(load_tile(p_gx + 2 * H, m_bh, ACC) + dot(b_u, w[2]) + b[2], RELU)
    if SAVE:
        store_tile(p_u, keep_valid(b_u, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A], keep_valid(b_r, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + H, keep_valid(b_z, b_valid, HAS_VALID), m_bh)
        store_tile(saved[A] + 2 * H, keep_valid(b_n, b_valid, HAS_VALID), m_bh)
        if GATE != 0:
            store_tile(saved[PRE], keep_valid(a_r, b_valid, HAS_VALID), m_bh)
            store_tile(saved[PRE] + H, keep_valid(a_z, b_valid, HAS_VALID), m_bh)
    return b_n + b_z * (b_h - b_n), b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    b_r = load_tile(saved[A], m_bh, ACC)
    b_z = load_tile(saved[A] + H, m_bh, ACC)
    b_n = load_tile(saved[A] + 2 * H, m_bh, ACC)
    if GATE != 0:
        p_r = load_tile(saved[PRE], m_bh, ACC)
        p_z = load_tile(saved[PRE] + H, m_bh, ACC)
    else:
        p_r = b_r
        p_z = b_z
    b_dn = keep_valid(b_dh * (1.0 - b_z) * act_grad(b_n, RELU), b_valid, HAS_VALID)
    b_dz = keep_valid(b_dh * (b_hp - b_n) * gate_grad(b_z, p_z, GATE), b_valid, HAS_VALID)
    b_du = dot(b_dn, w[2])                          # gradient of u = r * h~
    b_dr = b_du * b_hin * gate_grad(b_r, p_r, GATE)
    store_tile(p_dgx, b_dr, m_bh)
    store_tile(p_dgx + H, b_dz, m_bh)
    store_tile(p_dgx + 2 * H, b_dn, m_bh)
    return dot(b_dr, w[0]) + dot(b_dz, w[1]) + b_du * b_r, b_dh * b_z, b_dc
