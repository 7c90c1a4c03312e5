"""The persistent Triton scan: one kernel launch per layer and direction, with a hand-written backward.

Layers, left to right: kernels (:mod:`.persistent_kernels`, each cell's step in its ``triton.py``) ->
launchers (:func:`forward` / :func:`backward`: allocate the op contract's buffers, set the grid), which
are the ``seqtorch::scan_forward_triton`` / ``scan_backward_triton`` ops -> :mod:`seqtorch.ops.autograd`
(the same differentiable scan as every backend: first order through :func:`backward`, the rest through the
reference; :mod:`seqtorch.ops.dispatch` registers it and decides when this implementation serves).

What it covers (:func:`supports` says why not; what the Triton backend covers as a whole, dtypes included,
is in :mod:`seqtorch.ops.triton`): every cell with Triton code and every option of the reference, for
hidden sizes 1 to :data:`MAX_HIDDEN` (128). A program holds a (16, H) state block and the G tiles of W_hh
(H padded to a power of two, at least 16); W_hh stays on chip for the whole sequence when its tiles fit
:data:`W_ON_CHIP_BYTES` (:data:`W_ON_CHIP_BYTES_BACKWARD` in the backward), else it is re-read from L2 each
step. Larger hidden sizes run on the alternating loop (:mod:`.alternating`).
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from ...recurrent_cells import Cell
from .. import contract
from ..contract import Kernel, ScanInputs, ScanOptions
from .common import (MAX_GRAD_BUFFERS, MAX_SAVED, cell_flags, cell_refusal, cell_weights, given_resets, new_buffer,
                     reset_args, slot_pointers, slot_widths, step_bytes, supports_device, zoneout_args)
from .persistent_kernels import kernels

MAX_HIDDEN = 128
W_ON_CHIP_BYTES = 64 * 1024     # forward: W_hh tiles kept on chip across the time loop up to this size
# backward: smaller. Triton 3.9's LLVM (SLP vectorizer) aborts compiling the LSTM backward for sm_90 with
# W_hh held across the loop at H = 32 and 64 (16 and 64 KiB); with per-step reloads it compiles.
W_ON_CHIP_BYTES_BACKWARD = 8 * 1024
BLOCK_B = 16                    # batch rows per program (tl.dot needs at least 16)


def supports(opts: ScanOptions, inputs: ScanInputs) -> str | None:
    """Why the persistent kernels cannot run this scan, or None: :func:`.common.supports_device`, a cell they
    run (:func:`.common.cell_refusal`), and 1 <= hidden_size <= :data:`MAX_HIDDEN` (above, the alternating
    loop's rule)."""
    reason = supports_device(inputs.gx)
    if reason is not None:
        return reason
    hidden_size = opts.cell.hidden_size(inputs.weights)
    reason = cell_refusal(opts.cell)
    if reason is not None:
        return reason
    if hidden_size < 1:
        return f"hidden_size must be at least 1, got {hidden_size}"
    if hidden_size > MAX_HIDDEN:
        return f"hidden_size {hidden_size} is above what the persistent kernel covers ({MAX_HIDDEN})"
    return None


# ----------------------------------------------------------------------------------------------------
# launchers: the op pair

def _launch_config(spec: Cell, hidden: int, dtype: torch.dtype, backward: bool = False) -> dict:
    block_h = max(16, triton.next_power_of_2(hidden))
    w_bytes = (spec.gates * block_h if spec.products else 1) * block_h * (8 if dtype == torch.float64 else 4)
    budget = W_ON_CHIP_BYTES_BACKWARD if backward else W_ON_CHIP_BYTES
    return dict(BLOCK_B=BLOCK_B, BLOCK_H=block_h, W_ON_CHIP=w_bytes <= budget,
                num_warps=4 if block_h <= 32 else 8)


def forward_constexprs(opts: ScanOptions, hidden: int, dtype: torch.dtype, *, lengths: bool, step_mask: bool,
                       restart: bool, rec_mask: bool, bias: bool, save: bool,
                       zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The forward kernel's constexpr arguments and warp count for a launch with these options (also what
    ``tests/ops/test_triton_compile.py`` compiles for the GPU): which of ``lengths``, the (T, B) ``step_mask``,
    ``restart`` and the recurrent-dropout ``rec_mask`` are given, and so on."""
    config = _launch_config(opts.cell, hidden, dtype)
    num_warps = config.pop("num_warps")
    return dict(CELL_FWD=kernels().cells[opts.cell.name][0], HAS_LENGTHS=lengths, HAS_STEP_MASK=step_mask,
                HAS_RESTART=restart, HAS_REC_MASK=rec_mask, HAS_BIAS=bias, SAVE=save, ZONEOUT_H=zoneout[0],
                ZONEOUT_C=zoneout[1], REVERSE=opts.reverse, **cell_flags(opts, dtype), **config), num_warps


def backward_constexprs(opts: ScanOptions, hidden: int, dtype: torch.dtype, *, lengths: bool, step_mask: bool,
                        restart: bool, own_resets: bool, rec_mask: bool, dh: bool, dc: bool,
                        zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The backward kernel's constexpr arguments and warp count (as :func:`forward_constexprs`; ``own_resets``:
    the scan has reset states of its own, whose gradients are outputs of their own)."""
    config = _launch_config(opts.cell, hidden, dtype, backward=True)
    num_warps = config.pop("num_warps")
    return dict(CELL_BWD=kernels().cells[opts.cell.name][1], HAS_LENGTHS=lengths, HAS_STEP_MASK=step_mask,
                HAS_RESTART=restart, OWN_RESETS=own_resets, HAS_REC_MASK=rec_mask, HAS_DH=dh, HAS_DC=dc,
                ZONEOUT_H=zoneout[0], ZONEOUT_C=zoneout[1], REVERSE=opts.reverse, **cell_flags(opts, dtype),
                **config), num_warps


def forward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
            save: bool, gx: Tensor, states: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
            mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
            keep: list[Tensor | None]) -> list[Tensor]:
    """The forward op: launch the forward kernel; outputs as :mod:`seqtorch.ops.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    spec = opts.cell
    K = len(spec.states)
    w_hh, b_hh = (w.contiguous() if w is not None else None for w in weights[:2])
    extra, cargs = cell_weights(spec, list(weights), cell_args)
    zh, zc = zoneout_args(keep, K)
    gx, states = gx.contiguous(), [s.contiguous() for s in states]
    outputs = [new_buffer(shape, gx.dtype, gx.device) for shape in
               contract.forward_shapes(spec, opts, gx, states, rec_mask is not None or restart is not None, save)]
    steps, batch, hidden, proj = gx.shape[0], gx.shape[1], spec.hidden_size(weights), states[0].shape[-1]
    has_c = K == 2
    hm, u, saved = (outputs[K], outputs[K + 1], outputs[K + 2:]) if save else (gx, gx, [])
    pointers, widths = slot_pointers(saved, gx, MAX_SAVED), slot_widths(saved, MAX_SAVED)
    resets = reset_args(given_resets(reset_states) or states, restart)
    constexprs, num_warps = forward_constexprs(opts, hidden, w_hh.dtype, lengths=lengths is not None,
                                               step_mask=mask is not None, restart=restart is not None,
                                               rec_mask=rec_mask is not None, bias=b_hh is not None, save=save,
                                               zoneout=(zh is not None, zc is not None))
    grid = (triton.cdiv(batch, BLOCK_B),)
    kernels().fwd[grid](
        gx, states[0], states[1] if has_c else None, w_hh, b_hh, *extra, cargs,
        None if lengths is None else lengths.to(torch.int64).contiguous(), step_bytes(mask), step_bytes(restart),
        *resets, None if rec_mask is None else rec_mask.contiguous(), zh, zc,
        outputs[0], outputs[1] if has_c and save else None, outputs[1] if has_c and not save else None,
        hm if hm.numel() else gx, u if u.numel() else gx, *pointers,
        steps, batch, hidden, proj, u.shape[-1] if u.numel() else 0, *widths, **constexprs, num_warps=num_warps)
    return outputs


def backward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
             grads: list[Tensor | None], saved: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
             mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
             keep: list[Tensor | None]) -> list[Tensor]:
    """The backward op: launch the backward kernel; outputs as :mod:`seqtorch.ops.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    spec = opts.cell
    K = len(spec.states)
    has_c = K == 2
    zh, zc = zoneout_args(keep, K)
    saved = [s.contiguous() for s in saved]
    w_hh = weights[0].contiguous()
    extra, cargs = cell_weights(spec, list(weights), cell_args)
    S_h = saved[0]
    steps, batch, hidden, proj = S_h.shape[0] - 1, S_h.shape[1], spec.hidden_size(weights), S_h.shape[2]
    own_resets = len(given_resets(reset_states)) > 0
    outputs = [new_buffer(shape, S_h.dtype, S_h.device)
               for shape in contract.backward_shapes(spec, saved, list(weights), own_resets)]
    dgx, dh0 = outputs[0], outputs[1]
    dc0 = outputs[2] if has_c else None
    d_resets = outputs[1 + K:1 + 2 * K] if own_resets else [None] * K
    grad_buffers = outputs[1 + K * (2 if own_resets else 1):]
    grad_pointers = slot_pointers(grad_buffers, S_h, MAX_GRAD_BUFFERS)
    grad_widths = slot_widths(grad_buffers, MAX_GRAD_BUFFERS)
    hm, u = saved[K], saved[K + 1]
    pointers, widths = slot_pointers(saved[K + 2:], S_h, MAX_SAVED), slot_widths(saved[K + 2:], MAX_SAVED)
    d_h = None if grads[0] is None else grads[0].contiguous()
    d_c = None if not has_c or grads[1] is None else grads[1].contiguous()
    first = steps if opts.reverse else 0  # without reset states of its own, a reset reads the initial states
    resets = reset_args(given_resets(reset_states) or [s[first] for s in saved[:K]], restart)
    constexprs, num_warps = backward_constexprs(opts, hidden, w_hh.dtype, lengths=lengths is not None,
                                                step_mask=mask is not None, restart=restart is not None,
                                                own_resets=own_resets, rec_mask=rec_mask is not None,
                                                dh=d_h is not None, dc=d_c is not None,
                                                zoneout=(zh is not None, zc is not None))
    grid = (triton.cdiv(batch, BLOCK_B),)
    kernels().bwd[grid](
        w_hh, *extra, cargs, None if lengths is None else lengths.to(torch.int64).contiguous(), step_bytes(mask),
        step_bytes(restart), *resets, None if rec_mask is None else rec_mask.contiguous(), zh, zc,
        S_h, saved[1] if has_c else None, hm if hm.numel() else S_h, u if u.numel() else S_h, *pointers,
        d_h, d_c, dgx, *grad_pointers, dh0, dc0, d_resets[0], d_resets[1] if has_c else None,
        steps, batch, hidden, proj, *widths, *grad_widths, **constexprs, num_warps=num_warps)
    return outputs


FORWARD, BACKWARD = contract.define("triton", forward, backward)
KERNEL = Kernel("triton", FORWARD, BACKWARD)
