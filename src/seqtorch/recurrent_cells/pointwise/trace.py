"""A cell's ``forward`` traced by PyTorch's own machinery into its forward and backward ATen graphs.

AOTAutograd (:func:`functorch.compile.aot_function`, what ``torch.compile`` runs before Inductor) traces
``forward`` into one joint graph, differentiates it with the autograd formulas of every ATen op, and
splits it with :func:`~functorch.compile.min_cut_rematerialization_partition`, which chooses what the
forward saves for the backward and what the backward recomputes. The two compilers given to it only keep
the two FX graphs; :mod:`.ir` reads them. Nothing is derived by hand.

The trace runs at ``B = TRACE_B`` rows and ``H = TRACE_H`` units, sizes that are read back as blocks
(:mod:`.ir`). A few composite functions are decomposed on the way (:data:`DECOMPOSITIONS`: ``logsigmoid``,
``softplus``, ``silu``, ``lerp`` ...) into the elementwise ops the generators write.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .ir import TRACE_B, TRACE_H, Signature, UnsupportedEquations

aten = torch.ops.aten

# Composite ops whose decompositions use only what the generators write (those missing here are refused
# by name when a cell uses them).
_DECOMPOSED = ("log_sigmoid_forward", "log_sigmoid_backward", "softplus", "softplus_backward", "hardsigmoid",
               "hardsigmoid_backward", "hardswish", "hardswish_backward", "silu", "silu_backward", "mish",
               "mish_backward", "elu", "elu_backward", "leaky_relu", "leaky_relu_backward", "hardtanh_backward",
               "gelu", "gelu_backward", "lerp", "addcmul", "addcdiv", "square", "xlogy", "logit",
               "logit_backward")


def decompositions() -> dict:
    """The decomposition table the trace applies (:data:`_DECOMPOSED` that this torch has)."""
    from torch._decomp import get_decompositions

    return get_decompositions([getattr(aten, name) for name in _DECOMPOSED if hasattr(aten, name)])


def example_inputs(sig: Signature, dtype=torch.float32) -> list[Tensor]:
    """Random inputs of ``forward`` at the trace's sizes: z (or zx, zh) (B, G*H), the states (B, H), the
    vectors (H,)."""
    g = torch.Generator().manual_seed(0)
    B, H = TRACE_B, TRACE_H
    shapes = [(B, sig.gates * H)] * (1 if sig.inputs == "joint" else 2)
    shapes += [(B, H)] * sig.states + [(H,)] * sig.vectors
    return [torch.randn(shape, generator=g, dtype=dtype) for shape in shapes]


def call(forward, sig: Signature, args: list[Tensor]) -> tuple[Tensor, ...]:
    """``forward(*args)`` as a tuple of the new states, checked: one (B, H) tensor per state."""
    out = forward(*args)
    out = (out,) if isinstance(out, Tensor) else tuple(out) if isinstance(out, (tuple, list)) else out
    if not isinstance(out, tuple) or len(out) != sig.states or not all(isinstance(o, Tensor) for o in out):
        raise TypeError(f"{sig.name}.forward must return its {sig.states} new state(s) as a tensor or a tuple of "
                        f"tensors (in the order of `states`), got {_describe(out)}")
    B, H = args[0].shape[0], args[0].shape[1] // sig.gates
    for k, state in enumerate(out):
        if tuple(state.shape) != (B, H):
            raise ValueError(f"{sig.name}.forward: new state {k} has shape {tuple(state.shape)}, expected (B, H) "
                             f"= {(B, H)} like the state it replaces")
    return out


def _describe(out) -> str:
    if isinstance(out, tuple):
        return f"a tuple of {len(out)}: ({', '.join(type(o).__name__ for o in out)})"
    return type(out).__name__


def graphs(forward, sig: Signature):
    """The forward and backward GraphModules of ``forward`` (see the module docstring).

    ``forward`` is first run as it is, so a mistake in it raises its own error here; a forward that runs
    but cannot be traced (a branch on a tensor's values, a NumPy call ...) is :class:`UnsupportedEquations`."""
    from functorch.compile import aot_function, make_boxed_func, min_cut_rematerialization_partition

    with torch.inference_mode(False), torch.enable_grad():
        call(forward, sig, example_inputs(sig))
        captured = {}

        def keep(kind):
            def compiler(gm, example):
                captured[kind] = gm
                return make_boxed_func(gm.forward)
            return compiler

        def step(*args):
            # copies in and out: an input changed in place, or returned as it is, is then an op of the graph
            return tuple(s.clone() for s in call(forward, sig, [a.clone() for a in args]))

        inputs = [t.requires_grad_() for t in example_inputs(sig)]
        try:
            traced = aot_function(step, fw_compiler=keep("forward"), bw_compiler=keep("backward"),
                                  partition_fn=min_cut_rematerialization_partition,
                                  decompositions=decompositions())
            out = traced(*inputs)
            torch.autograd.grad(sum(o.sum() for o in out), inputs, allow_unused=True)
        except Exception as error:  # noqa: BLE001 - any tracing failure: the cell cannot be generated, say why
            first = str(error).splitlines()[0] if str(error) else ""
            why = ("it reads a tensor besides its arguments (a constant of the equations must be a number)"
                   if "FakeTensor" in first else "it needs one elementwise computation, without branches on tensor "
                   "values")
            raise UnsupportedEquations(f"{sig.name}: its forward could not be traced into ATen graphs "
                                       f"({type(error).__name__}: {first}); {why}") from error
    return captured["forward"], captured["backward"]
