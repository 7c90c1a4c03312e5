"""A layer's scan with its input projection and its autograd in one C++ op: ``seqtorch::scan_layer``.

When a gradient is wanted, a layer's scan through Python is the input projection (``F.linear``), the folded
bias, :class:`~.autograd.RecurrentScan` (an autograd.Function: its apply, its context, its Python backward
and the weights' gradients) and the views of the histories. At small sizes that is the whole cost: the POS
tagger of PyTorch's tutorial (``LSTM(6, 6)`` over five words) took 165 us a forward with grad, where
torch.nn's LSTM takes 94. ``seqtorch::scan_layer`` (``csrc/layer.cpp``) is one call with one autograd node
whose backward is C++ too, and runs the same ops as that route: gx as one GEMM over all steps, the C++
scan's forward and backward ops, then the input's and the weights' gradients as GEMMs over all steps (in
float on brgemm, faster than MKL's at these shapes: ``csrc/gemm.h``). Without a gradient it is the same
forward without the node, for the inference scans :mod:`.projected` leaves (weights over its bound).

When it serves (:func:`serves`, the rule in one place; :func:`seqtorch.ops.dispatch.scan_from_input` asks it
when :mod:`.projected`'s inference scan does not serve): a scan without lengths, a mask, resets, recurrent
dropout, zoneout or every step's states, on the ``auto`` or ``cpu_fused`` backend, on non-empty CPU tensors
all of one dtype, float32 or float64 (mixed dtypes take the general route, which promotes them), for a cell
of the C++ library (not one generated from equations) whose input projection is the plain one and whose
weights' gradients follow the default rule (:func:`seqtorch.ops.op_rules.serves_cell`), and outside
``torch.compile``/``torch.export`` tracing, ``torch.jit.trace``, ``torch.func`` transforms, forward-mode AD
and autocast. Everything else takes the general route (:func:`seqtorch.ops.dispatch.scan`), which this op
equals. A double backward (``create_graph=True``) through the op differentiates the reference scan
(``seqtorch::scan_layer_reference``, registered here), so that its result is differentiable again. Under
``torch.inference_mode()`` the op runs as its CPU kernel, the forward alone.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor

from ..recurrent_cells import Acts, get_cell
from ..recurrent_cells.base import Cell
from . import native
from .contract import ScanOptions
from .op_rules import eager_cpu_call, serves_cell
from .reference import state_history_reference

_LIBRARIES: list = []


def serves(backend: str, use_native: bool, spec: Cell, x: Tensor, tensors: list[Tensor | None],
           lengths: Tensor | None, rec_mask: Tensor | None, keep: tuple | None) -> bool:
    """Whether :func:`scan` can run a layer's scan of ``spec`` on the input x (T, B, I); ``tensors``: the states
    and every weight (input and recurrent, None where absent); ``use_native``: whether the C++ loop is on
    (:data:`seqtorch.ops.dispatch.USE_NATIVE`). The rule is the module docstring's."""
    if not eager_cpu_call(x) or is_functorch_wrapped_tensor(x):
        return False
    if lengths is not None or rec_mask is not None or keep is not None or backend not in ("auto", "cpu_fused"):
        return False
    if not use_native:
        return False
    dtype = x.dtype
    for t in tensors:
        if t is not None and (t.dtype != dtype or not t.is_cpu or t.numel() == 0 or is_functorch_wrapped_tensor(t)):
            return False
    return (_plain_scan_inputs(type(spec)) and serves_cell(spec) and spec.reference_only is None
            and spec.name in native.cpp_cells())  # the library's own cells (not one generated from equations)


@functools.cache
def _plain_scan_inputs(kind: type) -> bool:
    """Whether the cell class computes gx and folds the input bias as :class:`Cell` does (what the op does)."""
    return kind.scan_inputs is Cell.scan_inputs and kind.folded_inputs is Cell.folded_inputs


def scan(opts: ScanOptions, x: Tensor, input_weights: tuple[Tensor | None, ...], states: tuple[Tensor, ...],
         weights: tuple[Tensor | None, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction, from its input: x (T, B, I), ``input_weights`` (W_ih, b_ih or None) and the
    recurrent ``weights`` in the cell's order, ``states`` (B, width) each. Returns output (T, B, P) and the
    final states, (B, width) each."""
    _register_reference()
    # the op's own call (no Python frame: this scan is eager only); serves() has just asked for the library
    op = native.loaded().scan_layer.default._op
    outputs = op(*opts.op_args(), opts.cell.folds_input_bias, x, list(states), list(input_weights), list(weights))
    return outputs[0], tuple(outputs[1:])


@functools.cache
def _register_reference() -> None:
    """``seqtorch::scan_layer_reference``: the reference scan with the op's schema, returning each state's
    history (T+1, B, width), which the op's backward differentiates under ``create_graph=True``.
    CompositeImplicitAutograd: autograd records its torch ops."""

    def reference(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
                  fold_input_bias: bool, x: Tensor, states: list[Tensor], input_weights: list[Tensor | None],
                  weights: list[Tensor | None]) -> list[Tensor]:
        spec, args = get_cell(cell), tuple(cell_args)
        if spec.folds_input_bias != fold_input_bias:
            raise ValueError(f"scan_layer_reference: fold_input_bias={fold_input_bias}, but cell {cell!r} "
                             f"{'folds' if spec.folds_input_bias else 'does not fold'} its input bias")
        gx, scan_weights = spec.scan_inputs(x, tuple(input_weights), tuple(weights), args)
        return list(state_history_reference(spec, gx, tuple(states), tuple(scan_weights), reverse=reverse,
                                            acts=Acts.of(activation, recurrent_activation), cell_args=args))

    lib = torch.library.Library("seqtorch", "FRAGMENT")  # the C++ library owns the namespace's other ops
    _LIBRARIES.append(lib)  # a Library's registrations last as long as the object
    lib.define("scan_layer_reference(str cell, str activation, str recurrent_activation, bool reverse, "
               "float[] cell_args, bool fold_input_bias, Tensor x, Tensor[] states, Tensor?[] input_weights, "
               "Tensor?[] weights) -> Tensor[]")
    lib.impl("scan_layer_reference", reference, "CompositeImplicitAutograd")
