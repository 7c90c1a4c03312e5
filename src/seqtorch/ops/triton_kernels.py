"""Triton kernels for the recurrent scan: one persistent launch per layer and direction.

The math is that of :mod:`seqtorch.reference` (read the equations there); this file holds only the two
kernels and their device helpers. Launchers, autograd and argument checks live in
:mod:`seqtorch.ops.triton_scan`.

Strategy (haste's): the input projection ``gx = x @ W_ih^T + b_ih`` is one GEMM done before the scan, so
the sequential kernels do only ``h @ W_hh^T`` and the gate math. Each program owns ``BLOCK_B`` batch rows
and loops over all timesteps with the state in registers; ``W_hh`` is loaded once before the loop when
its ``G`` tiles of ``BLOCK_H x BLOCK_H`` fit the on-chip budget (``W_ON_CHIP``), else re-read from global
memory (L2) each step. The weight gradient is not reduced here: the backward kernel writes the per-step
gate gradients and the launcher does one GEMM over all ``T * B`` rows (deterministic, no atomics).

Names: ``b_`` register blocks, ``p_``/``o_`` pointers and offsets, ``m_`` masks, ``i_`` program ids.
Modes: ``MODE`` 0 = SimpleRNN, 1 = LSTM, 2 = GRU. Tensors are contiguous: gx (T, B, G*H), states
(B, H), per-step buffers (T, B, H) or (T, B, WS*H).

Why the kernels are decorated lazily (:func:`kernels`): ``triton.jit`` reads ``TRITON_INTERPRET`` when it
decorates. Decorating on first launch, once per mode, lets the tests switch the interpreter on after
``seqtorch.ops`` was imported, and keeps importing seqtorch free of any Triton compilation.
"""

from __future__ import annotations

import os
import types

import triton
import triton.language as tl


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``) right now."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# ----------------------------------------------------------------------------------------------------
# device helpers (elementwise activations and their derivatives, written from the activation's output)

def _act(x, RELU: tl.constexpr):
    if RELU:
        return tl.maximum(x, 0.0)
    else:
        # tanh(x) = 1 - 2 / (exp(2x) + 1): exact at both tails (exp -> inf gives 1, exp -> 0 gives -1)
        return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


def _act_grad(y, RELU: tl.constexpr):
    """d act / dx as a function of y = act(x) (torch's relu passes the gradient where y > 0)."""
    if RELU:
        return tl.where(y > 0.0, 1.0, 0.0).to(y.dtype)
    else:
        return 1.0 - y * y


def _gate(x, HARD_SIGMOID: tl.constexpr):
    if HARD_SIGMOID:
        return tl.minimum(tl.maximum(0.2 * x + 0.5, 0.0), 1.0)
    else:
        return 1.0 / (1.0 + tl.exp(-x))


def _gate_grad(y, HARD_SIGMOID: tl.constexpr):
    """d gate / dx as a function of y = gate(x). For hard_sigmoid the slope is 0.2 strictly inside (0, 1);
    torch's clamp also passes it at the two exact boundary points, which differ in a measure-zero set."""
    if HARD_SIGMOID:
        # 0.2 times a 0/1 block of y's dtype, so float64 gets the float64 constant 0.2
        return 0.2 * tl.where((y > 0.0) & (y < 1.0), 1.0, 0.0).to(y.dtype)
    else:
        return y * (1.0 - y)


def _load_w(w, k, H, o_h, m_hh, TRANSPOSE: tl.constexpr):
    """Tile of gate k of w_hh (G*H, H): W_k^T (BLOCK_H in, BLOCK_H out) if TRANSPOSE else W_k."""
    if TRANSPOSE:
        p_w = w + (k * H + o_h[None, :]) * H + o_h[:, None]
    else:
        p_w = w + (k * H + o_h[:, None]) * H + o_h[None, :]
    return tl.load(p_w, mask=m_hh, other=0.0)


def _load_b(bias, k, H, o_h, m_h):
    """Gate k of b_hh (G*H,) as a (1, BLOCK_H) row."""
    return tl.load(bias + k * H + o_h, mask=m_h, other=0.0)[None, :]


def _where_valid(b_valid, x, other, HAS_LENGTHS: tl.constexpr):
    """x on rows whose step is inside the sequence, else other. Without lengths every step is valid and
    no select is emitted at all (LLVM's SLP vectorizer crashes on one such select in the LSTM backward
    for sm_90 when it is a no-op, and a no-op is cheaper anyway)."""
    if HAS_LENGTHS:
        return tl.where(b_valid, x, other)
    else:
        return x


def _dot(a, b):
    # full-precision products (no TF32): the parity tests compare against float32/float64 torch
    return tl.dot(a, b, input_precision="ieee")


# ----------------------------------------------------------------------------------------------------
# forward

def _scan_fwd_kernel(gx, h0, c0, w, bias, lengths, rmask,           # inputs
                     out, hn, cn, hp, cp, ws,                        # outputs and saved per-step buffers
                     T, B, H,
                     MODE: tl.constexpr, NUM_GATES: tl.constexpr, WS: tl.constexpr, ACC: tl.constexpr,
                     REVERSE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr,
                     HAS_BIAS: tl.constexpr, RESET_AFTER: tl.constexpr, HARD_SIGMOID: tl.constexpr,
                     RELU: tl.constexpr, SAVE: tl.constexpr, W_ON_CHIP: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """One direction over all T steps for BLOCK_B batch rows.

    Writes out (T, B, H) and hn/cn (B, H). With SAVE (training), also what the backward needs:
    hp (T, B, H) the state h entering each step, cp (T, B, H) the cell state entering each step (LSTM),
    ws (T, B, WS*H) the gate activations (LSTM i, f, g, o; GRU r, z, n, and h~ W_hn^T + b_hn if
    RESET_AFTER). SimpleRNN saves no gates: its derivative comes from `out`.
    """
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    m_bh = m_b[:, None] & m_h[None, :]
    m_hh = m_h[:, None] & m_h[None, :]
    o_bh = o_b[:, None] * H + o_h[None, :]                       # (B, H) state offsets
    o_bg = o_b[:, None] * (NUM_GATES * H) + o_h[None, :]         # gate 0 of gx's row; gate k at + k*H
    o_bw = o_b[:, None] * (WS * H) + o_h[None, :]                # slot 0 of ws's row

    # padded rows/columns load as 0 and stay 0 through every cell (all activations map 0 to 0 or keep c)
    b_h = tl.load(h0 + o_bh, mask=m_bh, other=0.0).to(ACC)
    if MODE == 1:
        b_c = tl.load(c0 + o_bh, mask=m_bh, other=0.0).to(ACC)
    if HAS_MASK:
        b_m = tl.load(rmask + o_bh, mask=m_bh, other=0.0).to(ACC)
    if HAS_LENGTHS:
        b_len = tl.load(lengths + o_b, mask=m_b, other=0)
    if W_ON_CHIP:
        b_w0 = _load_w(w, 0, H, o_h, m_hh, True)
        if NUM_GATES > 1:
            b_w1 = _load_w(w, 1, H, o_h, m_hh, True)
            b_w2 = _load_w(w, 2, H, o_h, m_hh, True)
        if NUM_GATES > 3:
            b_w3 = _load_w(w, 3, H, o_h, m_hh, True)
    if HAS_BIAS:
        b_b0 = _load_b(bias, 0, H, o_h, m_h)
        if NUM_GATES > 1:
            b_b1 = _load_b(bias, 1, H, o_h, m_h)
            b_b2 = _load_b(bias, 2, H, o_h, m_h)
        if NUM_GATES > 3:
            b_b3 = _load_b(bias, 3, H, o_h, m_h)

    for s in range(0, T):
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        if not W_ON_CHIP:
            b_w0 = _load_w(w, 0, H, o_h, m_hh, True)
            if NUM_GATES > 1:
                b_w1 = _load_w(w, 1, H, o_h, m_hh, True)
                b_w2 = _load_w(w, 2, H, o_h, m_hh, True)
            if NUM_GATES > 3:
                b_w3 = _load_w(w, 3, H, o_h, m_hh, True)
        p_gx = gx + t * B * NUM_GATES * H + o_bg
        if SAVE:
            tl.store(hp + t * B * H + o_bh, b_h.to(hp.dtype.element_ty), mask=m_bh)
            if MODE == 1:
                tl.store(cp + t * B * H + o_bh, b_c.to(cp.dtype.element_ty), mask=m_bh)
        if HAS_MASK:
            b_hin = b_h * b_m
        else:
            b_hin = b_h

        # gate pre-activations: gx_k + h~ W_k^T + b_k
        b_a0 = tl.load(p_gx, mask=m_bh, other=0.0).to(ACC) + _dot(b_hin, b_w0)
        if HAS_BIAS:
            b_a0 += b_b0
        if NUM_GATES > 1:
            b_a1 = tl.load(p_gx + H, mask=m_bh, other=0.0).to(ACC) + _dot(b_hin, b_w1)
            if HAS_BIAS:
                b_a1 += b_b1
        if MODE == 1:
            b_a2 = tl.load(p_gx + 2 * H, mask=m_bh, other=0.0).to(ACC) + _dot(b_hin, b_w2)
            b_a3 = tl.load(p_gx + 3 * H, mask=m_bh, other=0.0).to(ACC) + _dot(b_hin, b_w3)
            if HAS_BIAS:
                b_a2 += b_b2
                b_a3 += b_b3

        if MODE == 0:
            b_new = _act(b_a0, RELU)
        elif MODE == 1:
            b_i = _gate(b_a0, HARD_SIGMOID)
            b_f = _gate(b_a1, HARD_SIGMOID)
            b_g = _act(b_a2, RELU)
            b_o = _gate(b_a3, HARD_SIGMOID)
            b_c_new = b_f * b_c + b_i * b_g
            b_new = b_o * _act(b_c_new, RELU)
            if SAVE:
                p_ws = ws + t * B * WS * H + o_bw
                tl.store(p_ws, b_i.to(ws.dtype.element_ty), mask=m_bh)
                tl.store(p_ws + H, b_f.to(ws.dtype.element_ty), mask=m_bh)
                tl.store(p_ws + 2 * H, b_g.to(ws.dtype.element_ty), mask=m_bh)
                tl.store(p_ws + 3 * H, b_o.to(ws.dtype.element_ty), mask=m_bh)
        else:
            b_r = _gate(b_a0, HARD_SIGMOID)
            b_z = _gate(b_a1, HARD_SIGMOID)
            b_gxn = tl.load(p_gx + 2 * H, mask=m_bh, other=0.0).to(ACC)
            if RESET_AFTER:
                b_ghn = _dot(b_hin, b_w2)
                if HAS_BIAS:
                    b_ghn += b_b2
                b_n = _act(b_gxn + b_r * b_ghn, RELU)
            else:
                b_npre = b_gxn + _dot(b_r * b_hin, b_w2)
                if HAS_BIAS:
                    b_npre += b_b2
                b_n = _act(b_npre, RELU)
            b_new = (1.0 - b_z) * b_n + b_z * b_h
            if SAVE:
                p_ws = ws + t * B * WS * H + o_bw
                tl.store(p_ws, b_r.to(ws.dtype.element_ty), mask=m_bh)
                tl.store(p_ws + H, b_z.to(ws.dtype.element_ty), mask=m_bh)
                tl.store(p_ws + 2 * H, b_n.to(ws.dtype.element_ty), mask=m_bh)
                if RESET_AFTER:
                    tl.store(p_ws + 3 * H, b_ghn.to(ws.dtype.element_ty), mask=m_bh)

        # past a sequence's length the state is frozen and the output is 0
        if HAS_LENGTHS:
            b_valid = (b_len > t)[:, None]
            b_h = tl.where(b_valid, b_new, b_h)
            b_out = tl.where(b_valid, b_new, 0.0)
            if MODE == 1:
                b_c = tl.where(b_valid, b_c_new, b_c)
        else:
            b_h = b_new
            b_out = b_new
            if MODE == 1:
                b_c = b_c_new
        tl.store(out + t * B * H + o_bh, b_out.to(out.dtype.element_ty), mask=m_bh)

    tl.store(hn + o_bh, b_h.to(hn.dtype.element_ty), mask=m_bh)
    if MODE == 1:
        tl.store(cn + o_bh, b_c.to(cn.dtype.element_ty), mask=m_bh)


# ----------------------------------------------------------------------------------------------------
# backward

def _scan_bwd_kernel(w, lengths, rmask, out, hp, cp, ws,             # forward inputs and saved buffers
                     dout, dhn, dcn,                                  # upstream gradients
                     dgx, dgn, dh0, dc0,                              # gradients written here
                     T, B, H,
                     MODE: tl.constexpr, NUM_GATES: tl.constexpr, WS: tl.constexpr, ACC: tl.constexpr,
                     REVERSE: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_MASK: tl.constexpr,
                     RESET_AFTER: tl.constexpr, HARD_SIGMOID: tl.constexpr, RELU: tl.constexpr,
                     W_ON_CHIP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """BPTT over all T steps (in the opposite order of the forward) for BLOCK_B batch rows.

    Carries dL/dh (and dL/dc) of the state leaving each step. Writes dgx (T, B, G*H), the gradient of
    each gate's pre-activation (zero past a sequence's length), which is also the gradient of
    h~ W_k^T + b_k, except for GRU's n gate with RESET_AFTER: that one is r * dgx_n, written to
    dgn (T, B, H). Writes dh0, dc0 (B, H). The weight gradient is the launcher's GEMM.
    """
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)
    o_h = tl.arange(0, BLOCK_H)
    m_b = o_b < B
    m_h = o_h < H
    m_bh = m_b[:, None] & m_h[None, :]
    m_hh = m_h[:, None] & m_h[None, :]
    o_bh = o_b[:, None] * H + o_h[None, :]
    o_bg = o_b[:, None] * (NUM_GATES * H) + o_h[None, :]
    o_bw = o_b[:, None] * (WS * H) + o_h[None, :]

    b_dh = tl.load(dhn + o_bh, mask=m_bh, other=0.0).to(ACC)
    if MODE == 1:
        b_dc = tl.load(dcn + o_bh, mask=m_bh, other=0.0).to(ACC)
    if HAS_MASK:
        b_m = tl.load(rmask + o_bh, mask=m_bh, other=0.0).to(ACC)
    if HAS_LENGTHS:
        b_len = tl.load(lengths + o_b, mask=m_b, other=0)
    if W_ON_CHIP:
        b_w0 = _load_w(w, 0, H, o_h, m_hh, False)
        if NUM_GATES > 1:
            b_w1 = _load_w(w, 1, H, o_h, m_hh, False)
            b_w2 = _load_w(w, 2, H, o_h, m_hh, False)
        if NUM_GATES > 3:
            b_w3 = _load_w(w, 3, H, o_h, m_hh, False)

    for s in range(0, T):
        if REVERSE:
            t = s
        else:
            t = T - 1 - s
        if not W_ON_CHIP:
            b_w0 = _load_w(w, 0, H, o_h, m_hh, False)
            if NUM_GATES > 1:
                b_w1 = _load_w(w, 1, H, o_h, m_hh, False)
                b_w2 = _load_w(w, 2, H, o_h, m_hh, False)
            if NUM_GATES > 3:
                b_w3 = _load_w(w, 3, H, o_h, m_hh, False)
        if HAS_LENGTHS:
            b_valid = (b_len > t)[:, None]
        else:
            b_valid = None  # every step is valid (padded rows are masked at the stores)
        p_dgx = dgx + t * B * NUM_GATES * H + o_bg
        # gradient reaching the new state h' at this step (only used where the step is valid)
        b_dy = b_dh + tl.load(dout + t * B * H + o_bh, mask=m_bh, other=0.0).to(ACC)

        if MODE == 0:
            b_y = tl.load(out + t * B * H + o_bh, mask=m_bh, other=0.0).to(ACC)
            b_da0 = _where_valid(b_valid, b_dy * _act_grad(b_y, RELU), 0.0, HAS_LENGTHS)
            tl.store(p_dgx, b_da0.to(dgx.dtype.element_ty), mask=m_bh)
            b_dhin = _dot(b_da0, b_w0)
            b_dh_step = b_dhin
            if HAS_MASK:
                b_dh_step = b_dhin * b_m
        elif MODE == 1:
            p_ws = ws + t * B * WS * H + o_bw
            b_i = tl.load(p_ws, mask=m_bh, other=0.0).to(ACC)
            b_f = tl.load(p_ws + H, mask=m_bh, other=0.0).to(ACC)
            b_g = tl.load(p_ws + 2 * H, mask=m_bh, other=0.0).to(ACC)
            b_o = tl.load(p_ws + 3 * H, mask=m_bh, other=0.0).to(ACC)
            b_cp = tl.load(cp + t * B * H + o_bh, mask=m_bh, other=0.0).to(ACC)
            b_tc = _act(b_f * b_cp + b_i * b_g, RELU)   # act(c'), recomputed rather than stored
            b_dcn = b_dc + b_dy * b_o * _act_grad(b_tc, RELU)
            b_da0 = _where_valid(b_valid, b_dcn * b_g * _gate_grad(b_i, HARD_SIGMOID), 0.0, HAS_LENGTHS)
            b_da1 = _where_valid(b_valid, b_dcn * b_cp * _gate_grad(b_f, HARD_SIGMOID), 0.0, HAS_LENGTHS)
            b_da2 = _where_valid(b_valid, b_dcn * b_i * _act_grad(b_g, RELU), 0.0, HAS_LENGTHS)
            b_da3 = _where_valid(b_valid, b_dy * b_tc * _gate_grad(b_o, HARD_SIGMOID), 0.0, HAS_LENGTHS)
            tl.store(p_dgx, b_da0.to(dgx.dtype.element_ty), mask=m_bh)
            tl.store(p_dgx + H, b_da1.to(dgx.dtype.element_ty), mask=m_bh)
            tl.store(p_dgx + 2 * H, b_da2.to(dgx.dtype.element_ty), mask=m_bh)
            tl.store(p_dgx + 3 * H, b_da3.to(dgx.dtype.element_ty), mask=m_bh)
            b_dhin = _dot(b_da0, b_w0) + _dot(b_da1, b_w1) + _dot(b_da2, b_w2) + _dot(b_da3, b_w3)
            b_dh_step = b_dhin
            if HAS_MASK:
                b_dh_step = b_dhin * b_m
            b_dc = _where_valid(b_valid, b_dcn * b_f, b_dc, HAS_LENGTHS)
        else:
            p_ws = ws + t * B * WS * H + o_bw
            b_r = tl.load(p_ws, mask=m_bh, other=0.0).to(ACC)
            b_z = tl.load(p_ws + H, mask=m_bh, other=0.0).to(ACC)
            b_n = tl.load(p_ws + 2 * H, mask=m_bh, other=0.0).to(ACC)
            b_hp = tl.load(hp + t * B * H + o_bh, mask=m_bh, other=0.0).to(ACC)
            b_dn = _where_valid(b_valid, b_dy * (1.0 - b_z) * _act_grad(b_n, RELU), 0.0, HAS_LENGTHS)
            b_da1 = _where_valid(b_valid, b_dy * (b_hp - b_n) * _gate_grad(b_z, HARD_SIGMOID), 0.0, HAS_LENGTHS)
            if RESET_AFTER:
                b_ghn = tl.load(p_ws + 3 * H, mask=m_bh, other=0.0).to(ACC)
                b_da0 = b_dn * b_ghn * _gate_grad(b_r, HARD_SIGMOID)
                b_dghn = b_dn * b_r
                tl.store(dgn + t * B * H + o_bh, b_dghn.to(dgn.dtype.element_ty), mask=m_bh)
                b_dhin = _dot(b_da0, b_w0) + _dot(b_da1, b_w1) + _dot(b_dghn, b_w2)
            else:
                if HAS_MASK:
                    b_hin = b_hp * b_m
                else:
                    b_hin = b_hp
                b_drh = _dot(b_dn, b_w2)                  # gradient of r * h~
                b_da0 = b_drh * b_hin * _gate_grad(b_r, HARD_SIGMOID)
                b_dhin = _dot(b_da0, b_w0) + _dot(b_da1, b_w1) + b_drh * b_r
            tl.store(p_dgx, b_da0.to(dgx.dtype.element_ty), mask=m_bh)
            tl.store(p_dgx + H, b_da1.to(dgx.dtype.element_ty), mask=m_bh)
            tl.store(p_dgx + 2 * H, b_dn.to(dgx.dtype.element_ty), mask=m_bh)
            b_dh_step = b_dhin
            if HAS_MASK:
                b_dh_step = b_dhin * b_m
            b_dh_step += b_dy * b_z                        # the carried z * h term (unmasked)

        # a step past the length passed the state through unchanged, so does its gradient
        b_dh = _where_valid(b_valid, b_dh_step, b_dh, HAS_LENGTHS)

    tl.store(dh0 + o_bh, b_dh.to(dh0.dtype.element_ty), mask=m_bh)
    if MODE == 1:
        tl.store(dc0 + o_bh, b_dc.to(dc0.dtype.element_ty), mask=m_bh)


# ----------------------------------------------------------------------------------------------------
# lazy decoration

_DEVICE_FUNCTIONS = (_act, _act_grad, _gate, _gate_grad, _load_w, _load_b, _where_valid, _dot)
_KERNELS = (_scan_fwd_kernel, _scan_bwd_kernel)
_BUILT: dict = {}


def _rebind(fn, namespace: dict):
    """The same function (same code, so Triton finds its source) resolving globals in ``namespace``."""
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__module__, clone.__qualname__, clone.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    return clone


def kernels() -> types.SimpleNamespace:
    """``fwd`` and ``bwd`` kernels decorated by ``triton.jit`` for the current mode (compiled for the
    GPU, or interpreted under ``TRITON_INTERPRET=1``); built once per mode and cached."""
    mode = interpreting()
    if mode not in _BUILT:
        # each mode gets its own globals, so a kernel calls helpers decorated the same way it is
        namespace = dict(globals())
        for fn in _DEVICE_FUNCTIONS + _KERNELS:
            namespace[fn.__name__] = triton.jit(_rebind(fn, namespace))
        _BUILT[mode] = types.SimpleNamespace(fwd=namespace["_scan_fwd_kernel"],
                                             bwd=namespace["_scan_bwd_kernel"])
    return _BUILT[mode]
