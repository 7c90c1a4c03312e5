"""The persistent Triton kernels of the scan: one launch per layer and direction, written once for all cells.

The kernels own the time loop, the state in registers, which steps are valid (``lengths``, ``mask``), the
resets, ``reverse``, the recurrent-dropout mask, the state history and the loads of W_hh; a cell's
``triton.py`` (``CELL_FWD`` / ``CELL_BWD``, passed as constexpr functions) owns one step's math on register
tiles, called with the arguments of
:mod:`seqtorch.recurrent_cells.triton_math`: the kernels' flat slots (SV0..SV5, G0, G1, W2..W4) go to it as
the tuples ``saved``, ``grads`` and ``extra``, which it reads by the names its spec gives them. The buffers
are those of the op contract (:mod:`seqtorch.ops.contract`), so these kernels and the C++ and Python loops
are interchangeable and are tested against the same reference. The launchers live in :mod:`.persistent`.

Strategy (haste's): the input projection ``gx = x @ W_ih^T + b_ih`` is one GEMM done before the scan, so
the sequential kernels do only the recurrent products and the gate math. Each program owns ``BLOCK_B``
batch rows and loops over all timesteps with the state in registers; W_hh's ``G`` gate tiles of
``BLOCK_H x BLOCK_H`` are loaded once before the loop when they fit the on-chip budget (``W_ON_CHIP``),
else re-read from global memory (L2) each step. The weights' gradients are not reduced here: the
backward writes the per-step gradients and one GEMM over all ``T * B`` rows follows (deterministic, no
atomics).

Validity and resets, as the reference defines them: an invalid step (past a row's length, or masked) keeps
the row's state and zeroes what it saves; in the backward it writes zero gradient rows and passes the state
gradient through. Per element that is a select (``tl.where``), never a branch; a step that no row of the
program's block takes is skipped whole, one scalar branch per block and step (:func:`.common.any_valid`): no
product, no gate math, no W_hh reload, only its saved (backward: gradient) rows zeroed (:func:`_zero_rows`).
A row that restarts at step t reads the reset states (held in registers for the whole loop) in place of
the carried ones, for the cell and for ``h~``, which HM then keeps for the weights' gradient; the backward
moves the gradient of the states such a row read to the reset states' accumulator (registers), so the
step before gets none from it, and adds the carried slot's upstream gradient after that.

Names: ``b_`` register blocks, ``p_``/``o_`` pointers and offsets, ``m_`` masks, ``i_`` program ids.
Tensors are contiguous: gx (T, B, G*H), h's history (T+1, B, P), c's (T+1, B, H), per-step buffers
(T, B, width). ``P`` is the size of h: H, or less for a projecting cell (the LSTM's ``proj_size``); every
tile is (BLOCK_B, BLOCK_H) with BLOCK_H >= H > P, so a P-wide row is a tile masked to its first P columns
and W_hh (G*H, P) loads as tiles masked to P inputs.

The functions here are plain Python until :func:`kernels` decorates them on first launch, once per mode
(:mod:`.common` says why).
"""

from __future__ import annotations

import types

import triton.language as tl

from ...recurrent_cells.triton_math import load_tile, store_tile
from .common import (any_valid, decorate_cells, device_helpers, interpreting, jit_all, load_bias_rows,
                     load_weight_vector, step_restarts, step_valid)


def _load_w(w, k, H, P, o_h, TRANSPOSE: tl.constexpr):
    """Tile of gate block k of w_hh (G*H, P): W_k^T (P in, H out) if TRANSPOSE else W_k (H out, P in),
    zero outside those sizes."""
    m_h = o_h < H
    m_p = o_h < P
    if TRANSPOSE:
        p_w = w + (k * H + o_h[None, :]) * P + o_h[:, None]
        m_w = m_p[:, None] & m_h[None, :]
    else:
        p_w = w + (k * H + o_h[:, None]) * P + o_h[None, :]
        m_w = m_h[:, None] & m_p[None, :]
    return tl.load(p_w, mask=m_w, other=0.0)


def _load_ws(w, H, P, o_h, NUM_GATES: tl.constexpr, TRANSPOSE: tl.constexpr, W_VECTOR: tl.constexpr,
             ACC: tl.constexpr):
    """W_hh's gate tiles 0..3; a cell with fewer gates gets tile 0 in the unused places (never read; no
    tile past its G*H rows is loaded).
    W_VECTOR: a cell without recurrent products (IndRNN) has a weight vector (H,), loaded as a (1, BLOCK_H)
    row by :func:`.common.load_weight_vector` instead (a Triton function returns one type, whatever its
    constexpr branches)."""
    b_w0 = _load_w(w, 0, H, P, o_h, TRANSPOSE)
    b_w1 = b_w0
    b_w2 = b_w0
    b_w3 = b_w0
    if NUM_GATES > 1:
        b_w1 = _load_w(w, 1, H, P, o_h, TRANSPOSE)
    if NUM_GATES > 2:
        b_w2 = _load_w(w, 2, H, P, o_h, TRANSPOSE)
    if NUM_GATES > 3:
        b_w3 = _load_w(w, 3, H, P, o_h, TRANSPOSE)
    return b_w0, b_w1, b_w2, b_w3


def _block(B, H, P, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's batch rows o_b and the columns o_h, their masks, and the masks and offsets of a (B, H)
    and a (B, P) tile."""
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    m_bh = m_b[:, None] & m_h[None, :]
    m_bp = m_b[:, None] & (o_h < P)[None, :]
    o_bh = o_b[:, None] * H + o_h[None, :]
    o_bp = o_b[:, None] * P + o_h[None, :]
    return o_b, o_h, m_b, m_h, m_bh, m_bp, o_bh, o_bp


def _row_ptr(base, t, B, width, o_b, o_h):
    """Pointers to columns o_h of rows o_b of step t in a (T, B, width) buffer."""
    return base + (t * B + o_b[:, None]) * width + o_h[None, :]


def _zero_rows(base, t, B, width, o_b, m_b, o_h, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """Zeros into rows o_b of step t of a (T, B, width) buffer, all of its width (none when width is 0: an
    unused slot): what a step no row of the block takes leaves in its saved and gradient rows."""
    b_zero = tl.full((BLOCK_B, BLOCK_H), 0.0, base.dtype.element_ty)
    for j in range(0, width, BLOCK_H):
        o_w = j + o_h
        tl.store(base + (t * B + o_b[:, None]) * width + o_w[None, :], b_zero,
                 mask=m_b[:, None] & (o_w < width)[None, :])


# ----------------------------------------------------------------------------------------------------
# forward

def _scan_fwd_kernel(gx, h0, c0, w, bias, W2, W3, W4, CARGS, lengths, smask, restart, RH, RC, rmask, ZH, ZC,  # inputs
                     S_h, S_c, c_out, HM, U, SV0, SV1, SV2, SV3, SV4, SV5,              # outputs (op contract)
                     T, B, H, P, UW, SW0, SW1, SW2, SW3, SW4, SW5,
                     CELL_FWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr, ACC: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     REVERSE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_STEP_MASK: tl.constexpr,
                     HAS_RESTART: tl.constexpr, HAS_REC_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SAVE: tl.constexpr, W_ON_CHIP: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """One direction over all T steps for BLOCK_B batch rows.

    Writes the h history S_h (T+1, B, P) (initial state in slot 0, slot T when REVERSE; frozen over a
    sequence's invalid steps). With HAS_C: the c history S_c when SAVE, else the final c in c_out. With SAVE:
    HM (T, B, P), the h the products read, ``(restart ? RH : h) * rmask`` (HAS_RESTART or HAS_REC_MASK), U
    (T, B, UW), and the cell's saved buffers SV0..SV5 (widths SW0..SW5), zero at invalid steps.
    Validity: HAS_LENGTHS, lengths (B,) int64; HAS_STEP_MASK, smask (T, B) uint8 (1: valid). HAS_RESTART:
    restart (T, B) uint8, 1 where a row starts step t from the reset states RH (B, P), RC (B, H) (the
    initial states when the scan has no reset states of its own). HAS_REC_MASK: rmask (B, P).
    ZONEOUT_H / ZONEOUT_C: ZH (T, B, P) / ZC (T, B, H) hold the zoneout coefficients k of each state,
    ``state = k * previous + (1 - k) * new``. W2..W4: the cell's recurrent weights after W_hh and b_hh
    (None where it has fewer; its ``extra``), CARGS its numeric options (cell_args) in the math dtype (its
    ``p_args``); the cell reads both.
    """
    o_b, o_h, m_b, m_h, m_bh, m_bp, o_bh, o_bp = _block(B, H, P, BLOCK_B, BLOCK_H)

    # padded rows/columns load as 0 and stay 0 through every cell (all activations map 0 to 0 or keep c)
    b_h = load_tile(h0 + o_bp, m_bp, ACC)
    b_c = b_h
    if HAS_C:
        b_c = load_tile(c0 + o_bh, m_bh, ACC)
    if HAS_RESTART:
        b_rh = load_tile(RH + o_bp, m_bp, ACC)
        b_rc = b_rh
        if HAS_C:
            b_rc = load_tile(RC + o_bh, m_bh, ACC)
    if HAS_REC_MASK:
        b_m = load_tile(rmask + o_bp, m_bp, ACC)
    if W_ON_CHIP:
        if W_VECTOR:
            b_w = load_weight_vector(w, H, o_h, ACC)
        else:
            b_w = _load_ws(w, H, P, o_h, NUM_GATES, True, W_VECTOR, ACC)
    b_b = load_bias_rows(bias, H, o_h, m_h, NUM_GATES, HAS_BIAS, ACC, BLOCK_H)
    if REVERSE:
        first = T
    else:
        first = 0
    store_tile(S_h + first * B * P + o_bp, b_h, m_bp)
    if HAS_C:
        if SAVE:
            store_tile(S_c + first * B * H + o_bh, b_c, m_bh)

    for s in range(0, T):
        if REVERSE:
            t = T - 1 - s
            n = t
        else:
            t = s
            n = t + 1
        if HAS_RESTART:  # a restarting row reads the reset states in place of the carried ones
            b_rst = step_restarts(restart, t, B, o_b, m_b)
            b_h = tl.where(b_rst, b_rh, b_h)
            if HAS_C:
                b_c = tl.where(b_rst, b_rc, b_c)
        b_hin = b_h
        if HAS_REC_MASK:
            b_hin = b_h * b_m
        if HAS_REC_MASK or HAS_RESTART:
            if SAVE:
                store_tile(HM + t * B * P + o_bp, b_hin, m_bp)
        if HAS_LENGTHS or HAS_STEP_MASK:
            b_valid = step_valid(lengths, smask, t, B, o_b, m_b, HAS_LENGTHS, HAS_STEP_MASK)
            b_run = any_valid(b_valid)
        else:
            b_valid = None
            b_run = True  # a constant: every row takes every step, no branch is compiled
        if b_run:
            if not W_ON_CHIP:
                if W_VECTOR:
                    b_w = load_weight_vector(w, H, o_h, ACC)
                else:
                    b_w = _load_ws(w, H, P, o_h, NUM_GATES, True, W_VECTOR, ACC)
            p_gx = gx + (t * B + o_b[:, None]) * (NUM_GATES * H) + o_h[None, :]
            saved = (_row_ptr(SV0, t, B, SW0, o_b, o_h), _row_ptr(SV1, t, B, SW1, o_b, o_h),
                     _row_ptr(SV2, t, B, SW2, o_b, o_h), _row_ptr(SV3, t, B, SW3, o_b, o_h),
                     _row_ptr(SV4, t, B, SW4, o_b, o_h), _row_ptr(SV5, t, B, SW5, o_b, o_h))
            b_h_new, b_c_new = CELL_FWD(b_hin, b_h, b_c, p_gx, saved, _row_ptr(U, t, B, H, o_b, o_h), b_w, b_b,
                                        (W2, W3, W4), CARGS, H, P, o_h, m_bh, b_valid, ACC, SAVE,
                                        HAS_LENGTHS or HAS_STEP_MASK, RELU, GATE)
            # zoneout as the reference writes it: a 0/1 coefficient keeps or replaces a value exactly
            if ZONEOUT_H:
                b_kh = load_tile(ZH + t * B * P + o_bp, m_bp, ACC)
                b_h_new = b_kh * b_h + (1.0 - b_kh) * b_h_new
            if ZONEOUT_C:
                b_kc = load_tile(ZC + t * B * H + o_bh, m_bh, ACC)
                b_c_new = b_kc * b_c + (1.0 - b_kc) * b_c_new
            # an invalid step keeps the state
            if HAS_LENGTHS or HAS_STEP_MASK:
                b_h = tl.where(b_valid, b_h_new, b_h)
                if HAS_C:
                    b_c = tl.where(b_valid, b_c_new, b_c)
            else:
                b_h = b_h_new
                if HAS_C:
                    b_c = b_c_new
        else:  # no row of the block takes step t: the state stays, the saved rows are zeros
            if SAVE:
                _zero_rows(U, t, B, UW, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV0, t, B, SW0, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV1, t, B, SW1, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV2, t, B, SW2, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV3, t, B, SW3, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV4, t, B, SW4, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
                _zero_rows(SV5, t, B, SW5, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
        store_tile(S_h + n * B * P + o_bp, b_h, m_bp)
        if HAS_C:
            if SAVE:
                store_tile(S_c + n * B * H + o_bh, b_c, m_bh)
    if HAS_C:
        if not SAVE:
            store_tile(c_out + o_bh, b_c, m_bh)


# ----------------------------------------------------------------------------------------------------
# backward

def _scan_bwd_kernel(w, W2, W3, W4, CARGS, lengths, smask, restart, RH, RC, rmask, ZH, ZC,  # forward inputs
                     S_h, S_c, HM, U, SV0, SV1, SV2, SV3, SV4, SV5,     # forward outputs
                     dS_h, dS_c,                                        # upstream gradients
                     dgx, G0, G1, dh0, dc0, dRH, dRC,                   # gradients written here
                     T, B, H, P, SW0, SW1, SW2, SW3, SW4, SW5, GW0, GW1,
                     CELL_BWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     HAS_DH: tl.constexpr, HAS_DC: tl.constexpr, ACC: tl.constexpr, REVERSE: tl.constexpr,
                     HAS_LENGTHS: tl.constexpr, HAS_STEP_MASK: tl.constexpr, HAS_RESTART: tl.constexpr,
                     OWN_RESETS: tl.constexpr, HAS_REC_MASK: tl.constexpr, W_ON_CHIP: tl.constexpr,
                     RELU: tl.constexpr, GATE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """BPTT over all T steps (in the opposite order of the forward) for BLOCK_B batch rows.

    Carries the gradient of each state as the step being processed wrote it; the cell turns it into
    dgx (T, B, G*H) and its gradient buffers G0, G1 (widths GW0, GW1), zero at invalid steps, and into the
    gradient of the states the step read. Writes dh0 (B, P), dc0 (B, H). dS_h, dS_c: the gradients of the
    forward's state histories (HAS_DH / HAS_DC: given; else zero). The per-step inputs as the forward's
    (RH, RC: the states a reset row read); the gradient of the states reset rows read is summed over the
    steps and written to dRH (B, P), dRC (B, H) with OWN_RESETS (the scan's own reset states), else added to
    dh0, dc0 (they were the initial states).
    """
    o_b, o_h, m_b, m_h, m_bh, m_bp, o_bh, o_bp = _block(B, H, P, BLOCK_B, BLOCK_H)

    if REVERSE:
        last = 0
    else:
        last = T
    b_dh = tl.full((BLOCK_B, BLOCK_H), 0.0, ACC)
    if HAS_DH:
        b_dh = load_tile(dS_h + last * B * P + o_bp, m_bp, ACC)
    b_dc = tl.full((BLOCK_B, BLOCK_H), 0.0, ACC)
    if HAS_DC:
        b_dc = load_tile(dS_c + last * B * H + o_bh, m_bh, ACC)
    if HAS_RESTART:
        b_rh = load_tile(RH + o_bp, m_bp, ACC)
        b_rc = b_rh
        if HAS_C:
            b_rc = load_tile(RC + o_bh, m_bh, ACC)
        b_drh = tl.full((BLOCK_B, BLOCK_H), 0.0, ACC)
        b_drc = tl.full((BLOCK_B, BLOCK_H), 0.0, ACC)
    if HAS_REC_MASK:
        b_m = load_tile(rmask + o_bp, m_bp, ACC)
    if W_ON_CHIP:
        if W_VECTOR:
            b_w = load_weight_vector(w, H, o_h, ACC)
        else:
            b_w = _load_ws(w, H, P, o_h, NUM_GATES, False, W_VECTOR, ACC)

    for s in range(0, T):
        if REVERSE:
            t = s
            p = t + 1
            n = t
        else:
            t = T - 1 - s
            p = t
            n = t + 1
        if HAS_RESTART:
            b_rst = step_restarts(restart, t, B, o_b, m_b)
        if HAS_LENGTHS or HAS_STEP_MASK:
            b_valid = step_valid(lengths, smask, t, B, o_b, m_b, HAS_LENGTHS, HAS_STEP_MASK)
            b_run = any_valid(b_valid)
        else:
            b_valid = None
            b_run = True  # a constant: every row takes every step, no branch is compiled
        if b_run:
            if not W_ON_CHIP:
                if W_VECTOR:
                    b_w = load_weight_vector(w, H, o_h, ACC)
                else:
                    b_w = _load_ws(w, H, P, o_h, NUM_GATES, False, W_VECTOR, ACC)
            b_hp = load_tile(S_h + p * B * P + o_bp, m_bp, ACC)
            if HAS_RESTART:
                b_hp = tl.where(b_rst, b_rh, b_hp)
            b_hnext = load_tile(S_h + n * B * P + o_bp, m_bp, ACC)
            b_cp = b_hp
            if HAS_C:
                b_cp = load_tile(S_c + p * B * H + o_bh, m_bh, ACC)
                if HAS_RESTART:
                    b_cp = tl.where(b_rst, b_rc, b_cp)
            if HAS_REC_MASK or HAS_RESTART:
                b_hin = load_tile(HM + t * B * P + o_bp, m_bp, ACC)
            else:
                b_hin = b_hp
            # zoneout: the new state got (1 - k) of each state's gradient, the previous one k of it
            b_dh_new = b_dh
            b_dc_new = b_dc
            if ZONEOUT_H:
                b_kh = load_tile(ZH + t * B * P + o_bp, m_bp, ACC)
                b_dh_new = b_dh - b_kh * b_dh
            if ZONEOUT_C:
                b_kc = load_tile(ZC + t * B * H + o_bh, m_bh, ACC)
                b_dc_new = b_dc - b_kc * b_dc
            p_dgx = _row_ptr(dgx, t, B, NUM_GATES * H, o_b, o_h)
            grads = (_row_ptr(G0, t, B, GW0, o_b, o_h), _row_ptr(G1, t, B, GW1, o_b, o_h))
            saved = (_row_ptr(SV0, t, B, SW0, o_b, o_h), _row_ptr(SV1, t, B, SW1, o_b, o_h),
                     _row_ptr(SV2, t, B, SW2, o_b, o_h), _row_ptr(SV3, t, B, SW3, o_b, o_h),
                     _row_ptr(SV4, t, B, SW4, o_b, o_h), _row_ptr(SV5, t, B, SW5, o_b, o_h))
            b_dhin, b_dh_direct, b_dc_prev = CELL_BWD(b_dh_new, b_dc_new, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads,
                                                      saved, _row_ptr(U, t, B, H, o_b, o_h), b_w, (W2, W3, W4), CARGS,
                                                      H, P, o_h, m_bh, b_valid, ACC, HAS_LENGTHS or HAS_STEP_MASK,
                                                      RELU, GATE)
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
                if HAS_C:
                    b_dc = tl.where(b_valid, b_dc_prev, b_dc)
            else:
                b_dh = b_dh_prev
                if HAS_C:
                    b_dc = b_dc_prev
        else:  # no row of the block took step t: zero gradient rows, the state gradient passes through
            _zero_rows(dgx, t, B, NUM_GATES * H, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
            _zero_rows(G0, t, B, GW0, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
            _zero_rows(G1, t, B, GW1, o_b, m_b, o_h, BLOCK_B, BLOCK_H)
        # a restarting row read the reset states, not the state before: its gradient goes to them
        if HAS_RESTART:
            b_drh += tl.where(b_rst, b_dh, 0.0)
            b_dh = tl.where(b_rst, 0.0, b_dh)
            if HAS_C:
                b_drc += tl.where(b_rst, b_dc, 0.0)
                b_dc = tl.where(b_rst, 0.0, b_dc)
        if HAS_DH:
            b_dh += load_tile(dS_h + p * B * P + o_bp, m_bp, ACC)
        if HAS_DC:
            b_dc += load_tile(dS_c + p * B * H + o_bh, m_bh, ACC)

    if HAS_RESTART:
        if OWN_RESETS:
            store_tile(dRH + o_bp, b_drh, m_bp)
            if HAS_C:
                store_tile(dRC + o_bh, b_drc, m_bh)
        else:
            b_dh += b_drh
            b_dc += b_drc
    store_tile(dh0 + o_bp, b_dh, m_bp)
    if HAS_C:
        store_tile(dc0 + o_bh, b_dc, m_bh)


# ----------------------------------------------------------------------------------------------------
# lazy decoration

_KERNEL_HELPERS = (_load_w, _load_ws, _block, _row_ptr, _zero_rows)
_KERNELS = (_scan_fwd_kernel, _scan_bwd_kernel)
_BUILT: dict = {}


def kernels() -> types.SimpleNamespace:
    """``fwd`` and ``bwd`` kernels decorated by ``triton.jit`` for the current mode (compiled for the GPU,
    or interpreted under ``TRITON_INTERPRET=1``), and ``cells``: each cell's (forward, backward) step
    functions decorated the same way. Built once per mode and cached."""
    mode = interpreting()
    if mode not in _BUILT:
        helpers = device_helpers()
        namespace = dict(globals())
        namespace.update(helpers)
        jit_all(_KERNEL_HELPERS + _KERNELS, namespace)
        _BUILT[mode] = types.SimpleNamespace(fwd=namespace["_scan_fwd_kernel"], bwd=namespace["_scan_bwd_kernel"],
                                             cells=decorate_cells(helpers))
    return _BUILT[mode]
