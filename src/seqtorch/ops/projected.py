"""The C++ loop's inference scan with the input projection inside it: ``seqtorch::scan_projected_cpp``.

Every scan takes gx = x W_ih^T + b_ih, computed first as one GEMM over all steps (:mod:`seqtorch.functional`).
Without a backward to come that costs more than it needs to on CPU: at the book's sizes gx is 32 MB, written
out to memory and read back, and MKL's GEMM over 64000 rows of K=32 runs at half its speed on a chunk of
them. This op projects x itself, eight steps at a time, into a buffer that stays in cache
(``csrc/scan.cpp``, ``GxRows``); the numbers are those of the two-pass path to rounding (the same
products, summed in another order) and are tested against the reference like it.

When it serves (:func:`serves`, the rule in one place; :func:`seqtorch.ops.dispatch.scan_from_input` asks it,
and otherwise the caller computes gx and runs :func:`seqtorch.ops.dispatch.scan`): a scan without a mask,
resets or every step's states, on the ``auto`` or ``cpu_fused`` backend on CPU tensors of one dtype, float32
or float64, where the C++ loop has the cell and the cell's input projection is the plain one (not the
LayerNorm cells'), no gradient to compute (inference, or no_grad), and outside ``torch.compile`` tracing,
``torch.jit.trace``, ``torch.func`` transforms, forward-mode AD and autocast (:mod:`.op_rules`); and where it
pays: W_ih and the recurrent weights together at most :data:`MAX_WEIGHT_BYTES`. Each chunk reads all of W_ih
again, and past a few MB that costs more than gx's trip through memory saves. Measured on 1 thread with the
float32 products on brgemm (``csrc/gemm.h``), ratio to torch.nn: the small batch (B=16, H=256, 2 MB of
weights) 1.08x projected against 1.21x two-pass, the small language model (H=200, 1.3 MB per layer) 1.16x
either way, the medium one (H=650, 13.5 MB) 1.05x two-pass against 1.05-1.13x projected. Again after the
cheaper W^T copies and the summed rows (``csrc/scan.cpp``): the medium one 0.87x two-pass against 0.91x
projected on 1 thread, 1.06x against 1.02x on 2, so the bound stays.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..recurrent_cells.base import Cell
from . import native
from .autograd import finish
from .contract import ScanOptions
from .op_rules import eager_cpu_call

MAX_WEIGHT_BYTES = 4 * 1024 * 1024  # up to here, projecting inside the loop was measured to pay (docstring)


def serves(backend: str, use_native: bool, spec: Cell, x: Tensor, weights: list[Tensor | None],
           tensors: list[Tensor | None]) -> bool:
    """Whether :func:`scan` can run a layer's scan of ``spec`` on the input x (T, B, I) with ``weights`` (the input
    and the recurrent ones); ``tensors``: every other tensor it takes (states, recurrent-dropout mask, zoneout
    coefficients); ``use_native``: whether the C++ loop is on (:data:`seqtorch.ops.dispatch.USE_NATIVE`)."""
    if not eager_cpu_call(x):
        return False
    dtype, grad = x.dtype, torch.is_grad_enabled()
    if backend not in ("auto", "cpu_fused") or (grad and x.requires_grad):
        return False
    if type(spec).input_projection is not Cell.input_projection or not use_native:
        return False
    # every other tensor: no gradient to compute for it, on the CPU in x's dtype if it is floating (plain loops:
    # at a small size this function is a sizeable part of a layer call)
    weight_elements = 0
    for t in weights:
        if t is not None:
            weight_elements += t.numel()
    for t in (*weights, *tensors):
        if t is not None and ((grad and t.requires_grad)
                              or (t.is_floating_point() and (t.dtype != dtype or not t.is_cpu))):
            return False
    if weight_elements * x.element_size() > MAX_WEIGHT_BYTES:
        return False
    return spec.name in native.cpp_cells()  # the library's own cells (not one generated from equations)


def scan(opts: ScanOptions, x: Tensor, input_weights: tuple[Tensor | None, ...], states: tuple[Tensor, ...],
         weights: tuple[Tensor | None, ...], lengths: Tensor | None = None, rec_mask: Tensor | None = None,
         keep: tuple[Tensor | None, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction, from its input: x (T, B, I), ``input_weights`` (W_ih, b_ih or None) in the
    cell's order, the rest as :class:`~.contract.ScanInputs`. Returns output (T, B, P) (zero past each
    length) and the final states."""
    (w_ih, b_ih), weights = opts.cell.folded_inputs(input_weights, weights)
    keep = list(keep) if keep is not None else [None] * len(states)
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    # the op's own call (no Python frame: this scan is eager only); serves() has just asked for the library
    op = native.loaded().scan_projected_cpp.default._op
    outputs = op(*opts.op_args(), x, w_ih, b_ih, list(states), list(weights), lengths, rec_mask, keep)
    return finish(outputs[:len(states)], opts, lengths, None, False)
