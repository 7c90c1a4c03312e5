"""Device helpers every cell's Triton code uses: activations and their derivatives, tile loads, the dot.

Plain functions, decorated by ``triton.jit`` only when the kernels are first launched
(:mod:`seqtorch.ops.triton.common` says why), so importing this module needs no GPU and compiles
nothing. Only ``triton.language``'s builtins are used (``tl.full``, not ``tl.zeros``): the functions of
``triton.language.standard`` are themselves jit functions, decorated when triton is imported, and the
interpreter cannot call them when it is switched on later (as the tests do). Names: ``b_`` register blocks, ``p_`` pointers, ``o_`` offsets, ``m_`` masks.

``GATE`` numbers the gates' function as the C++ loop does: 0 sigmoid, 1 Keras 2's hard sigmoid
``clip(0.2 x + 0.5, 0, 1)``, 2 torch's hardsigmoid ``clamp(x + 3, 0, 6) / 6``. The derivatives are the
reference's autograd formulas; the hard sigmoids read the saved pre-activation.
"""

from __future__ import annotations

import triton.language as tl

GATE_IDS = {"sigmoid": 0, "hard_sigmoid_keras2": 1, "hardsigmoid": 2}
# torch's float32 1/6, in every dtype (see activations.py); a tl.constexpr, the only kind of global a
# compiled kernel may read (the interpreter reads any, so only a compile for the GPU shows the difference)
HARDSIGMOID_SLOPE = tl.constexpr(0.1666666716337204)


def act(x, RELU: tl.constexpr):
    """The cell's main activation: relu, or tanh as 1 - 2 / (exp(2x) + 1) (exact at both tails)."""
    if RELU:
        return tl.maximum(x, 0.0)
    else:
        return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


def act_grad(y, RELU: tl.constexpr):
    """d act / dx from y = act(x) (torch's relu passes the gradient where y > 0)."""
    if RELU:
        return tl.where(y > 0.0, 1.0, 0.0).to(y.dtype)
    else:
        return 1.0 - y * y


def gate(x, GATE: tl.constexpr):
    if GATE == 1:
        return tl.minimum(tl.maximum(0.2 * x + 0.5, 0.0), 1.0)
    elif GATE == 2:
        return tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    else:
        return 1.0 / (1.0 + tl.exp(-x))


def gate_grad(y, pre, GATE: tl.constexpr):
    """d gate / dx: from y for the sigmoid, from the pre-activation for the hard sigmoids (0/1 blocks of
    the math dtype times the slope, so float64 gets float64 constants)."""
    if GATE == 1:
        z = 0.2 * pre + 0.5
        return 0.2 * tl.where((z >= 0.0) & (z <= 1.0), 1.0, 0.0).to(y.dtype)
    elif GATE == 2:
        return HARDSIGMOID_SLOPE * tl.where((pre > -3.0) & (pre < 3.0), 1.0, 0.0).to(y.dtype)
    else:
        return y * (1.0 - y)


def keep_valid(x, b_valid, HAS_LENGTHS: tl.constexpr):
    """``x`` on rows whose step is inside the sequence, 0 elsewhere (what a saved or gradient row of an ended
    sequence holds). Without lengths no select is emitted: Triton 3.9's LLVM (SLP vectorizer) aborted on
    such a no-op select in the LSTM backward for sm_90, and a no-op is cheaper anyway."""
    if HAS_LENGTHS:
        return tl.where(b_valid, x, 0.0)
    else:
        return x


def load_tile(p, m, ACC: tl.constexpr):
    """A (BLOCK_B, BLOCK_H) tile in the math dtype, 0 outside the mask."""
    return tl.load(p, mask=m, other=0.0).to(ACC)


def store_tile(p, x, m):
    tl.store(p, x.to(p.dtype.element_ty), mask=m)


def dot(a, b):
    """Full-precision products (no TF32): the parity tests compare against float32/float64 torch."""
    return tl.dot(a, b, input_precision="ieee")


def _add(a, b):
    return a + b


def row_sum(x):
    """The sum of each row of a (BLOCK_B, BLOCK_H) tile, as a (BLOCK_B, 1) column. ``tl.reduce`` with a
    combine function of our own: ``tl.sum`` is one of ``triton.language.standard``'s jit functions (see
    above), which the interpreter cannot call when it was switched on after triton's import."""
    return tl.reduce(x, 1, _add, keep_dims=True)


def load_row(p, k, H, o_h, ACC: tl.constexpr):
    """Block k (columns k*H .. k*H + H) of a weight vector at ``p`` as a (1, BLOCK_H) row, 0 past H."""
    return tl.load(p + k * H + o_h, mask=o_h < H, other=0.0).to(ACC)[None, :]


def store_column(p, x, m_bh, o_h):
    """A per-row value x (BLOCK_B, 1) into the first column of the rows of tile pointer ``p``."""
    tl.store(p, x.to(p.dtype.element_ty), mask=m_bh & (o_h == 0)[None, :])


def load_column(p, m_bh, o_h, ACC: tl.constexpr):
    """The first column of the rows of tile pointer ``p``, repeated across the tile (reads every column
    from the row's first, so no reduction is needed to get it back)."""
    return tl.load(p - o_h[None, :], mask=m_bh, other=0.0).to(ACC)


def ln_center(x, mean, m_row):
    """x - mean on the row's real columns, 0 on the padding (so the variance's sum does not see it)."""
    return tl.where(m_row, x - mean, 0.0)


def ln_grad(d, xhat, mean_d, mean_dx, rstd, m_row):
    """One tile of LayerNorm's backward (seqtorch/recurrent_cells/layernorm.py's formula), from the row
    means of dxhat and of dxhat * xhat over all of the row's tiles: rstd * (d - mean_d - xhat * mean_dx)."""
    return tl.where(m_row, rstd * (d - mean_d - xhat * mean_dx), 0.0)


HELPERS = (act, act_grad, gate, gate_grad, keep_valid, load_tile, store_tile, dot, _add, row_sum, load_row,
           store_column, load_column, ln_center, ln_grad)
