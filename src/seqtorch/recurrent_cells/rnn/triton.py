"""SimpleRNN's pointwise code for the Triton kernels (:mod:`seqtorch.ops.triton`; the arguments are the
interface of :mod:`~seqtorch.recurrent_cells.triton_math`). Saved Y = h', the activation's output its
derivative reads."""

from __future__ import annotations

import triton.language as tl

from ..triton_math import act, act_grad, dot, keep_valid, load_tile, slots, store_tile
from . import CELL

(Y,) = slots(CELL.saved_names(), "Y")


def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,
            GATE: tl.constexpr):
    b_y = act(load_tile(p_gx, m_bh, ACC) + dot(b_hin, w[0]) + b[0], RELU)
    if SAVE:
        store_tile(saved[Y], keep_valid(b_y, b_valid, HAS_VALID), m_bh)
    return b_y, b_c


def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, o_h, m_bh,
             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):
    b_da = keep_valid(b_dh * act_grad(load_tile(saved[Y], m_bh, ACC), RELU), b_valid, HAS_VALID)
    store_tile(p_dgx, b_da, m_bh)
    return dot(b_da, w[0]), b_dh * 0.0, b_dc
