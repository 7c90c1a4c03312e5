"""The ``triton`` backend's scan for large hidden sizes: per step one cuBLAS GEMM, then one Triton launch.

Where the persistent kernels (:mod:`.persistent_kernels`) would have to hold a (16, H) state block and
W_hh's tiles in one program (H > :data:`.persistent.MAX_HIDDEN`), this loop alternates, as haste and
FlashRNN do: ``torch.mm`` computes the step's recurrent product for all rows at once (cuBLAS on CUDA;
``torch.mm``'s precision, so TF32 only where ``torch.backends.cuda.matmul.allow_tf32`` allows it), then
one launch of :mod:`.step_kernels` does the cell's pointwise math and the state update over
(batch, hidden) blocks; with resets or recurrent dropout, the h the product reads, ``(restart ? h_0 : h) *
rec_mask``, is written to HM first (:func:`_product_input`). The backward mirrors it: per step one launch
(finishing the previous step's gradient, then this step's cell backward) and one GEMM ``dP @ W_hh``; the
reset states' gradients are summed in (B, width) buffers along the way. The weights' gradients are one GEMM
over all steps afterwards (:mod:`seqtorch.ops.autograd`), as on every backend. Buffers as
:mod:`seqtorch.ops.contract`, so it is interchangeable with the persistent kernels and tested against the
same reference (in Triton's interpreter on CPU, with :data:`.persistent.MAX_HIDDEN` lowered).

A cell runs here when :func:`supports_cell` says so: at most one recurrent product, of ``h~`` and all of
W_hh (every built-in cell but the reset-before GRU and the projected LSTM, whose second product needs the
first stage's result inside the step).

CUDA graphs (``SEQTORCH_CUDA_GRAPHS=1``, :data:`CUDA_GRAPHS`; off by default until a GPU has measured
them, ``benchmarks/gpu_check.sh`` times both): at T=500 the loop is 1000 launches, and their host-side
cost can exceed the work of a small step. With the flag, each scan shape's loop (forward and backward
apart) is captured once into one CUDA graph and replayed (:class:`CapturedLoop`): the call's tensors are
copied into the static buffers the graph reads, and its outputs, the graph's own memory, are cloned out,
so two calls never share memory. Not inside another capture (``torch.compile(mode="reduce-overhead")``) or
a trace.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

import torch
import triton
from torch import Tensor
from torch.utils import _pytree

from ...recurrent_cells import Cell
from .. import contract
from ..contract import Kernel, ScanInputs, ScanOptions
from .common import (MAX_GRAD_BUFFERS, MAX_SAVED, cell_flags, cell_refusal, cell_weights, given_resets, new_buffer,
                     reset_args, slot_pointers, slot_widths, step_bytes, supports_device, zoneout_args)
from .step_kernels import step_kernels

BLOCK_H = 128          # columns per program for a cell whose step is separable by column
BLOCK_B = 16           # rows per program (at most; fewer when a program holds whole rows)
ROW_ELEMENTS = 4096    # a whole-row program's (BLOCK_B, BLOCK_H) tile holds at most this many


def supports_cell(spec: Cell) -> str | None:
    """Why ``spec`` cannot run in the alternating loop, or None if it can."""
    cell = spec.name
    reason = cell_refusal(spec)
    if reason is not None:
        return reason
    if len(spec.products) > 1:
        return (f"cell {cell!r} has {len(spec.products)} recurrent products per step (the second needs the "
                f"first stage's result inside the step); the per-step kernels take one")
    if spec.products and (spec.products[0].input != "h_in" or spec.products[0].rows is not None):
        return f"cell {cell!r}'s product is not h~ @ W_hh^T over all of W_hh's rows"
    return None


def supports(opts: ScanOptions, inputs: ScanInputs) -> str | None:
    """Why the alternating loop cannot run this scan, or None: the Triton kernels' device rule
    (:func:`.common.supports_device`) and a cell it takes (:func:`supports_cell`). It serves the hidden sizes
    above :data:`.persistent.MAX_HIDDEN`; below, the persistent kernels come first in the dispatch."""
    return supports_device(inputs.gx) or supports_cell(opts.cell)


def _blocks(spec: Cell, batch: int, hidden: int) -> tuple[int, int]:
    """(BLOCK_B, BLOCK_H): column blocks of :data:`BLOCK_H`, or whole rows for a cell that reduces over them."""
    if spec.reduces_over_hidden:
        block_h = triton.next_power_of_2(hidden)
        return max(1, min(BLOCK_B, ROW_ELEMENTS // block_h)), block_h
    return BLOCK_B, min(BLOCK_H, triton.next_power_of_2(hidden))


def _slots(t: int, reverse: bool) -> tuple[int, int]:
    """The history slots step t reads and writes."""
    return (t + 1, t) if reverse else (t, t + 1)


def forward_constexprs(opts: ScanOptions, batch: int, hidden: int, dtype: torch.dtype, *, lengths: bool,
                       step_mask: bool, restart: bool, bias: bool, save: bool,
                       zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The forward step kernel's constexpr arguments and warp count for a launch with these options (also
    what ``tests/ops/test_triton_compile.py`` compiles for the GPU): which of ``lengths``, the (T, B) ``step_mask``
    and ``restart`` are given, and so on."""
    block_b, block_h = _blocks(opts.cell, batch, hidden)
    return dict(CELL_FWD=step_kernels().cells[opts.cell.name][0], HAS_LENGTHS=lengths, HAS_STEP_MASK=step_mask,
                HAS_RESTART=restart, HAS_BIAS=bias, SAVE=save, ZONEOUT_H=zoneout[0], ZONEOUT_C=zoneout[1],
                BLOCK_B=block_b, BLOCK_H=block_h, **cell_flags(opts, dtype)), _warps(block_b, block_h)


def backward_constexprs(opts: ScanOptions, batch: int, hidden: int, dtype: torch.dtype, *, lengths: bool,
                        step_mask: bool, restart: bool, rec_mask: bool, dh: bool, dc: bool, finish: bool, step: bool,
                        zoneout: tuple[bool, bool] = (False, False)) -> tuple[dict, int]:
    """The backward step kernel's constexpr arguments and warp count (as :func:`forward_constexprs`, with the
    recurrent-dropout ``rec_mask``)."""
    block_b, block_h = _blocks(opts.cell, batch, hidden)
    return dict(CELL_BWD=step_kernels().cells[opts.cell.name][1], HAS_LENGTHS=lengths, HAS_STEP_MASK=step_mask,
                HAS_RESTART=restart, HAS_REC_MASK=rec_mask, HAS_DH=dh, HAS_DC=dc, ZONEOUT_H=zoneout[0],
                ZONEOUT_C=zoneout[1], FINISH=finish, STEP=step, BLOCK_B=block_b, BLOCK_H=block_h,
                **cell_flags(opts, dtype)), _warps(block_b, block_h)


def _warps(block_b: int, block_h: int) -> int:
    return 4 if block_b * block_h <= 2048 else 8


def _rows(buffers: list[Tensor], t: int, dummy: Tensor, slots: int) -> list[Tensor]:
    """Step t's rows of per-step buffers (T, B, width) in ``slots`` kernel arguments (``dummy`` elsewhere)."""
    return slot_pointers([b[t] if b.numel() else b for b in buffers], dummy, slots)


# ----------------------------------------------------------------------------------------------------
# CUDA graphs

#: Capture each scan shape's per-step loop into a CUDA graph and replay it (module docstring).
CUDA_GRAPHS = os.environ.get("SEQTORCH_CUDA_GRAPHS", "0").strip() == "1"
MAX_CAPTURED = 16  # loops kept captured (each holds its static buffers and the graph's memory), least recent out


class CudaGraphs:
    """torch.cuda's graph API as :class:`CapturedLoop` uses it (tests on CPU put a recording stand-in with the
    same two members in :data:`GRAPHS`)."""

    device_type = "cuda"

    @staticmethod
    def capture(run: Callable[[], list[Tensor]]) -> tuple[list[Tensor], Callable[[], None]]:
        """Run ``run`` once to warm up (Triton compiles, cuBLAS creates its handle and workspace: not things
        a capture may do), then capture it; its outputs (the graph's memory) and the replay."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            run()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = run()
        return outputs, graph.replay


GRAPHS = CudaGraphs()


class CapturedLoop:
    """One scan shape's loop, captured once: static copies of its tensor arguments, the graph's outputs."""

    def __init__(self, loop: Callable[..., list[Tensor]], leaves: list, spec) -> None:
        self.static = [leaf.clone() if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        self.outputs, self.replay = GRAPHS.capture(lambda: loop(*_pytree.tree_unflatten(self.static, spec)))

    def __call__(self, leaves: list) -> list[Tensor]:
        for static, leaf in zip(self.static, leaves):
            if isinstance(leaf, Tensor):
                static.copy_(leaf)
        self.replay()
        return [output.clone() for output in self.outputs]


_CAPTURED: OrderedDict = OrderedDict()


def _graphs_serve(like: Tensor) -> bool:
    """Whether this call replays a graph: the flag, the graphs' device, and no capture or trace around it."""
    return (CUDA_GRAPHS and like.device.type == GRAPHS.device_type and not torch.compiler.is_compiling()
            and not (like.is_cuda and torch.cuda.is_current_stream_capturing()))


def _run(like: Tensor, loop: Callable[..., list[Tensor]], *args) -> list[Tensor]:
    """``loop(*args)``, replayed from its CUDA graph where :func:`_graphs_serve` says so for ``like`` (one of
    the arguments). The graph's key is everything its launches baked in but the buffers' contents: the
    function, the argument structure, the non-tensor arguments, each tensor's shape, dtype and device."""
    if not _graphs_serve(like):
        return loop(*args)
    leaves, spec = _pytree.tree_flatten(args)
    key = (loop.__name__, str(spec), *((leaf.shape, leaf.dtype, leaf.device) if isinstance(leaf, Tensor) else leaf
                                       for leaf in leaves))
    captured = _CAPTURED.pop(key, None)
    if captured is None:
        captured = CapturedLoop(loop, leaves, spec)
        while len(_CAPTURED) >= MAX_CAPTURED:
            _CAPTURED.popitem(last=False)
    _CAPTURED[key] = captured
    return captured(leaves)


# ----------------------------------------------------------------------------------------------------
# the loops

def _product_input(h: Tensor, out: Tensor, restart: Tensor | None, reset: Tensor | None,
                   rec_mask: Tensor | None) -> Tensor:
    """The h a step's product reads, ``(restart ? reset : h) * rec_mask`` (B, H), written to ``out`` (its HM
    rows); ``restart`` (B,) bool, the step's row of the (T, B) flags, with ``reset`` (B, H), or None, as is
    ``rec_mask`` (not both)."""
    source = h if restart is None else torch.where(restart.unsqueeze(-1), reset, h, out=out)
    return source if rec_mask is None else torch.mul(source, rec_mask, out=out)


def forward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
            save: bool, gx: Tensor, states: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
            mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
            keep: list[Tensor | None]) -> list[Tensor]:
    """The forward op: T steps of (GEMM, launch); outputs as :mod:`seqtorch.ops.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    states = [s.contiguous() for s in states]
    # the caller chose the dtype: autocast must not turn the products into bf16 ones
    with torch.autocast(device_type=gx.device.type, enabled=False):
        return _run(gx, _forward, opts, save, gx.contiguous(), states, list(weights), lengths, mask, restart,
                    reset_args(given_resets(reset_states) or states, restart), rec_mask, list(keep))


def _forward(opts, save, gx, states, weights, lengths, mask, restart, resets, rec_mask, zoneout):
    spec = opts.cell
    K = len(spec.states)
    has_c = K == 2
    T, B = gx.shape[0], gx.shape[1]
    H = spec.hidden_size(weights)
    w_hh, b_hh = (w.contiguous() if w is not None else None for w in weights[:2])
    extra, cargs = cell_weights(spec, weights, opts.cell_args)
    zh, zc = zoneout_args(zoneout, K)
    new = lambda shape: new_buffer(shape, gx.dtype, gx.device)  # noqa: E731
    has_hm = rec_mask is not None or restart is not None
    outputs = [new(shape) for shape in contract.forward_shapes(spec, opts, gx, states, has_hm, save)]
    S_h = outputs[0]
    saved = outputs[K + 2:] if save else []
    hm = (outputs[K] if save else new((B, H))) if has_hm else None
    product = new((B, spec.gates * H)) if spec.products else gx
    w_t = w_hh.t()  # a transposed view: cuBLAS reads it as it is
    # without save, c takes turns between the output and a scratch buffer, so that the last step writes the output
    c_turns = None if save or not has_c else (outputs[1], new((B, H)))
    flags, num_warps = forward_constexprs(opts, B, H, w_hh.dtype, lengths=lengths is not None,
                                          step_mask=mask is not None, restart=restart is not None,
                                          bias=b_hh is not None, save=save, zoneout=(zh is not None, zc is not None))
    grid = (triton.cdiv(B, flags["BLOCK_B"]), triton.cdiv(H, flags["BLOCK_H"]))
    widths = slot_widths(saved, MAX_SAVED)
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    restart = None if restart is None else restart.to(torch.bool).contiguous()
    rec_mask = None if rec_mask is None else rec_mask.contiguous()
    step_flags = (step_bytes(mask), step_bytes(restart))

    first = T if opts.reverse else 0
    S_h[first].copy_(states[0])
    c_prev = None
    if has_c:
        c_prev = states[1]
        if save:
            outputs[1][first].copy_(states[1])
    order = range(T - 1, -1, -1) if opts.reverse else range(T)
    kernel = step_kernels().fwd
    for i, t in enumerate(order):
        p, n = _slots(t, opts.reverse)
        h_in = S_h[p]
        if hm is not None:
            h_in = _product_input(S_h[p], hm[t] if save else hm, None if restart is None else restart[t], resets[0],
                                  rec_mask)
        if spec.products:
            torch.mm(h_in, w_t, out=product)
        c_next = None
        if has_c:
            c_next = outputs[1][n] if save else c_turns[(T - 1 - i) % 2]
        kernel[grid](gx[t], product, w_hh, b_hh, *extra, cargs, lengths, *step_flags, t, *resets,
                     None if zh is None else zh[t], None if zc is None else zc[t],
                     h_in, S_h[p], c_prev, S_h[n], c_next, *_rows(saved, t, gx, MAX_SAVED),
                     B, H, *widths, **flags, num_warps=num_warps)
        c_prev = c_next
    return outputs


def backward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
             grads: list[Tensor | None], saved: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
             mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
             keep: list[Tensor | None]) -> list[Tensor]:
    """The backward op: T steps of (launch, GEMM) and a last launch; outputs as
    :mod:`seqtorch.ops.contract` says."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    with torch.autocast(device_type=saved[0].device.type, enabled=False):
        return _run(saved[0], _backward, opts, list(grads), [s.contiguous() for s in saved], list(weights), lengths,
                    mask, restart, given_resets(reset_states), rec_mask, list(keep))


def _backward(opts, grads, saved, weights, lengths, mask, restart, reset_states, rec_mask, zoneout):
    spec = opts.cell
    K = len(spec.states)
    has_c = K == 2
    zh, zc = zoneout_args(zoneout, K)
    w_hh = weights[0].contiguous()
    extra, cargs = cell_weights(spec, weights, opts.cell_args)
    S_h = saved[0]
    S_c = saved[1] if has_c else None
    T, B = S_h.shape[0] - 1, S_h.shape[1]
    H = spec.hidden_size(weights)
    like = S_h
    own_resets = len(reset_states) > 0
    outputs = [new_buffer(shape, like.dtype, like.device)
               for shape in contract.backward_shapes(spec, saved, weights, own_resets)]
    dgx, D_h = outputs[0], outputs[1]
    D_c = outputs[2] if has_c else None
    grad_buffers = outputs[1 + K * (2 if own_resets else 1):]
    named = dict(zip(spec.grad_buffer_names(), grad_buffers))
    hm, cell_saved = saved[K], saved[K + 2:]
    d_h = None if grads[0] is None else grads[0].contiguous()
    d_c = None if not has_c or grads[1] is None else grads[1].contiguous()
    first, last = (T, 0) if opts.reverse else (0, T)
    # the carried gradients live in the outputs dh0, dc0 from the start
    D_h.copy_(d_h[last]) if d_h is not None else D_h.zero_()
    if has_c:
        D_c.copy_(d_c[last]) if d_c is not None else D_c.zero_()
    resets = reset_args(reset_states or [s[first] for s in saved[:K]], restart)
    # what restarting rows pass to the states they read: the reset states' gradients, or added to dh0, dc0
    D_r = [None, None]
    if restart is not None:
        D_r = outputs[1 + K:1 + 2 * K] if own_resets else [torch.empty_like(D) for D in outputs[1:1 + K]]
        D_r = [D.zero_() for D in D_r] + [None] * (2 - K)
    product = new_buffer((B, H), like.dtype, like.device) if spec.products else like
    options = dict(lengths=lengths is not None, step_mask=mask is not None, restart=restart is not None,
                   rec_mask=rec_mask is not None, dh=d_h is not None, dc=d_c is not None,
                   zoneout=(zh is not None, zc is not None))
    widths = slot_widths(cell_saved, MAX_SAVED) + slot_widths(grad_buffers, MAX_GRAD_BUFFERS)
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    step_flags = (step_bytes(mask), step_bytes(restart))
    rec_mask = None if rec_mask is None else rec_mask.contiguous()
    kernel = step_kernels().bwd

    def launch(t: int | None, t_done: int | None) -> None:
        """Finish step t_done (None: nothing to finish), then run step t (None: none left)."""
        if t is None:
            rows = dict(h_prev=like, c_prev=None, h_in=like, h_next=like, dgx=like)
            per_step, grad_rows, zone = [like] * MAX_SAVED, [like] * MAX_GRAD_BUFFERS, (None,) * 2
        else:
            p, n = _slots(t, opts.reverse)
            rows = dict(h_prev=S_h[p], c_prev=None if S_c is None else S_c[p],
                        h_in=hm[t] if hm.numel() else S_h[p], h_next=S_h[n], dgx=dgx[t])
            per_step = _rows(cell_saved, t, like, MAX_SAVED)
            grad_rows = _rows(grad_buffers, t, like, MAX_GRAD_BUFFERS)
            zone = (None if zh is None else zh[t], None if zc is None else zc[t])
        upstream = (None, None)  # the upstream gradients of the slot step t_done read
        if t_done is not None:
            p_done = _slots(t_done, opts.reverse)[0]
            upstream = (None if d_h is None else d_h[p_done], None if d_c is None else d_c[p_done])
        flags, num_warps = backward_constexprs(opts, B, H, w_hh.dtype, finish=t_done is not None, step=t is not None,
                                               **options)
        grid = (triton.cdiv(B, flags["BLOCK_B"]), triton.cdiv(H, flags["BLOCK_H"]))
        kernel[grid](w_hh, *extra, cargs, lengths, *step_flags, rec_mask, 0 if t is None else t,
                     0 if t_done is None else t_done, *zone, *resets,
                     rows["h_prev"], rows["c_prev"], rows["h_in"], rows["h_next"], *per_step, *upstream,
                     product, D_h, D_c, *D_r, rows["dgx"], *grad_rows, B, H, *widths, **flags, num_warps=num_warps)

    order = list(range(T)) if opts.reverse else list(range(T - 1, -1, -1))
    t_done = None
    for t in order:
        launch(t, t_done)
        if spec.products:  # the product's share of the gradient of the state step t read
            d_product = named["dP0"][t] if "dP0" in named else dgx[t]
            torch.mm(d_product, w_hh, out=product)
        t_done = t
    launch(None, t_done)
    if restart is not None and not own_resets:  # the reset rows read the initial states
        for D, D_reset in zip(outputs[1:1 + K], D_r):
            D.add_(D_reset)
    return outputs


FORWARD, BACKWARD = contract.define("triton_alternating", forward, backward)
KERNEL = Kernel("triton_alternating", FORWARD, BACKWARD)
