"""The ``triton`` backend: the scan on persistent Triton kernels, with a hand-written backward.

Layers, left to right: kernels (:mod:`.triton_kernels`, each cell's step in its ``triton.py``) ->
launchers (:func:`forward` / :func:`backward`: allocate the op contract's buffers, set the grid), which
are the ``seqtorch::scan_forward_triton`` / ``scan_backward_triton`` ops -> :mod:`.autograd` (the same
differentiable scan as every backend: first order through :func:`backward`, the rest through the
reference) -> :func:`scan` / :func:`recurrent_scan_triton` (dtype policy, argument checks).

What it covers (:func:`supports` says why not, and ``backend="auto"`` then falls back to ``cpu_fused``):

* every registered cell with a ``triton.py`` (:func:`has_cell`), every option of the reference
  (lengths, reverse, rec_mask, activation tanh/relu, every recurrent_activation, no bias);
* hidden sizes 1 to :data:`MAX_HIDDEN` (128) on the persistent kernels: a program holds a (16, H) state
  block and the G tiles of W_hh (H padded to a power of two, at least 16); W_hh stays on chip for the whole
  sequence when its tiles fit :data:`W_ON_CHIP_BYTES` (:data:`W_ON_CHIP_BYTES_BACKWARD` in the backward),
  else it is re-read from L2 each step;
* any larger hidden size on the alternating loop (:mod:`.triton_alternating`: per step a cuBLAS GEMM and one
  Triton launch for the gate math), for every cell with at most one product (all but the reset-before GRU
  and the projected LSTM); :func:`implementation` is the rule;
* state, weights and math in float32 or float64 (w_hh's dtype); gx in that dtype, or float16/bfloat16
  under autocast (cast to the math dtype first; the output is returned in gx's dtype, the final states
  in the math dtype); matrix products in full precision (no TF32; the alternating loop's cuBLAS products
  follow ``torch.backends.cuda.matmul.allow_tf32``, off by default);
* CUDA tensors, or CPU tensors while ``TRITON_INTERPRET=1`` (the interpreter; slow, for tests).
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from ..recurrent_cells import Cell
from ..recurrent_cells.triton_math import GATE_IDS
from . import contract
from .contract import Kernel, ScanInputs, ScanOptions
from .triton_kernels import cell_names, interpreting, kernels

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


def has_cell(cell: Cell) -> bool:
    """Whether ``cell`` has Triton kernels (a ``triton.py`` in its folder)."""
    return cell.name in cell_names()


def supports_device(gx: Tensor) -> str | None:
    """Why no Triton kernel can run a scan on ``gx`` (T, B, G*H), or None: CUDA tensors (CPU only under
    ``TRITON_INTERPRET=1``), gx in float32/float64/float16/bfloat16, T >= 1, B >= 1, and fewer than 2**31
    elements per tensor (the kernels use 32-bit offsets). Both Triton implementations check this first."""
    if gx.device.type != "cuda" and not (gx.device.type == "cpu" and interpreting()):
        return (f"Triton kernels need CUDA tensors, got device {gx.device.type!r} "
                f"(CPU tensors run only in Triton's interpreter, TRITON_INTERPRET=1)")
    if gx.dtype not in GX_DTYPES:
        return f"dtype {gx.dtype} is not supported (supported: {', '.join(map(str, GX_DTYPES))})"
    if gx.dim() != 3 or gx.shape[0] == 0 or gx.shape[1] == 0:
        return f"needs a non-empty (T, B, G*H) input projection, got shape {tuple(gx.shape)}"
    if gx.numel() >= 2**31:
        return f"gx has {gx.numel()} elements; the kernels use 32-bit offsets (< 2**31 elements)"
    return None


def supports(opts: ScanOptions, inputs: ScanInputs) -> str | None:
    """Why the persistent kernels cannot run this scan, or None: :func:`supports_device`, a cell with a
    ``triton.py``, 1 <= hidden_size <= :data:`MAX_HIDDEN` (above, the alternating loop's rule), and no
    ``mask``/``restart`` (not in the Triton kernels yet)."""
    reason = supports_device(inputs.gx) or supports_step_inputs(inputs)
    if reason is not None:
        return reason
    hidden_size = opts.cell.hidden_size(inputs.weights)
    if not has_cell(opts.cell):
        return f"cell {opts.cell.name!r} has no Triton kernels (no triton.py in its folder)"
    if hidden_size < 1:
        return f"hidden_size must be at least 1, got {hidden_size}"
    if hidden_size > MAX_HIDDEN:
        return f"hidden_size {hidden_size} is above what the persistent kernel covers ({MAX_HIDDEN})"
    return None


def supports_step_inputs(inputs: ScanInputs) -> str | None:
    """The per-step inputs the Triton kernels take: lengths, rec_mask and zoneout (not yet mask/restart)."""
    if inputs.mask is not None or inputs.restart is not None:
        return "masks with holes and resets are not in the Triton kernels yet"
    return None


# ----------------------------------------------------------------------------------------------------
# launchers: the op pair

def _new(shape, dtype: torch.dtype, device) -> Tensor:
    buffer = torch.empty(shape, dtype=dtype, device=device)
    if POISON_NEW_BUFFERS:
        buffer.fill_(float("nan"))
    return buffer


def _launch_config(spec: Cell, hidden: int, dtype: torch.dtype, backward: bool = False) -> dict:
    block_h = max(16, triton.next_power_of_2(hidden))
    w_bytes = (spec.gates * block_h if spec.products else 1) * block_h * (8 if dtype == torch.float64 else 4)
    budget = W_ON_CHIP_BYTES_BACKWARD if backward else W_ON_CHIP_BYTES
    return dict(BLOCK_B=BLOCK_B, BLOCK_H=block_h, W_ON_CHIP=w_bytes <= budget,
                num_warps=4 if block_h <= 32 else 8)


def _flags(opts: ScanOptions, dtype: torch.dtype) -> dict:
    spec = opts.cell
    return dict(NUM_GATES=spec.gates, HAS_C=len(spec.states) == 2, W_VECTOR=len(spec.products) == 0,
                ACC=triton.language.float64 if dtype == torch.float64 else triton.language.float32,
                REVERSE=opts.reverse, RELU=opts.activation == "relu", GATE=GATE_IDS[opts.recurrent_activation])


def forward_constexprs(opts: ScanOptions, hidden: int, dtype: torch.dtype, *, lengths: bool, mask: bool,
                       bias: bool, save: bool, zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The forward kernel's constexpr arguments and warp count for a launch with these options (also what
    ``tests/test_triton_compile.py`` compiles for the GPU)."""
    config = _launch_config(opts.cell, hidden, dtype)
    num_warps = config.pop("num_warps")
    return dict(CELL_FWD=kernels().cells[opts.cell.name][0], HAS_LENGTHS=lengths, HAS_MASK=mask, HAS_BIAS=bias,
                SAVE=save, ZONEOUT_H=zoneout[0], ZONEOUT_C=zoneout[1], **_flags(opts, dtype), **config), num_warps


def backward_constexprs(opts: ScanOptions, hidden: int, dtype: torch.dtype, *, lengths: bool, mask: bool,
                        dh: bool, dc: bool, zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The backward kernel's constexpr arguments and warp count (as :func:`forward_constexprs`)."""
    config = _launch_config(opts.cell, hidden, dtype, backward=True)
    num_warps = config.pop("num_warps")
    return dict(CELL_BWD=kernels().cells[opts.cell.name][1], HAS_LENGTHS=lengths, HAS_MASK=mask, HAS_DH=dh, HAS_DC=dc,
                ZONEOUT_H=zoneout[0], ZONEOUT_C=zoneout[1], **_flags(opts, dtype), **config), num_warps


MAX_SAVED = 6          # per-step buffers a cell may save (the kernels' SV0..SV5)
MAX_GRAD_BUFFERS = 2   # per-step gradient buffers it may write (G0, G1)
MAX_EXTRA_WEIGHTS = 3  # recurrent weights after W_hh and b_hh (W2..W4)


def _buffer_args(buffers: list[Tensor], dummy: Tensor, slots: int) -> tuple[list[Tensor], list[int]]:
    """Per-step buffers in ``slots`` kernel arguments, and their widths; unused slots point at ``dummy``
    (never read or written: a cell touches only the buffers it declares)."""
    pointers = [b if b.numel() else dummy for b in buffers] + [dummy] * (slots - len(buffers))
    widths = [b.shape[-1] if b.numel() else 0 for b in buffers] + [0] * (slots - len(buffers))
    return pointers, widths


def _cell_weights(weights: list[Tensor | None], cell_args: list[float]) -> tuple[list[Tensor | None], Tensor]:
    """The weights after W_hh and b_hh in the kernels' W2..W4 (None where a cell has fewer), and the
    cell's numeric options as a tensor in W_hh's dtype (the kernels' CARGS; one 0 when it has none)."""
    extra = [None if w is None else w.contiguous() for w in weights[2:]]
    extra += [None] * (MAX_EXTRA_WEIGHTS - len(extra))
    w_hh = weights[0]
    return extra, torch.tensor(list(cell_args) or [0.0], dtype=w_hh.dtype, device=w_hh.device)


def forward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
            save: bool, gx: Tensor, states: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
            mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor], rec_mask: Tensor | None,
            zoneout: list[Tensor | None]) -> list[Tensor]:
    """The forward op: launch the forward kernel; outputs as :mod:`.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    spec = opts.cell
    K = len(spec.states)
    w_hh, b_hh = (w.contiguous() if w is not None else None for w in weights[:2])
    extra, cargs = _cell_weights(list(weights), cell_args)
    zh, zc = _zoneout_args(zoneout, K)
    gx, states = gx.contiguous(), [s.contiguous() for s in states]
    outputs = [_new(shape, gx.dtype, gx.device)
               for shape in contract.forward_shapes(spec, opts, gx, states, rec_mask is not None, save)]
    steps, batch, hidden, proj = gx.shape[0], gx.shape[1], spec.hidden_size(weights), states[0].shape[-1]
    has_c = K == 2
    hm, u, saved = (outputs[K], outputs[K + 1], outputs[K + 2:]) if save else (gx, gx, [])
    pointers, widths = _buffer_args(list(saved), gx, MAX_SAVED)
    constexprs, num_warps = forward_constexprs(opts, hidden, w_hh.dtype, lengths=lengths is not None,
                                               mask=rec_mask is not None, bias=b_hh is not None, save=save,
                                               zoneout=(zh is not None, zc is not None))
    grid = (triton.cdiv(batch, BLOCK_B),)
    kernels().fwd[grid](
        gx, states[0], states[1] if has_c else None, w_hh, b_hh, *extra, cargs,
        None if lengths is None else lengths.to(torch.int64).contiguous(),
        None if rec_mask is None else rec_mask.contiguous(), zh, zc,
        outputs[0], outputs[1] if has_c and save else None, outputs[1] if has_c and not save else None,
        hm if hm.numel() else gx, u if u.numel() else gx, *pointers,
        steps, batch, hidden, proj, *widths, **constexprs, num_warps=num_warps)
    return outputs


def backward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
             grads: list[Tensor | None], saved: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
             mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor], rec_mask: Tensor | None,
             zoneout: list[Tensor | None]) -> list[Tensor]:
    """The backward op: launch the backward kernel; outputs as :mod:`.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    spec = opts.cell
    K = len(spec.states)
    has_c = K == 2
    zh, zc = _zoneout_args(zoneout, K)
    saved = [s.contiguous() for s in saved]
    w_hh = weights[0].contiguous()
    extra, cargs = _cell_weights(list(weights), cell_args)
    S_h = saved[0]
    steps, batch, hidden, proj = S_h.shape[0] - 1, S_h.shape[1], spec.hidden_size(weights), S_h.shape[2]
    outputs = [_new(shape, S_h.dtype, S_h.device) for shape in contract.backward_shapes(spec, saved, list(weights))]
    dgx, dh0 = outputs[0], outputs[1]
    dc0 = outputs[2] if has_c else None
    grad_pointers, grad_widths = _buffer_args(outputs[1 + K:], S_h, MAX_GRAD_BUFFERS)
    hm, u = saved[K], saved[K + 1]
    pointers, widths = _buffer_args(saved[K + 2:], S_h, MAX_SAVED)
    d_h = None if grads[0] is None else grads[0].contiguous()
    d_c = None if not has_c or grads[1] is None else grads[1].contiguous()
    constexprs, num_warps = backward_constexprs(opts, hidden, w_hh.dtype, lengths=lengths is not None,
                                                mask=rec_mask is not None, dh=d_h is not None, dc=d_c is not None,
                                                zoneout=(zh is not None, zc is not None))
    grid = (triton.cdiv(batch, BLOCK_B),)
    kernels().bwd[grid](
        w_hh, *extra, cargs, None if lengths is None else lengths.to(torch.int64).contiguous(),
        None if rec_mask is None else rec_mask.contiguous(), zh, zc,
        S_h, saved[1] if has_c else None, hm if hm.numel() else S_h, u if u.numel() else S_h, *pointers,
        d_h, d_c, dgx, *grad_pointers, dh0, dc0,
        steps, batch, hidden, proj, *widths, *grad_widths, **constexprs, num_warps=num_warps)
    return outputs


def _zoneout_args(zoneout: list[Tensor | None], states: int) -> tuple[Tensor | None, Tensor | None]:
    """The zoneout coefficients of h and (LSTM) c, contiguous, or None."""
    zoneout = list(zoneout) + [None] * (2 - len(zoneout))
    return tuple(None if z is None or k >= states else z.contiguous() for k, z in enumerate(zoneout[:2]))


FORWARD, BACKWARD = contract.define("triton", forward, backward)
KERNEL = Kernel("triton", FORWARD, BACKWARD)
