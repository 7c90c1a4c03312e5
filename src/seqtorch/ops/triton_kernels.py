"""Triton kernels for the recurrent scan: one persistent launch per layer and direction, written once.

The kernels own the time loop, the state in registers, ``lengths``, ``reverse``, the recurrent-dropout
mask, the state history and the loads of W_hh; a cell's ``triton.py`` (``CELL_FWD`` / ``CELL_BWD``, passed
as constexpr functions) owns one step's math on register tiles. The buffers are those of the op contract
(:mod:`seqtorch.ops.contract`), so these kernels and the C++ and Python loops are interchangeable and
are tested against the same reference. Launchers, autograd and argument checks live in
:mod:`seqtorch.ops.triton_scan`.

Strategy (haste's): the input projection ``gx = x @ W_ih^T + b_ih`` is one GEMM done before the scan, so
the sequential kernels do only the recurrent products and the gate math. Each program owns ``BLOCK_B``
batch rows and loops over all timesteps with the state in registers; W_hh's ``G`` gate tiles of
``BLOCK_H x BLOCK_H`` are loaded once before the loop when they fit the on-chip budget (``W_ON_CHIP``),
else re-read from global memory (L2) each step. The weights' gradients are not reduced here: the
backward writes the per-step gradients and one GEMM over all ``T * B`` rows follows (deterministic, no
atomics).

Names: ``b_`` register blocks, ``p_``/``o_`` pointers and offsets, ``m_`` masks, ``i_`` program ids.
Tensors are contiguous: gx (T, B, G*H), h's history (T+1, B, P), c's (T+1, B, H), per-step buffers
(T, B, width). ``P`` is the size of h: H, or less for a projecting cell (the LSTM's ``proj_size``); every
tile is (BLOCK_B, BLOCK_H) with BLOCK_H >= H > P, so a P-wide row is a tile masked to its first P columns
and W_hh (G*H, P) loads as tiles masked to P inputs.

Why the kernels are decorated lazily (:func:`kernels`): ``triton.jit`` reads ``TRITON_INTERPRET`` when it
decorates. Decorating on first launch, once per mode, lets the tests switch the interpreter on after
``seqtorch.ops`` was imported, and keeps importing seqtorch free of any Triton compilation.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import types

import triton
import triton.language as tl

from ..recurrent_cells import triton_math
from ..recurrent_cells.triton_math import load_tile, store_tile


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``) right now."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


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
    """W_hh's gate tiles 0..3; a cell with fewer gates gets tile 0 in the unused places (never read).
    W_VECTOR: a cell without recurrent products (IndRNN) has a weight vector (H,), loaded as a (1, BLOCK_H)
    row by :func:`_load_wv` instead (a Triton function returns one type, whatever its constexpr branches)."""
    b_w0 = _load_w(w, 0, H, P, o_h, TRANSPOSE)
    b_w1 = b_w0
    b_w2 = b_w0
    b_w3 = b_w0
    if NUM_GATES > 1:
        b_w1 = _load_w(w, 1, H, P, o_h, TRANSPOSE)
        b_w2 = _load_w(w, 2, H, P, o_h, TRANSPOSE)
    if NUM_GATES > 3:
        b_w3 = _load_w(w, 3, H, P, o_h, TRANSPOSE)
    return b_w0, b_w1, b_w2, b_w3


def _load_wv(w, H, o_h, ACC: tl.constexpr):
    """A weight vector (H,) as a (1, BLOCK_H) row, in the four places of W_hh's tiles."""
    b_v = tl.load(w + o_h, mask=o_h < H, other=0.0).to(ACC)[None, :]
    return b_v, b_v, b_v, b_v


def _load_b(bias, k, H, o_h, m_h, HAS_BIAS: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr):
    """Gate k of b_hh (G*H,) as a (1, BLOCK_H) row, zeros without a bias."""
    if HAS_BIAS:
        return tl.load(bias + k * H + o_h, mask=m_h, other=0.0).to(ACC)[None, :]
    else:
        return tl.full((1, BLOCK_H), 0.0, ACC)


def _load_bs(bias, H, o_h, m_h, NUM_GATES: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
             BLOCK_H: tl.constexpr):
    """b_hh's gate rows 0..3 (:func:`_load_b`); a cell with fewer gates gets row 0 in the unused places."""
    b_b0 = _load_b(bias, 0, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    b_b1 = b_b0
    b_b2 = b_b0
    b_b3 = b_b0
    if NUM_GATES > 1:
        b_b1 = _load_b(bias, 1, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
        b_b2 = _load_b(bias, 2, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    if NUM_GATES > 3:
        b_b3 = _load_b(bias, 3, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    return b_b0, b_b1, b_b2, b_b3


def _row_ptr(base, t, B, width, o_b, o_h):
    """Pointers to columns o_h of rows o_b of step t in a (T, B, width) buffer."""
    return base + (t * B + o_b[:, None]) * width + o_h[None, :]


# ----------------------------------------------------------------------------------------------------
# forward

def _scan_fwd_kernel(gx, h0, c0, w, bias, W2, W3, W4, CARGS, lengths, rmask, ZH, ZC,   # inputs
                     S_h, S_c, c_out, HM, U, SV0, SV1, SV2, SV3, SV4, SV5,              # outputs (op contract)
                     T, B, H, P, SW0, SW1, SW2, SW3, SW4, SW5,
                     CELL_FWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr, ACC: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     REVERSE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SAVE: tl.constexpr, W_ON_CHIP: tl.constexpr, RELU: tl.constexpr,
                     GATE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """One direction over all T steps for BLOCK_B batch rows.

    Writes the h history S_h (T+1, B, P) (initial state in slot 0, slot T when REVERSE; frozen past a
    sequence's length). With HAS_C: the c history S_c when SAVE, else the final c in c_out. With SAVE:
    HM = h * rmask per step (HAS_MASK), U, and the cell's saved buffers SV0..SV5 (widths SW0..SW5).
    ZONEOUT_H / ZONEOUT_C: ZH (T, B, P) / ZC (T, B, H) hold the zoneout coefficients k of each state,
    ``state = k * previous + (1 - k) * new``. W2..W4: the cell's recurrent weights after W_hh and b_hh
    (None where it has fewer), CARGS its numeric options (cell_args) in the math dtype; the cell reads both.
    """
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    m_bh = m_b[:, None] & m_h[None, :]
    m_bp = m_b[:, None] & (o_h < P)[None, :]
    o_bh = o_b[:, None] * H + o_h[None, :]
    o_bp = o_b[:, None] * P + o_h[None, :]

    # padded rows/columns load as 0 and stay 0 through every cell (all activations map 0 to 0 or keep c)
    b_h = load_tile(h0 + o_bp, m_bp, ACC)
    b_c = b_h
    if HAS_C:
        b_c = load_tile(c0 + o_bh, m_bh, ACC)
    if HAS_MASK:
        b_m = load_tile(rmask + o_bp, m_bp, ACC)
    if HAS_LENGTHS:
        b_len = tl.load(lengths + o_b, mask=m_b, other=0)
    if W_ON_CHIP:
        if W_VECTOR:
            b_w0, b_w1, b_w2, b_w3 = _load_wv(w, H, o_h, ACC)
        else:
            b_w0, b_w1, b_w2, b_w3 = _load_ws(w, H, P, o_h, NUM_GATES, True, W_VECTOR, ACC)
    b_b0, b_b1, b_b2, b_b3 = _load_bs(bias, H, o_h, m_h, NUM_GATES, HAS_BIAS, ACC, BLOCK_H)
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
        if not W_ON_CHIP:
            if W_VECTOR:
                b_w0, b_w1, b_w2, b_w3 = _load_wv(w, H, o_h, ACC)
            else:
                b_w0, b_w1, b_w2, b_w3 = _load_ws(w, H, P, o_h, NUM_GATES, True, W_VECTOR, ACC)
        if HAS_MASK:
            b_hin = b_h * b_m
            if SAVE:
                store_tile(HM + t * B * P + o_bp, b_hin, m_bp)
        else:
            b_hin = b_h
        if HAS_LENGTHS:
            b_valid = (b_len > t)[:, None]
        else:
            b_valid = None
        p_gx = gx + (t * B + o_b[:, None]) * (NUM_GATES * H) + o_h[None, :]
        b_h_new, b_c_new = CELL_FWD(
            b_hin, b_h, b_c, p_gx, H, P, o_h, b_w0, b_w1, b_w2, b_w3, b_b0, b_b1, b_b2, b_b3,
            _row_ptr(SV0, t, B, SW0, o_b, o_h), _row_ptr(SV1, t, B, SW1, o_b, o_h),
            _row_ptr(SV2, t, B, SW2, o_b, o_h), _row_ptr(SV3, t, B, SW3, o_b, o_h),
            _row_ptr(SV4, t, B, SW4, o_b, o_h), _row_ptr(SV5, t, B, SW5, o_b, o_h),
            _row_ptr(U, t, B, H, o_b, o_h), W2, W3, W4, CARGS, m_bh, b_valid, ACC, SAVE, HAS_LENGTHS, RELU, GATE)
        # zoneout as the reference writes it: a 0/1 coefficient keeps or replaces a value exactly
        if ZONEOUT_H:
            b_kh = load_tile(ZH + t * B * P + o_bp, m_bp, ACC)
            b_h_new = b_kh * b_h + (1.0 - b_kh) * b_h_new
        if ZONEOUT_C:
            b_kc = load_tile(ZC + t * B * H + o_bh, m_bh, ACC)
            b_c_new = b_kc * b_c + (1.0 - b_kc) * b_c_new
        # past a sequence's length the state is frozen
        if HAS_LENGTHS:
            b_h = tl.where(b_valid, b_h_new, b_h)
            if HAS_C:
                b_c = tl.where(b_valid, b_c_new, b_c)
        else:
            b_h = b_h_new
            if HAS_C:
                b_c = b_c_new
        store_tile(S_h + n * B * P + o_bp, b_h, m_bp)
        if HAS_C:
            if SAVE:
                store_tile(S_c + n * B * H + o_bh, b_c, m_bh)
    if HAS_C:
        if not SAVE:
            store_tile(c_out + o_bh, b_c, m_bh)


# ----------------------------------------------------------------------------------------------------
# backward

def _scan_bwd_kernel(w, W2, W3, W4, CARGS, lengths, rmask, ZH, ZC,     # forward inputs
                     S_h, S_c, HM, U, SV0, SV1, SV2, SV3, SV4, SV5,     # forward outputs
                     dS_h, dS_c,                                        # upstream gradients
                     dgx, G0, G1, dh0, dc0,                             # gradients written here
                     T, B, H, P, SW0, SW1, SW2, SW3, SW4, SW5, GW0, GW1,
                     CELL_BWD: tl.constexpr, NUM_GATES: tl.constexpr, HAS_C: tl.constexpr,
                     ZONEOUT_H: tl.constexpr, ZONEOUT_C: tl.constexpr, W_VECTOR: tl.constexpr,
                     HAS_DH: tl.constexpr, HAS_DC: tl.constexpr, ACC: tl.constexpr, REVERSE: tl.constexpr,
                     HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr, W_ON_CHIP: tl.constexpr,
                     RELU: tl.constexpr, GATE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """BPTT over all T steps (in the opposite order of the forward) for BLOCK_B batch rows.

    Carries the gradient of each state as the step being processed wrote it; the cell turns it into
    dgx (T, B, G*H) and its gradient buffers G0, G1 (widths GW0, GW1), zero past a sequence's length, and
    into the gradient of the states the step read. Writes dh0 (B, P), dc0 (B, H). dS_h, dS_c: the
    gradients of the forward's state histories (HAS_DH / HAS_DC: given; else zero).
    """
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    m_bh = m_b[:, None] & m_h[None, :]
    m_bp = m_b[:, None] & (o_h < P)[None, :]
    o_bh = o_b[:, None] * H + o_h[None, :]
    o_bp = o_b[:, None] * P + o_h[None, :]

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
    if HAS_MASK:
        b_m = load_tile(rmask + o_bp, m_bp, ACC)
    if HAS_LENGTHS:
        b_len = tl.load(lengths + o_b, mask=m_b, other=0)
    if W_ON_CHIP:
        if W_VECTOR:
            b_w0, b_w1, b_w2, b_w3 = _load_wv(w, H, o_h, ACC)
        else:
            b_w0, b_w1, b_w2, b_w3 = _load_ws(w, H, P, o_h, NUM_GATES, False, W_VECTOR, ACC)

    for s in range(0, T):
        if REVERSE:
            t = s
            p = t + 1
            n = t
        else:
            t = T - 1 - s
            p = t
            n = t + 1
        if not W_ON_CHIP:
            if W_VECTOR:
                b_w0, b_w1, b_w2, b_w3 = _load_wv(w, H, o_h, ACC)
            else:
                b_w0, b_w1, b_w2, b_w3 = _load_ws(w, H, P, o_h, NUM_GATES, False, W_VECTOR, ACC)
        if HAS_LENGTHS:
            b_valid = (b_len > t)[:, None]
        else:
            b_valid = None
        b_hp = load_tile(S_h + p * B * P + o_bp, m_bp, ACC)
        b_hnext = load_tile(S_h + n * B * P + o_bp, m_bp, ACC)
        b_cp = b_hp
        if HAS_C:
            b_cp = load_tile(S_c + p * B * H + o_bh, m_bh, ACC)
        if HAS_MASK:
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
        b_dhin, b_dh_direct, b_dc_prev = CELL_BWD(
            b_dh_new, b_dc_new, b_hp, b_cp, b_hin, b_hnext, _row_ptr(dgx, t, B, NUM_GATES * H, o_b, o_h),
            _row_ptr(G0, t, B, GW0, o_b, o_h), _row_ptr(G1, t, B, GW1, o_b, o_h), H, P, o_h,
            b_w0, b_w1, b_w2, b_w3,
            _row_ptr(SV0, t, B, SW0, o_b, o_h), _row_ptr(SV1, t, B, SW1, o_b, o_h),
            _row_ptr(SV2, t, B, SW2, o_b, o_h), _row_ptr(SV3, t, B, SW3, o_b, o_h),
            _row_ptr(SV4, t, B, SW4, o_b, o_h), _row_ptr(SV5, t, B, SW5, o_b, o_h),
            _row_ptr(U, t, B, H, o_b, o_h), W2, W3, W4, CARGS, m_bh, b_valid, ACC, HAS_LENGTHS, RELU, GATE)
        if HAS_MASK:
            b_dhin = b_dhin * b_m
        b_dh_prev = b_dhin + b_dh_direct
        if ZONEOUT_H:
            b_dh_prev += b_kh * b_dh
        if ZONEOUT_C:
            b_dc_prev += b_kc * b_dc
        # a step past the length passed the state through unchanged, so does its gradient
        if HAS_LENGTHS:
            b_dh = tl.where(b_valid, b_dh_prev, b_dh)
            if HAS_C:
                b_dc = tl.where(b_valid, b_dc_prev, b_dc)
        else:
            b_dh = b_dh_prev
            if HAS_C:
                b_dc = b_dc_prev
        if HAS_DH:
            b_dh += load_tile(dS_h + p * B * P + o_bp, m_bp, ACC)
        if HAS_DC:
            b_dc += load_tile(dS_c + p * B * H + o_bh, m_bh, ACC)

    store_tile(dh0 + o_bp, b_dh, m_bp)
    if HAS_C:
        store_tile(dc0 + o_bh, b_dc, m_bh)


# ----------------------------------------------------------------------------------------------------
# lazy decoration

_KERNEL_HELPERS = (_load_w, _load_ws, _load_wv, _load_b, _load_bs, _row_ptr)
_KERNELS = (_scan_fwd_kernel, _scan_bwd_kernel)
_BUILT: dict = {}


def _rebind(fn, namespace: dict):
    """The same function (same code, so Triton finds its source) resolving globals in ``namespace``."""
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__module__, clone.__qualname__, clone.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    return clone


def _jit_all(functions, namespace: dict) -> None:
    for fn in functions:
        namespace[fn.__name__] = triton.jit(_rebind(fn, namespace))


def kernels() -> types.SimpleNamespace:
    """``fwd`` and ``bwd`` kernels decorated by ``triton.jit`` for the current mode (compiled for the GPU,
    or interpreted under ``TRITON_INTERPRET=1``), and ``cells``: each cell's (forward, backward) step
    functions decorated the same way. Built once per mode and cached."""
    mode = interpreting()
    if mode not in _BUILT:
        # one namespace per mode, so a kernel calls helpers decorated the same way it is
        helpers = dict(vars(triton_math))
        _jit_all(triton_math.HELPERS, helpers)
        namespace = dict(globals())
        namespace.update({fn.__name__: helpers[fn.__name__] for fn in triton_math.HELPERS})
        _jit_all(_KERNEL_HELPERS + _KERNELS, namespace)
        _BUILT[mode] = types.SimpleNamespace(fwd=namespace["_scan_fwd_kernel"], bwd=namespace["_scan_bwd_kernel"],
                                             cells=decorate_cells(helpers), helpers=helpers, namespace=namespace)
    return _BUILT[mode]


def decorate_cells(helpers: dict) -> dict:
    """Each cell's (forward, backward) step functions decorated by ``triton.jit``, calling ``helpers``
    (the decorated :mod:`~seqtorch.recurrent_cells.triton_math` functions, by name)."""
    cells, namespaces, decorated = {}, [], {}
    for name in cell_names():
        module = importlib.import_module(f"seqtorch.recurrent_cells.{name}.triton")
        cell_ns = dict(vars(module))
        cell_ns.update({fn.__name__: helpers[fn.__name__] for fn in triton_math.HELPERS})
        _jit_all((module.forward, module.backward), cell_ns)
        cells[name] = (cell_ns["forward"], cell_ns["backward"])
        decorated.update({module.forward: cell_ns["forward"], module.backward: cell_ns["backward"]})
        namespaces.append(cell_ns)
    # a cell may build on another's step (lstm_proj on lstm's): it imported that cell's plain functions,
    # which are swapped here for their decorated versions (Triton reads globals when it compiles)
    for cell_ns in namespaces:
        for key, value in list(cell_ns.items()):
            if isinstance(value, types.FunctionType) and value in decorated:
                cell_ns[key] = decorated[value]
    return cells


def cell_names() -> list[str]:
    """The registered cells that have a ``triton.py``."""
    from ..recurrent_cells import CELLS

    # a folder cell's: a cell written as equations (no folder) has none yet
    return [name for name in CELLS if importlib.util.find_spec(f"seqtorch.recurrent_cells.{name}") is not None
            and importlib.util.find_spec(f"seqtorch.recurrent_cells.{name}.triton") is not None]
