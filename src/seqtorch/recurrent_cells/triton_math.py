"""The Triton cell interface: how a cell's ``triton.py`` is called, its named slots, the device helpers.

A cell's ``triton.py`` holds two plain functions, ``forward`` and ``backward``: one step of one block of
batch rows on register tiles (a cell written as its equations gets such a module generated from them:
:mod:`.pointwise.triton_code`). The kernels of :mod:`seqtorch.ops.triton` (the persistent ones and the
alternating loop's per-step ones) own everything else and call them with these arguments (shapes of the
tiles: (BLOCK_B, BLOCK_H), BLOCK_H >= H; rows (1, BLOCK_H); row pointers address the step's rows of a
buffer, gate k of a G*H-wide one at ``+ k * H``)::

    forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,
            ACC, SAVE, HAS_VALID, RELU, GATE) -> (h', c')
    backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args,
             H, P, o_h, m_bh, b_valid, ACC, HAS_VALID, RELU, GATE) -> (d h~, d h, d c)

* states: ``b_hin`` = h * rec_mask (the product's input), ``b_h``, ``b_c`` the states the step reads
  (the reset states on a row that restarts at this step; h masked to its P columns; ``b_c`` a placeholder
  for a cell with one state, which returns it as its c'); in the backward ``b_dh``, ``b_dc`` the gradients
  of the states the step wrote, ``b_hp``, ``b_cp`` the states it read and ``b_hnext`` the h it wrote. The
  backward returns the gradient of h~ (through the product), of h directly, and of c.
* ``p_gx`` / ``p_dgx``: gx's / dgx's row pointer (G*H wide); ``p_u``: the row of U (the vector a first
  stage hands to a second product).
* grouped arguments (tuples), read by constant index: ``w``, the 4 gate tiles of W_hh (transposed in the
  forward; on the alternating loop, the product's tiles; a (1, BLOCK_H) row in each place for a weight
  vector, ``W_VECTOR``); ``b``, b_hh's 4 gate rows (zero without a bias); and, named by the cell's spec
  through :func:`slots`, ``saved``: the row pointers of its saved buffers (:meth:`Cell.saved
  <seqtorch.recurrent_cells.base.Cell.saved>`), ``grads``: those of its gradient buffers
  (:meth:`~seqtorch.recurrent_cells.base.Cell.grad_buffers`), ``extra``: the pointers of its further
  recurrent weights (:func:`extra_weights`), which it loads itself. ``p_args`` points at its numeric
  options (:attr:`~seqtorch.recurrent_cells.base.Cell.cell_args`, in the math dtype), named the same way:
  ``tl.load(p_args + EPS)``.
* ``H``, ``P`` the hidden and h sizes, ``o_h`` the block's column offsets, ``m_bh`` its mask, ``b_valid``
  (BLOCK_B, 1) whether each row's step is valid (inside its length and not masked; ``HAS_VALID``: given,
  else None and every row is), where the cell zeroes what it writes (:func:`keep_valid`); ``ACC`` the math
  dtype, ``SAVE`` whether to write the saved buffers, ``RELU`` and ``GATE`` the activations.

So a cell names each slot once: ``A, TC, PRE = slots(CELL.saved_names(), "A", "TC", "PRE")`` at the top of
its ``triton.py``, then ``saved[A]``; the index is a ``tl.constexpr`` (the only kind of global a compiled
kernel may read), and a name its spec does not have raises on import.

The device helpers below are plain functions, decorated by ``triton.jit`` only when the kernels are first
launched (:mod:`seqtorch.ops.triton.common` says why), so importing this module needs no GPU and compiles
nothing. Only ``triton.language``'s builtins are used (``tl.full``, not ``tl.zeros``): the functions of
``triton.language.standard`` are themselves jit functions, decorated when triton is imported, and the
interpreter cannot call them when it is switched on later (as the tests do); so the math a generated
cell writes (:func:`sigmoid`, :func:`tanh`, :func:`log1p`, :func:`expm1`, :func:`sign`) is here too, without
libdevice. Names: ``b_`` register blocks, ``p_`` pointers, ``o_`` offsets, ``m_`` masks.

``GATE`` numbers the gates' function as the C++ loop does: 0 sigmoid, 1 Keras 2's hard sigmoid
``clip(0.2 x + 0.5, 0, 1)``, 2 torch's hardsigmoid ``clamp(x + 3, 0, 6) / 6``. The derivatives are the
reference's autograd formulas; the hard sigmoids read the saved pre-activation.
"""

from __future__ import annotations

from collections.abc import Sequence

import triton.language as tl

from .base import Cell

GATE_IDS = {"sigmoid": 0, "hard_sigmoid_keras2": 1, "hardsigmoid": 2}
# torch's float32 1/6, in every dtype (see activations.py); a tl.constexpr, the only kind of global a
# compiled kernel may read (the interpreter reads any, so only a compile for the GPU shows the difference)
HARDSIGMOID_SLOPE = tl.constexpr(0.1666666716337204)


def slots(names: Sequence[str], *wanted: str) -> tuple[tl.constexpr, ...]:
    """Where each name of ``wanted`` sits in ``names`` (a cell's saved-buffer, gradient-buffer, extra-weight
    or numeric-option names, in the order its spec declares them and the kernels hand them over), as
    ``tl.constexpr`` indices: ``A, TC = slots(CELL.saved_names(), "A", "TC")``, then ``saved[A]``. A name
    that is not in ``names`` raises a ValueError (a typo fails on import, not as a wrong buffer)."""
    names = list(names)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ValueError(f"no slot named {', '.join(map(repr, unknown))}; the spec names {names}")
    return tuple(tl.constexpr(names.index(name)) for name in wanted)


def extra_weights(cell: Cell) -> tuple[str, ...]:
    """The names of the recurrent weights a cell's Triton code finds in ``extra``, in that order: those of
    :attr:`~seqtorch.recurrent_cells.base.Cell.weights` after ``weight_hh`` and ``bias_hh``, which the
    kernels load themselves (into ``w`` and ``b``)."""
    return tuple(cell.weights[2:])


def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


def tanh(x):
    """tanh as 1 - 2 / (exp(2x) + 1): exact at both tails, and only ``tl.exp`` (no libdevice)."""
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


def log1p(x):
    """log(1 + x), accurate for small x: log(u) * x / (u - 1) with u = 1 + x (Goldberg), x where u rounds
    to 1 and where x is +inf."""
    u = 1.0 + x
    return tl.where((u == 1.0) | (x == float("inf")), x, tl.log(u) * (x / (u - 1.0)))


def expm1(x):
    """exp(x) - 1, accurate for small x: (u - 1) * x / log(u) with u = exp(x) (Kahan), x where u rounds to
    1, -1 where u - 1 does, u where it overflows."""
    u = tl.exp(x)
    b_y = tl.where(u == float("inf"), u, (u - 1.0) * (x / tl.log(u)))
    return tl.where(u == 1.0, x, tl.where(u - 1.0 == -1.0, -1.0, b_y))


def sign(x):
    """torch.sign: 1, -1, and x itself at 0 and NaN."""
    return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, x))


def in_block(x, m_bh, ACC: tl.constexpr):
    """``x`` (a tile, a (1, BLOCK_H) row or a number) as a (BLOCK_B, BLOCK_H) tile in the math dtype, 0
    outside the block's rows and columns ``m_bh``. What a cell generated from equations returns and feeds
    to a product: its math need not keep the padding's zeros (sigmoid(0) = 0.5, log(0) = -inf), and a
    padding that is not finite would spread through a ``dot`` into every column."""
    return tl.where(m_bh, x, 0.0).to(ACC)


def act(x, RELU: tl.constexpr):
    """The cell's main activation: relu, or :func:`tanh`."""
    if RELU:
        return tl.maximum(x, 0.0)
    else:
        return tanh(x)


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
        return sigmoid(x)


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


def keep_valid(x, b_valid, HAS_VALID: tl.constexpr):
    """``x`` on rows whose step is valid, 0 elsewhere (what a saved or gradient row of a skipped step holds).
    Without validity (no lengths, no mask) no select is emitted: Triton 3.9's LLVM (SLP vectorizer) aborted on
    such a no-op select in the LSTM backward for sm_90, and a no-op is cheaper anyway."""
    if HAS_VALID:
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


HELPERS = (sigmoid, tanh, log1p, expm1, sign, in_block, act, act_grad, gate, gate_grad, keep_valid, load_tile,
           store_tile, dot, _add, row_sum, load_row, store_column, load_column, ln_center, ln_grad)
