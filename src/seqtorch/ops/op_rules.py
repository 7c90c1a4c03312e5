"""What the C++ ops with a rule of their own ask alike: the inference scan that projects its input
(:mod:`.projected`), the layer op (:mod:`.layer`) and the step op (:mod:`.step`). Each rule asks
:func:`eager_cpu_call` first, then what is its own (a gradient to compute or not, lengths and masks, the
weights' size); the layer and step ops, which compute gradients in C++, also ask :func:`serves_cell`."""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor
from torch._C._functorch import peek_interpreter_stack

from ..recurrent_cells.base import Cell

_DTYPES = (torch.float32, torch.float64)
_is_compiling = torch.compiler.is_compiling
_is_tracing = torch._C._is_tracing  # what torch.jit.is_tracing() asks outside TorchScript
_OP_BIAS = 1  # the weight the ops add to every product's output (csrc/step.cpp, csrc/layer.cpp)


def eager_cpu_call(x: Tensor) -> bool:
    """Whether the call runs eagerly on x as the ops need it: outside torch.compile, torch.jit.trace,
    torch.func's transforms and forward AD (asked before x is read: under compile its sizes would be
    guarded, under the tracer recorded, with a warning), x a non-empty float32 or float64 CPU tensor,
    outside CPU autocast."""
    # compile first: Dynamo cannot trace _is_tracing (a graph break)
    if _is_compiling() or _is_tracing() or peek_interpreter_stack() is not None or forward_ad._current_level >= 0:
        return False
    return x.is_cpu and x.dtype in _DTYPES and x.numel() > 0 and not torch.is_autocast_enabled("cpu")


def serves_cell(spec: Cell) -> bool:
    """A cell the C++ ops with their own autograd cover (the step op and the layer op): the plain input
    projection, the default weight-gradient rule with weights[1] as every product's bias."""
    return (type(spec).input_projection is Cell.input_projection and type(spec).weight_grads is Cell.weight_grads
            and all(p.bias == _OP_BIAS for p in spec.products) and len(spec.weights) > _OP_BIAS)
