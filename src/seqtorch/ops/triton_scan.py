"""The ``triton`` backend: fused recurrent scans on Triton kernels, with a hand-written backward.

Layers, left to right: kernels (:mod:`.triton_kernels`) -> launchers (allocate buffers, set the grid) ->
:class:`_TritonScan` (autograd: saves the forward's buffers, calls the backward launcher, one GEMM for
the weight gradient) -> :func:`recurrent_scan_triton` (docstring, argument checks).

What it covers (:func:`supports_triton` says why not, and the dispatcher then falls back to
``cpu_fused`` under ``backend="auto"``):

* modes "rnn", "lstm", "gru"; every option of the reference (lengths, reverse, rec_mask,
  reset_after both ways, activation tanh/relu, recurrent_activation sigmoid/hard_sigmoid, no bias);
* hidden sizes 1 to :data:`MAX_HIDDEN` (128): a program holds a (16, H) state block and the G tiles of
  W_hh (H padded to a power of two, at least 16); W_hh stays on chip for the whole sequence when its
  tiles fit :data:`W_ON_CHIP_BYTES` (:data:`W_ON_CHIP_BYTES_BACKWARD` in the backward), else it is
  re-read from L2 each step;
* state, weights and math in float32 or float64 (w_hh's dtype); gx in that dtype, or float16/bfloat16
  under autocast; matrix products in full precision (no TF32);
* CUDA tensors, or CPU tensors while ``TRITON_INTERPRET=1`` (the interpreter; slow, for tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..reference import ACTIVATIONS, GATES, MODES, RECURRENT_ACTIVATIONS
from .triton_kernels import interpreting, kernels

MAX_HIDDEN = 128
W_ON_CHIP_BYTES = 64 * 1024     # forward: W_hh tiles kept on chip across the time loop up to this size
# backward: smaller. Triton 3.9's LLVM (SLP vectorizer) aborts compiling the LSTM backward for sm_90 with
# W_hh held across the loop at H = 32 and 64 (16 and 64 KiB); with per-step reloads it compiles.
W_ON_CHIP_BYTES_BACKWARD = 8 * 1024
BLOCK_B = 16                    # batch rows per program (tl.dot needs at least 16)
GX_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
STATE_DTYPES = (torch.float32, torch.float64)

#: Tests set this: every buffer the launchers allocate is filled with NaN first, so an element a
#: kernel forgot to write cannot pass a comparison.
POISON_NEW_BUFFERS = False

_MODE_IDS = {"rnn": 0, "lstm": 1, "gru": 2}


def supports_triton(gx: Tensor, hidden_size: int) -> str | None:
    """Why the Triton kernels cannot run a scan on ``gx`` (T, B, G*H) with ``hidden_size``, or None if
    they can. The rules: CUDA tensors (CPU only under ``TRITON_INTERPRET=1``), gx dtype in
    float32/float64/float16/bfloat16, 1 <= hidden_size <= MAX_HIDDEN, T >= 1, B >= 1, and fewer than
    2**31 elements per tensor (the kernels use 32-bit offsets)."""
    if gx.device.type != "cuda" and not (gx.device.type == "cpu" and interpreting()):
        return (f"Triton kernels need CUDA tensors, got device {gx.device.type!r} "
                f"(CPU tensors run only in Triton's interpreter, TRITON_INTERPRET=1)")
    if gx.dtype not in GX_DTYPES:
        return f"dtype {gx.dtype} is not supported (supported: {', '.join(map(str, GX_DTYPES))})"
    if not 1 <= hidden_size <= MAX_HIDDEN:
        return (f"hidden_size {hidden_size} is outside what the persistent kernel covers "
                f"(1 <= hidden_size <= {MAX_HIDDEN})")
    if gx.dim() != 3 or gx.shape[0] == 0 or gx.shape[1] == 0:
        return f"needs a non-empty (T, B, G*H) input projection, got shape {tuple(gx.shape)}"
    if gx.numel() >= 2**31:
        return f"gx has {gx.numel()} elements; the kernels use 32-bit offsets (< 2**31 elements)"
    return None


# ----------------------------------------------------------------------------------------------------
# launchers

def _new(shape, dtype: torch.dtype, device) -> Tensor:
    buffer = torch.empty(shape, dtype=dtype, device=device)
    if POISON_NEW_BUFFERS:
        buffer.fill_(float("nan"))
    return buffer


def _workspace_slots(mode: str, reset_after: bool) -> int:
    """Gate activations saved per step: LSTM i, f, g, o; GRU r, z, n (+ h~ W_hn^T + b_hn); none for rnn."""
    if mode == "lstm":
        return 4
    if mode == "gru":
        return 4 if reset_after else 3
    return 0


def _launch_config(mode: str, hidden: int, dtype: torch.dtype, backward: bool = False) -> dict:
    block_h = max(16, triton.next_power_of_2(hidden))
    w_bytes = GATES[mode] * block_h * block_h * (8 if dtype == torch.float64 else 4)
    budget = W_ON_CHIP_BYTES_BACKWARD if backward else W_ON_CHIP_BYTES
    return dict(BLOCK_B=BLOCK_B, BLOCK_H=block_h, W_ON_CHIP=w_bytes <= budget,
                num_warps=4 if block_h <= 32 else 8)


def _flags(opts: dict, acc: torch.dtype) -> dict:
    mode = opts["mode"]
    return dict(MODE=_MODE_IDS[mode], NUM_GATES=GATES[mode],
                WS=max(1, _workspace_slots(mode, opts["reset_after"])),
                ACC=tl.float64 if acc == torch.float64 else tl.float32,
                REVERSE=opts["reverse"], RESET_AFTER=opts["reset_after"],
                HARD_SIGMOID=opts["recurrent_activation"] == "hard_sigmoid",
                RELU=opts["activation"] == "relu")


def scan_forward(gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None,
                 lengths: Tensor | None, rec_mask: Tensor | None, opts: dict, save: bool):
    """Launch the forward kernel. Inputs contiguous, on one device; w_hh's dtype is the math dtype.

    Returns out (T, B, H) in gx's dtype, h_n and c_n (B, H) in h0's dtype (c_n None unless lstm), and
    the saved buffers (hp, cp, ws) for the backward (None when ``save`` is False): hp, cp (T, B, H) the
    states entering each step, ws (T, B, WS*H) the gate activations.
    """
    mode = opts["mode"]
    steps, batch = gx.shape[:2]
    hidden = h0.shape[-1]
    acc, device = w_hh.dtype, gx.device
    out = _new((steps, batch, hidden), gx.dtype, device)
    hn = _new((batch, hidden), h0.dtype, device)
    cn = _new((batch, hidden), h0.dtype, device) if mode == "lstm" else None
    hp = cp = ws = None
    if save:
        hp = _new((steps, batch, hidden), acc, device)
        cp = _new((steps, batch, hidden), acc, device) if mode == "lstm" else None
        slots = _workspace_slots(mode, opts["reset_after"])
        ws = _new((steps, batch, slots * hidden), acc, device) if slots else None
    config = _launch_config(mode, hidden, acc)
    grid = (triton.cdiv(batch, config["BLOCK_B"]),)
    kernels().fwd[grid](
        gx, h0, c0, w_hh, b_hh, lengths, rec_mask, out, hn, cn, hp, cp, ws, steps, batch, hidden,
        HAS_LENGTHS=lengths is not None, HAS_MASK=rec_mask is not None, HAS_BIAS=b_hh is not None,
        SAVE=save, **_flags(opts, acc), **config)
    return out, hn, cn, (hp, cp, ws)


def scan_backward(w_hh: Tensor, lengths: Tensor | None, rec_mask: Tensor | None, out: Tensor,
                  saved: tuple, dout: Tensor, dhn: Tensor, dcn: Tensor | None, opts: dict,
                  need_weight_grad: bool, has_bias: bool):
    """Launch the backward kernel, then the weight-gradient GEMM.

    Returns dgx (T, B, G*H) in the math dtype, dh0, dc0 (B, H) (dc0 None unless lstm), dw_hh (G*H, H)
    and db_hh (G*H,) (None when not needed).
    """
    mode = opts["mode"]
    hp, cp, ws = saved
    steps, batch, hidden = out.shape
    gates = GATES[mode]
    acc, device = w_hh.dtype, out.device
    dgx = _new((steps, batch, gates * hidden), acc, device)
    dgn = _new((steps, batch, hidden), acc, device) if mode == "gru" and opts["reset_after"] else None
    dh0 = _new((batch, hidden), dhn.dtype, device)
    dc0 = _new((batch, hidden), dcn.dtype, device) if mode == "lstm" else None
    config = _launch_config(mode, hidden, acc, backward=True)
    grid = (triton.cdiv(batch, config["BLOCK_B"]),)
    kernels().bwd[grid](
        w_hh, lengths, rec_mask, out, hp, cp, ws, dout, dhn, dcn, dgx, dgn, dh0, dc0,
        steps, batch, hidden, HAS_LENGTHS=lengths is not None, HAS_MASK=rec_mask is not None,
        **_flags(opts, acc), **config)

    dw_hh = db_hh = None
    if need_weight_grad:
        # dW_hh = sum over all T*B rows of dG^T h~: one GEMM after the loop (deterministic, no atomics)
        rows = steps * batch
        h_in = hp if rec_mask is None else hp * rec_mask
        h_in = h_in.reshape(rows, hidden)
        if mode == "gru":
            d_rz = dgx[..., : 2 * hidden].reshape(rows, 2 * hidden)
            if opts["reset_after"]:
                d_n, x_n = dgn.reshape(rows, hidden), h_in      # n's matmul is h~ W_hn^T, scaled by r after
            else:
                d_n = dgx[..., 2 * hidden:].reshape(rows, hidden)
                x_n = ws[..., :hidden].reshape(rows, hidden) * h_in   # n's matmul input is r * h~
            dw_hh = torch.cat([d_rz.t() @ h_in, d_n.t() @ x_n])
            db_hh = torch.cat([d_rz.sum(0), d_n.sum(0)]) if has_bias else None
        else:
            d_all = dgx.reshape(rows, gates * hidden)
            dw_hh = d_all.t() @ h_in
            db_hh = d_all.sum(0) if has_bias else None
    return dgx, dh0, dc0, dw_hh, db_hh


# ----------------------------------------------------------------------------------------------------
# autograd

class _TritonScan(torch.autograd.Function):
    """Differentiable w.r.t. gx, h0, c0, w_hh and b_hh (not lengths or rec_mask). Returns (out, h_n)
    or, for lstm, (out, h_n, c_n)."""

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, opts):
        out, hn, cn, saved = scan_forward(gx, h0, c0, w_hh, b_hh, lengths, rec_mask, opts, save=True)
        ctx.opts, ctx.gx_dtype, ctx.has_bias = opts, gx.dtype, b_hh is not None
        ctx.save_for_backward(w_hh, lengths, rec_mask, out, *saved)
        return (out, hn, cn) if opts["mode"] == "lstm" else (out, hn)

    @staticmethod
    def backward(ctx, dout, dhn, *rest):
        w_hh, lengths, rec_mask, out, hp, cp, ws = ctx.saved_tensors
        dcn = rest[0].contiguous() if rest else None
        # the weight GEMM must run in the math dtype even when the forward ran under autocast
        with torch.autocast(device_type=out.device.type, enabled=False):
            dgx, dh0, dc0, dw_hh, db_hh = scan_backward(
                w_hh, lengths, rec_mask, out, (hp, cp, ws), dout.contiguous(), dhn.contiguous(), dcn,
                ctx.opts, need_weight_grad=ctx.needs_input_grad[3] or ctx.needs_input_grad[4],
                has_bias=ctx.has_bias)
        return dgx.to(ctx.gx_dtype), dh0, dc0, dw_hh, db_hh, None, None, None


# ----------------------------------------------------------------------------------------------------
# public function

def _check_inputs(mode, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, activation, recurrent_activation):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if recurrent_activation not in RECURRENT_ACTIVATIONS:
        raise ValueError(f"recurrent_activation must be one of {RECURRENT_ACTIVATIONS}, "
                         f"got {recurrent_activation!r}")
    if gx.dim() != 3:
        raise ValueError(f"gx must be (T, B, G*H), got shape {tuple(gx.shape)}")
    steps, batch, width = gx.shape
    if h0.dim() != 2 or h0.shape[0] != batch:
        raise ValueError(f"h0 must be (B, H) = ({batch}, H), got shape {tuple(h0.shape)}")
    hidden = h0.shape[1]
    gates = GATES[mode]
    expected = {"gx": (gx, (steps, batch, gates * hidden)), "w_hh": (w_hh, (gates * hidden, hidden))}
    if b_hh is not None:
        expected["b_hh"] = (b_hh, (gates * hidden,))
    if mode == "lstm":
        if c0 is None:
            raise ValueError("mode 'lstm' needs c0 (B, H), got None")
        expected["c0"] = (c0, (batch, hidden))
    if rec_mask is not None:
        expected["rec_mask"] = (rec_mask, (batch, hidden))
    if lengths is not None:
        expected["lengths"] = (lengths, (batch,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for mode {mode!r}, got {tuple(tensor.shape)}")
    for name, tensor in (("h0", h0), ("w_hh", w_hh), *((k, v[0]) for k, v in expected.items())):
        if tensor.device != gx.device:
            raise ValueError(f"{name} is on {tensor.device}, expected gx's device {gx.device}")
    if w_hh.dtype not in STATE_DTYPES:
        raise ValueError(f"w_hh dtype must be one of {STATE_DTYPES}, got {w_hh.dtype}")
    for name, tensor in (("h0", h0), ("c0", c0 if mode == "lstm" else None), ("b_hh", b_hh),
                         ("rec_mask", rec_mask)):
        if tensor is not None and tensor.dtype != w_hh.dtype:
            raise ValueError(f"{name} dtype must equal w_hh's ({w_hh.dtype}), got {tensor.dtype}")
    if gx.dtype == torch.float64 and w_hh.dtype != torch.float64:
        raise ValueError(f"gx is float64 but w_hh is {w_hh.dtype}; use one dtype for both")
    if lengths is not None and (lengths.dtype.is_floating_point or lengths.dtype == torch.bool):
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")


def recurrent_scan_triton(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                          b_hh: Tensor | None, *, lengths: Tensor | None = None,
                          rec_mask: Tensor | None = None, reverse: bool = False, activation: str = "tanh",
                          recurrent_activation: str = "sigmoid",
                          reset_after: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer, one direction over a whole sequence on the Triton kernels.

    Same signature and numbers as :func:`seqtorch.reference.recurrent_scan_reference`:

    Args:
        mode: "rnn", "lstm" or "gru".
        gx: (T, B, G*H) input projection (G = 1, 4, 3), float32/float64 (float16/bfloat16 under autocast).
        h0: (B, H). c0: (B, H) for "lstm", else ignored. w_hh: (G*H, H). b_hh: (G*H,) or None.
            h0, c0, w_hh, b_hh, rec_mask share one dtype, float32 or float64: the math dtype.
        lengths: (B,) integer tensor on gx's device, or None. Steps at or past a sequence's length keep
            its state and output zeros (the reverse direction starts at each sequence's last step).
        rec_mask: (B, H) recurrent-dropout mask applied to h where it enters the matmul, or None.
        reverse, activation ("tanh"/"relu"), recurrent_activation ("sigmoid"/"hard_sigmoid"),
        reset_after (GRU): as in the reference.

    Returns:
        output (T, B, H) in gx's dtype, h_n (B, H), c_n (B, H) for "lstm" else None.

    Differentiable w.r.t. gx, h0, c0, w_hh and b_hh. Raises ValueError for malformed inputs and
    RuntimeError with :func:`supports_triton`'s reason for inputs the kernels do not cover.
    """
    _check_inputs(mode, gx, h0, c0, w_hh, b_hh, lengths, rec_mask, activation, recurrent_activation)
    reason = supports_triton(gx, h0.shape[-1])
    if reason is not None:
        raise RuntimeError(f"the Triton scan cannot run this input: {reason}")
    opts = dict(mode=mode, reverse=bool(reverse), activation=activation,
                recurrent_activation=recurrent_activation, reset_after=bool(reset_after))
    c0 = c0.contiguous() if mode == "lstm" else None
    args = (gx.contiguous(), h0.contiguous(), c0, w_hh.contiguous(),
            None if b_hh is None else b_hh.contiguous(),
            None if lengths is None else lengths.to(torch.int64).contiguous(),
            None if rec_mask is None else rec_mask.contiguous())
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:5])
    if not needs_grad:
        out, hn, cn, _ = scan_forward(*args, opts, save=False)
        return out, hn, cn
    results = _TritonScan.apply(*args, opts)
    return (results[0], results[1], results[2] if mode == "lstm" else None)


# ----------------------------------------------------------------------------------------------------
# backend interface

_CELLS = {"rnn": ("rnn", True), "lstm": ("lstm", True), "gru": ("gru", True), "gru_reset_before": ("gru", False)}


def has_cell(cell: str) -> bool:
    return cell in _CELLS


def supports(opts, gx: Tensor, hidden_size: int) -> str | None:
    if opts.recurrent_activation == "hardsigmoid":
        return "recurrent_activation 'hardsigmoid' has no Triton kernel yet"
    return supports_triton(gx, hidden_size)


def scan(opts, gx, states, weights, lengths, rec_mask):
    mode, reset_after = _CELLS[opts.cell]
    rec = "hard_sigmoid" if opts.recurrent_activation == "hard_sigmoid_keras2" else opts.recurrent_activation
    out, h, c = recurrent_scan_triton(mode, gx, states[0], states[1] if mode == "lstm" else None, weights[0],
                                      weights[1], lengths=lengths, rec_mask=rec_mask, reverse=opts.reverse,
                                      activation=opts.activation, recurrent_activation=rec,
                                      reset_after=reset_after)
    return out, ((h, c) if mode == "lstm" else (h,))
