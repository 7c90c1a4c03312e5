"""Triton kernels for the alternating scan: one launch per step for the gate math, the products in cuBLAS.

Haste's and FlashRNN's "alternating" design, for hidden sizes the persistent kernels of
:mod:`.persistent_kernels` cannot hold on chip (H > 128). The host loop (:mod:`.alternating`) runs,
per step, one GEMM for the recurrent product (``h~ @ W_hh^T`` forward, ``dP @ W_hh`` backward, cuBLAS via
``torch.mm``) and one launch of a kernel here for everything else: the cell's pointwise math, the state
update, which steps are valid (``lengths``, ``mask``), the resets, zoneout, the saved buffers. A program owns
a (BLOCK_B, BLOCK_H) block of one step's rows and columns, so large H spreads over many programs; a cell
whose step reduces over a whole row (LayerNorm, :attr:`~seqtorch.recurrent_cells.base.Cell.reduces_over_hidden`)
gets blocks of whole rows.

The cell's code is the same ``triton.py`` the persistent kernels call: there each ``dot(h~, W_k)``
multiplies the state by W_hh's gate tile k; here the kernels hand the cell the product's gate tiles
(computed by cuBLAS) in place of W's, and the cells are decorated with a ``dot`` that returns its second
argument (:func:`computed_product`). In the backward the cell's ``dot(dgate, W_k)`` terms so return zero
tiles; their sum, ``dP @ W_hh``, is the next GEMM, added at the start of the next launch (``FINISH``).
Cells that qualify (:func:`.alternating.supports_cell`): at most one product, read
from ``h~``, over all of W_hh's rows.

Validity and resets as the persistent kernels do them, per element by select (the product is one cuBLAS
GEMM over all rows, so a block of invalid rows has nothing to skip here): an invalid step keeps the state and
zeroes its saved and gradient rows; a restarting row reads the reset states, in the cell and (the launcher
writes HM before the GEMM) in the product. The backward completes a step's state gradient in the next
launch (``FINISH``: the product's part, then a restarting row's gradient moved to the reset states' sums,
then the upstream gradient of the slot it read), for every cell, so that the order is the reference's.

Names as :mod:`.persistent_kernels`: ``b_`` register blocks, ``p_``/``o_`` pointers and offsets, ``m_`` masks,
``i_`` program ids. Every row pointer points at one step's (B, width) rows (a view of a (T, B, width)
buffer); the (T, B) and (B,) per-step inputs (``lengths``, ``smask``, ``restart``) are whole, read at the step
``t`` the launcher passes.
"""

from __future__ import annotations

import types

import triton
import triton.language as tl

from ...recurrent_cells.triton_math import load_tile, store_tile
from .common import (decorate_cells, device_helpers, interpreting, jit_all, load_bias_rows, load_weight_vector,
                     step_restarts, step_valid)


def computed_product(a, b):
    """The ``dot`` the cells see in these kernels: ``b`` is already the product's tile (module docstring)."""
    return b


def _block(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's rows o_b and columns o_h of a step, their masks, and the offsets of a (B, H) tile."""
    o_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    return o_b, o_h, m_b, m_h, m_b[:, None] & m_h[None, :], o_b[:, None] * H + o_h[None, :]


def _tile(p, width, o_b, o_h):
    """Pointers to columns o_h of rows o_b of a (B, width) step row block."""
    return p + o_b[:, None] * width + o_h[None, :]


def _step_fwd_kernel(gx, Q, w, bias, W2, W3, W4, CARGS, lengths, smask, restart, t, RH, RC, ZH, ZC,  # inputs
                     h_in, h_prev, c_prev, h_next, c_next,                     # states, this step's rows
                     SV0, SV1, SV2, SV3, SV4, SV5,                             # saved buffers, this step's rows
                     B, H, SW0, SW1, SW2, SW3, SW4, SW5,
                     CELL_FWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr, ACC: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     HAS_LENGTHS: tl.constexpr, HAS_STEP_MASK: tl.constexpr, HAS_RESTART: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """Step t for a (BLOCK_B, BLOCK_H) block: h_next, c_next from gx (B, G*H), the product Q = h_in W_hh^T
    (B, G*H) (unused with W_VECTOR: W_hh is then the vector ``w``), the previous states, and, with SAVE, the
    cell's saved rows. ZH, ZC: this step's zoneout coefficients (B, H). An invalid step (HAS_LENGTHS:
    ``lengths[b] <= t``, lengths (B,); HAS_STEP_MASK: ``smask[t, b]`` 0, smask (T, B) uint8) keeps the previous
    state; with HAS_RESTART, a row with ``restart[t, b]`` (T, B) uint8 reads the reset states RH, RC (B, H)
    as its previous states (h_in, the HM rows, already holds them)."""
    o_b, o_h, m_b, m_h, m_bh, o_bh = _block(B, H, BLOCK_B, BLOCK_H)
    b_h = load_tile(h_prev + o_bh, m_bh, ACC)
    b_hin = load_tile(h_in + o_bh, m_bh, ACC)
    b_c = b_h
    if HAS_C:
        b_c = load_tile(c_prev + o_bh, m_bh, ACC)
    if HAS_RESTART:
        b_rst = step_restarts(restart, t, B, o_b, m_b)
        b_h = tl.where(b_rst, load_tile(RH + o_bh, m_bh, ACC), b_h)
        if HAS_C:
            b_c = tl.where(b_rst, load_tile(RC + o_bh, m_bh, ACC), b_c)
    if W_VECTOR:
        b_w = load_weight_vector(w, H, o_h, ACC)
    else:  # the product's gate tiles, where the persistent kernel hands over W_hh's
        p_q = Q + o_b[:, None] * (NUM_GATES * H) + o_h[None, :]
        b_w0 = load_tile(p_q, m_bh, ACC)
        b_w1 = b_w0
        b_w2 = b_w0
        b_w3 = b_w0
        if NUM_GATES > 1:
            b_w1 = load_tile(p_q + H, m_bh, ACC)
        if NUM_GATES > 2:
            b_w2 = load_tile(p_q + 2 * H, m_bh, ACC)
        if NUM_GATES > 3:
            b_w3 = load_tile(p_q + 3 * H, m_bh, ACC)
        b_w = (b_w0, b_w1, b_w2, b_w3)
    b_b = load_bias_rows(bias, H, o_h, m_h, NUM_GATES, HAS_BIAS, ACC, BLOCK_H)
    if HAS_LENGTHS or HAS_STEP_MASK:
        b_valid = step_valid(lengths, smask, t, B, o_b, m_b, HAS_LENGTHS, HAS_STEP_MASK)
    else:
        b_valid = None
    p_gx = gx + o_b[:, None] * (NUM_GATES * H) + o_h[None, :]
    saved = (_tile(SV0, SW0, o_b, o_h), _tile(SV1, SW1, o_b, o_h), _tile(SV2, SW2, o_b, o_h),
             _tile(SV3, SW3, o_b, o_h), _tile(SV4, SW4, o_b, o_h), _tile(SV5, SW5, o_b, o_h))
    # no U here (a cell with a second product does not run in this loop): gx's rows stand in
    b_h_new, b_c_new = CELL_FWD(b_hin, b_h, b_c, p_gx, saved, p_gx, b_w, b_b, (W2, W3, W4), CARGS, H, H, o_h, m_bh,
                                b_valid, ACC, SAVE, HAS_LENGTHS or HAS_STEP_MASK, RELU, GATE)
    if ZONEOUT_H:
        b_kh = load_tile(ZH + o_bh, m_bh, ACC)
        b_h_new = b_kh * b_h + (1.0 - b_kh) * b_h_new
    if ZONEOUT_C:
        b_kc = load_tile(ZC + o_bh, m_bh, ACC)
        b_c_new = b_kc * b_c + (1.0 - b_kc) * b_c_new
    if HAS_LENGTHS or HAS_STEP_MASK:
        b_h_new = tl.where(b_valid, b_h_new, b_h)
        b_c_new = tl.where(b_valid, b_c_new, b_c)
    store_tile(h_next + o_bh, b_h_new, m_bh)
    if HAS_C:
        store_tile(c_next + o_bh, b_c_new, m_bh)


def _step_bwd_kernel(w, W2, W3, W4, CARGS, lengths, smask, restart, rmask, t, t_done, ZH, ZC, RH, RC,  # inputs
                     h_prev, c_prev, h_in, h_next, SV0, SV1, SV2, SV3, SV4, SV5,  # forward outputs, step t
                     dS_h, dS_c,                              # upstream gradients of the slot step t_done read
                     Q, D_h, D_c, DR_h, DR_c,                 # dP @ W_hh of t_done; carried and reset gradients
                     dgx, G0, G1,                             # step t's gradients, written here
                     B, H, SW0, SW1, SW2, SW3, SW4, SW5, GW0, GW1,
                     CELL_BWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     HAS_DH: tl.constexpr, HAS_DC: tl.constexpr, ACC: tl.constexpr, HAS_LENGTHS: tl.constexpr,
                     HAS_STEP_MASK: tl.constexpr, HAS_RESTART: tl.constexpr, HAS_REC_MASK: tl.constexpr,
                     FINISH: tl.constexpr, STEP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                     RELU: tl.constexpr, GATE: tl.constexpr):
    """One step of BPTT for a (BLOCK_B, BLOCK_H) block, in place on the carried gradients D_h (B, H) and D_c.

    FINISH: first complete the gradient of the states step ``t_done`` (the one the previous launch processed)
    read: add the product's part Q = dP_{t_done} @ W_hh (B, H) (not for a W_VECTOR cell, which has no product)
    times the recurrent-dropout mask rmask (B, H), zero where that step was invalid; then, with HAS_RESTART,
    move the gradient of a row that restarted at t_done into the reset states' sums DR_h, DR_c (B, H); then
    add the upstream gradients dS_h, dS_c of the slot t_done read (HAS_DH / HAS_DC). STEP: then step t, as
    the persistent backward does it, writing dgx (B, G*H) and the cell's gradient rows G0, G1 (widths GW0,
    GW1), zero at an invalid step; its own ``dot`` terms are zero here (module docstring). The per-step
    inputs as in the forward. The last launch (FINISH only) leaves dh0, dc0 in D_h, D_c.
    """
    o_b, o_h, m_b, m_h, m_bh, o_bh = _block(B, H, BLOCK_B, BLOCK_H)
    b_dh = load_tile(D_h + o_bh, m_bh, ACC)
    b_dc = b_dh
    if HAS_C:
        b_dc = load_tile(D_c + o_bh, m_bh, ACC)
    if HAS_REC_MASK:
        b_m = load_tile(rmask + o_bh, m_bh, ACC)
    if FINISH:
        if not W_VECTOR:
            b_q = load_tile(Q + o_bh, m_bh, ACC)
            if HAS_REC_MASK:
                b_q = b_q * b_m
            if HAS_LENGTHS or HAS_STEP_MASK:
                b_q = tl.where(step_valid(lengths, smask, t_done, B, o_b, m_b, HAS_LENGTHS, HAS_STEP_MASK), b_q, 0.0)
            b_dh += b_q
        # a restarting row read the reset states, not the state before: its gradient goes to them
        if HAS_RESTART:
            b_rst = step_restarts(restart, t_done, B, o_b, m_b)
            store_tile(DR_h + o_bh, load_tile(DR_h + o_bh, m_bh, ACC) + tl.where(b_rst, b_dh, 0.0), m_bh)
            b_dh = tl.where(b_rst, 0.0, b_dh)
            if HAS_C:
                store_tile(DR_c + o_bh, load_tile(DR_c + o_bh, m_bh, ACC) + tl.where(b_rst, b_dc, 0.0), m_bh)
                b_dc = tl.where(b_rst, 0.0, b_dc)
        if HAS_DH:
            b_dh += load_tile(dS_h + o_bh, m_bh, ACC)
        if HAS_DC:
            b_dc += load_tile(dS_c + o_bh, m_bh, ACC)
    if STEP:
        if W_VECTOR:
            b_w = load_weight_vector(w, H, o_h, ACC)
        else:  # the cell's dot(dgate, W_k) terms: zero tiles (their sum is the next GEMM)
            b_zero = tl.full((BLOCK_B, BLOCK_H), 0.0, ACC)
            b_w = (b_zero, b_zero, b_zero, b_zero)
        if HAS_LENGTHS or HAS_STEP_MASK:
            b_valid = step_valid(lengths, smask, t, B, o_b, m_b, HAS_LENGTHS, HAS_STEP_MASK)
        else:
            b_valid = None
        b_hp = load_tile(h_prev + o_bh, m_bh, ACC)
        b_hnext = load_tile(h_next + o_bh, m_bh, ACC)
        b_hin = load_tile(h_in + o_bh, m_bh, ACC)
        b_cp = b_hp
        if HAS_C:
            b_cp = load_tile(c_prev + o_bh, m_bh, ACC)
        if HAS_RESTART:
            b_rst = step_restarts(restart, t, B, o_b, m_b)
            b_hp = tl.where(b_rst, load_tile(RH + o_bh, m_bh, ACC), b_hp)
            if HAS_C:
                b_cp = tl.where(b_rst, load_tile(RC + o_bh, m_bh, ACC), b_cp)
            else:
                b_cp = b_hp
        b_dh_new = b_dh
        b_dc_new = b_dc
        if ZONEOUT_H:
            b_kh = load_tile(ZH + o_bh, m_bh, ACC)
            b_dh_new = b_dh - b_kh * b_dh
        if ZONEOUT_C:
            b_kc = load_tile(ZC + o_bh, m_bh, ACC)
            b_dc_new = b_dc - b_kc * b_dc
        p_dgx = dgx + o_b[:, None] * (NUM_GATES * H) + o_h[None, :]
        grads = (_tile(G0, GW0, o_b, o_h), _tile(G1, GW1, o_b, o_h))
        saved = (_tile(SV0, SW0, o_b, o_h), _tile(SV1, SW1, o_b, o_h), _tile(SV2, SW2, o_b, o_h),
                 _tile(SV3, SW3, o_b, o_h), _tile(SV4, SW4, o_b, o_h), _tile(SV5, SW5, o_b, o_h))
        # no U here, as in the forward: dgx's rows stand in
        b_dhin, b_dh_direct, b_dc_prev = CELL_BWD(b_dh_new, b_dc_new, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved,
                                                  p_dgx, b_w, (W2, W3, W4), CARGS, H, H, o_h, m_bh, b_valid, ACC,
                                                  HAS_LENGTHS or HAS_STEP_MASK, RELU, GATE)
        if HAS_REC_MASK:
            b_dhin = b_dhin * b_m
        b_dh_prev = b_dhin + b_dh_direct
        if ZONEOUT_H:
            b_dh_prev += b_kh * b_dh
        if ZONEOUT_C:
            b_dc_prev += b_kc * b_dc
        # an invalid step passed the state through unchanged, so does its gradient
        if HAS_LENGTHS or HAS_STEP_MASK:
            b_dh = tl.where(b_valid, b_dh_prev, b_dh)
            b_dc = tl.where(b_valid, b_dc_prev, b_dc)
        else:
            b_dh = b_dh_prev
            b_dc = b_dc_prev
    store_tile(D_h + o_bh, b_dh, m_bh)
    if HAS_C:
        store_tile(D_c + o_bh, b_dc, m_bh)


# ----------------------------------------------------------------------------------------------------
# lazy decoration (as persistent_kernels.kernels, with the cells' dot swapped)

_KERNELS = (
    (_step_fwd_kernel, ("t",), ("gx", "ZH", "ZC", "h_in", "h_prev", "c_prev", "h_next", "c_next",
                                "SV0", "SV1", "SV2", "SV3", "SV4", "SV5")),
    (_step_bwd_kernel, ("t", "t_done"), ("ZH", "ZC", "h_prev", "c_prev", "h_in", "h_next", "SV0", "SV1", "SV2",
                                         "SV3", "SV4", "SV5", "dS_h", "dS_c", "dgx", "G0", "G1")),
)
_BUILT: dict = {}


def step_kernels() -> types.SimpleNamespace:
    """``fwd`` and ``bwd`` decorated for the current mode, and ``cells``: each cell's (forward, backward) step
    functions decorated with :func:`computed_product` as their ``dot``. Built once per mode."""
    mode = interpreting()
    if mode not in _BUILT:
        namespace = dict(globals())
        namespace.update(device_helpers())
        jit_all((_block, _tile), namespace)
        # the step and the per-step row pointers change every launch: no recompilation for their values
        for fn, steps, rows in _KERNELS:
            jit_all((fn,), namespace, do_not_specialize=steps, do_not_specialize_on_alignment=rows)
        cell_helpers = dict(device_helpers(), dot=triton.jit(computed_product))
        _BUILT[mode] = types.SimpleNamespace(fwd=namespace["_step_fwd_kernel"], bwd=namespace["_step_bwd_kernel"],
                                             cells=decorate_cells(cell_helpers))
    return _BUILT[mode]
