"""One step of a cell, as the cell Modules run it: the C++ op ``seqtorch::cell_step`` where it serves, else
the cell's reference step.

A program that calls ``seqtorch.LSTMCell`` step by step (a decoder, a generation loop, pytorch/examples'
``time_sequence_prediction``) would otherwise run the reference step per call: an input projection, a
recurrent product and about ten elementwise torch ops, each a dispatch and an autograd node; at B=1 that
overhead is most of the call. ``seqtorch::cell_step`` (``csrc/step.cpp``) is one call: the input projection
and the recurrent products as BLAS calls, the cell's ``cpu.h`` pointwise code (the code the C++ scan runs),
and when a gradient is wanted one autograd node whose backward is C++ as well.

The rule (:func:`op_serves`, in one place): the op serves CPU tensors in float32 or float64 of non-empty
sizes, for a cell with C++ code (``cpu.h``) whose input projection is the plain ``x W_ih^T + b_ih`` (not the
LayerNorm cells') and whose recurrent weights' gradients follow the default rule of
:meth:`~seqtorch.recurrent_cells.base.Cell.weight_grads` with ``weights[1]`` as every product's bias (not
IndRNN's), when the C++ library is loaded; and outside of what needs the reference's PyTorch ops:
``torch.compile``/``torch.export`` tracing, ``torch.jit.trace``, ``torch.func`` transforms (``vmap``,
``grad``, ``jacrev``...), forward-mode AD and autocast. Everything else runs the reference step, which the op
equals within the tolerances of ``tests/conftest.py``. A double backward (``create_graph=True``) through the
op differentiates the reference step (``seqtorch::cell_step_reference``, registered here), so that its
result is differentiable again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..recurrent_cells import Acts, get_cell
from ..recurrent_cells.base import Cell
from . import native
from .op_rules import eager_cpu_call, serves_cell

_LIBRARIES: list = []


@dataclass(frozen=True)
class Plan:
    """What a cell Module's settings fix for every call: its spec and activations, and the op if it can
    serve the cell at all (the C++ builtin, called directly: no Python frame between the Module and C++)."""

    spec: Cell
    acts: Acts
    cell_args: tuple[float, ...]
    op: object | None
    op_args: tuple = ()  # the op's leading arguments (cell, activation, recurrent_activation, cell_args)


@functools.lru_cache(maxsize=None)
def plan(cell: Cell | str, activation: str, recurrent_activation: str, cell_args: tuple[float, ...]) -> Plan:
    """The :class:`Plan` of a cell Module's settings (computed once; loads the C++ library on first use). The
    op serves the C++ library's own cells, not one generated from equations (its library has no step op)."""
    spec = get_cell(cell) if isinstance(cell, str) else cell
    op = None
    if serves_cell(spec) and spec.name in native.cpp_cells():
        _register_reference()
        op = torch.ops.seqtorch.cell_step.default._op
    return _plan_of(spec, activation, recurrent_activation, cell_args, op)


def traced_plan(cell: Cell | str, activation: str, recurrent_activation: str, cell_args: tuple[float, ...]) -> Plan:
    """The :class:`Plan` under ``torch.compile`` or ``torch.export``, where the reference step runs
    (:func:`op_serves`): without the op, and built at each call. Dynamo traces what it calls: the cached
    :func:`plan` it would run uncached, and its library lookup reads the sources' folder (a graph break,
    an error under ``fullgraph=True``)."""
    return _plan_of(get_cell(cell) if isinstance(cell, str) else cell, activation, recurrent_activation, cell_args,
                    None)


def _plan_of(spec: Cell, activation: str, recurrent_activation: str, cell_args: tuple[float, ...], op) -> Plan:
    acts, cell_args = Acts.of(activation, recurrent_activation), tuple(float(a) for a in cell_args)
    return Plan(spec, acts, cell_args, op, (spec.name, acts.activation, acts.recurrent, list(cell_args)))


def op_serves(plan_: Plan, x: Tensor, h: Tensor) -> bool:
    """Whether the op can run this call on x (B, I) from h (B, P) (the rule in the module docstring); the
    Module has checked that the states and parameters share x's dtype and device."""
    return plan_.op is not None and eager_cpu_call(x) and h.numel() > 0


def cell_step(plan_: Plan, x: Tensor, states: tuple[Tensor, ...], input_weights: tuple[Tensor | None, ...],
              weights: tuple[Tensor | None, ...]) -> tuple[Tensor, ...]:
    """One step of the cell: x (B, I), states (B, width) each (h first), ``input_weights`` (W_ih (G*H, I),
    b_ih (G*H,) or None) and the recurrent ``weights`` in the cell's order. Returns the new states, (B,
    width) each: the reference step of ``x W_ih^T + b_ih`` (:meth:`~seqtorch.recurrent_cells.base.Cell.step`),
    on the op where :func:`op_serves`."""
    if op_serves(plan_, x, states[0]):
        return tuple(plan_.op(*plan_.op_args, x, states, input_weights, weights))
    return reference_step(plan_, x, states, input_weights, weights)


def reference_step(plan_: Plan, x: Tensor, states, input_weights, weights) -> tuple[Tensor, ...]:
    """The cell's reference step of ``x W_ih^T + b_ih`` (differentiable PyTorch ops)."""
    gx = plan_.spec.input_projection(x, tuple(input_weights), plan_.cell_args)
    return plan_.spec.step(gx, states[0], tuple(states), tuple(weights), plan_.acts, plan_.cell_args)


@functools.cache
def _register_reference() -> None:
    """``seqtorch::cell_step_reference``: the reference step with the op's schema, which the op's backward
    differentiates under ``create_graph=True``. CompositeImplicitAutograd: autograd records its torch ops."""

    def reference(cell: str, activation: str, recurrent_activation: str, cell_args: list[float], x: Tensor,
                  states: list[Tensor], input_weights: list[Tensor | None],
                  weights: list[Tensor | None]) -> list[Tensor]:
        plan_ = plan(cell, activation, recurrent_activation, tuple(cell_args))
        return list(reference_step(plan_, x, states, input_weights, weights))

    lib = torch.library.Library("seqtorch", "FRAGMENT")  # the C++ library owns the namespace's other ops
    _LIBRARIES.append(lib)  # a Library's registrations last as long as the object
    lib.define("cell_step_reference(str cell, str activation, str recurrent_activation, float[] cell_args, Tensor x, "
               "Tensor[] states, Tensor?[] input_weights, Tensor?[] weights) -> Tensor[]")
    lib.impl("cell_step_reference", reference, "CompositeImplicitAutograd")
