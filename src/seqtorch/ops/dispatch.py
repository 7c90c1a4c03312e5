"""The one dispatch: an ordered list of the scan's implementations, asked once per scan.

:data:`IMPLEMENTATIONS`, fastest first, each with the ``backend=`` name it answers to and a
``supports(opts, inputs) -> reason | None`` (inputs: :class:`.contract.ScanInputs`):

==================  ===========  ======================================================================
implementation      backend      serves
==================  ===========  ======================================================================
triton persistent   triton       a cell with ``triton.py``, H <= 128: one kernel per layer and direction
                                 (:mod:`.triton.persistent`); CUDA tensors (CPU under ``TRITON_INTERPRET=1``)
triton alternating  triton       H > 128, a cell with one product over all of W_hh: per step a cuBLAS
                                 GEMM and one Triton launch (:mod:`.triton.alternating`)
C++ loop            cpu_fused    CPU float32/float64, a cell with ``cpu.h``, the library built (:mod:`.native`)
Python loop         cpu_fused    any device, any floating dtype (:mod:`.python_loop`)
reference           reference    anything: the plain autograd loop (:mod:`.reference`)
==================  ===========  ======================================================================

The rule, in one place (:func:`choose`): ``backend="auto"`` takes the first implementation that supports
the scan (the Triton ones only for CUDA tensors; a cell whose equations no generator could write,
:attr:`~seqtorch.recurrent_cells.Cell.reference_only`, only the reference); a backend named explicitly
takes the first of its own that does, and raises a RuntimeError with every reason when none does.
:func:`scan` then runs it: the reference as plain autograd, every other through :func:`.autograd.scan`,
which gives each op pair the same autograd semantics (first-order backward through its own backward op,
the rest through the reference). Nothing above this module names an implementation.

Dtypes: the ``cpu_fused`` implementations run in the promoted floating dtype of gx, the states and the
weights (at least float32) and return gx's dtype; the Triton ones run in W_hh's dtype (float32/float64),
take gx in it or in float16/bfloat16 (autocast), and return the output in gx's dtype and the final
states in the math dtype.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..recurrent_cells import Cell, get_cell
from . import autograd, layer, native, native_cells, projected, python_loop
from .contract import Kernel, ScanInputs, ScanOptions
from .reference import scan_reference, state_history_reference, valid_steps

BACKENDS = ("auto", "reference", "cpu_fused", "triton")  # what ``backend=`` takes
_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

#: Tests set this to False to run the Python loop where the C++ one would serve.
USE_NATIVE = True


@dataclass(frozen=True)
class Implementation:
    """One implementation of the scan: its name, the ``backend=`` it answers to, what it serves, its op
    pair (None: the reference), and its dtype policy (``"promote"`` or ``"weights"``, see the module doc)."""

    name: str
    backend: str
    supports: Callable[[ScanOptions, ScanInputs], str | None]
    kernel: Callable[[ScanOptions], Kernel] | None
    dtypes: str = "promote"
    auto_needs_cuda: bool = False


def _python_loop_supports(opts: ScanOptions, inputs: ScanInputs) -> str | None:
    gx = inputs.gx
    if gx.dtype not in _FLOATING:
        return f"dtype {gx.dtype} is not supported (expected one of {_FLOATING})"
    if gx.dim() != 3:
        return f"gx must be 3-D (T, B, G*H), got shape {tuple(gx.shape)}"
    return None


def _cpp_supports(opts: ScanOptions, inputs: ScanInputs) -> str | None:
    gx = inputs.gx
    if not USE_NATIVE:
        return "the C++ loop is switched off (seqtorch.ops.dispatch.USE_NATIVE)"
    if gx.device.type != "cpu" or gx.dtype not in (torch.float32, torch.float64):
        return f"the C++ loop runs CPU float32/float64 tensors, got {gx.device.type} {gx.dtype}"
    if not _cpp_available(opts.cell.name):
        return cpp_failure(opts.cell) or f"the C++ library has no loop for cell {opts.cell.name!r}"
    return None


def cpp_kernel(cell: str) -> Kernel | None:
    """The C++ loop's op pair for ``cell``: the library's (a cell with a ``cpu.h``), else, for a cell written as
    equations, that of its own generated library (:mod:`.native_cells`); None where neither loads."""
    kernel = native.kernel(cell)  # None where the library is not loaded or has no such cell
    if kernel is not None or native.load() is None:
        return kernel
    return native_cells.kernel(get_cell(cell))


def cpp_failure(cell: Cell) -> str | None:
    """Why the C++ loop cannot serve ``cell``: the library's load failure, else its own library's."""
    return native.failure() or native_cells.failure(cell.name)


def _constant_under_compile(fn: Callable) -> Callable:
    """``torch.compiler.assume_constant_result`` without its import of ``torch._dynamo``, which doubled the
    time of ``import seqtorch`` (1.3 s of 3.4 s here): the mark that decorator sets, and Dynamo reads, set
    here (tests/ops/test_import_cost.py checks that torch's decorator still sets exactly this)."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_under_compile
def _cpp_available(cell: str) -> bool:
    """Whether the C++ loop serves ``cell``, building the library on the first call and registering the
    autograd formula of its ops. torch.compile runs this at trace time and keeps the answer: a build cannot
    be traced."""
    kernel = cpp_kernel(cell)
    if kernel is not None and kernel.name not in _REGISTERED:
        autograd.register(kernel)
        _REGISTERED.add(kernel.name)
    return kernel is not None


_REGISTERED: set[str] = set()
PYTHON_LOOP = Kernel("loop", python_loop.FORWARD, python_loop.BACKWARD)
autograd.register(PYTHON_LOOP)
_REGISTERED.add(PYTHON_LOOP.name)

IMPLEMENTATIONS: list[Implementation] = [
    Implementation("C++ loop", "cpu_fused", _cpp_supports, lambda opts: cpp_kernel(opts.cell.name)),
    Implementation("Python loop", "cpu_fused", _python_loop_supports, lambda opts: PYTHON_LOOP),
    Implementation("reference", "reference", lambda opts, inputs: None, None),
]

# triton is an optional dependency: without it, its implementations are not offered.
if importlib.util.find_spec("triton") is not None:
    from .triton import alternating, persistent

    for _kernel in (persistent.KERNEL, alternating.KERNEL):
        autograd.register(_kernel)
        _REGISTERED.add(_kernel.name)
    IMPLEMENTATIONS[:0] = [
        Implementation("triton persistent", "triton", persistent.supports, lambda opts: persistent.KERNEL,
                       dtypes="weights", auto_needs_cuda=True),
        Implementation("triton alternating", "triton", alternating.supports, lambda opts: alternating.KERNEL,
                       dtypes="weights", auto_needs_cuda=True),
    ]


def available_backends() -> list[str]:
    """The backends this install can run (besides ``"auto"``), in the order ``"auto"`` tries them last
    to first: ``"reference"`` first, then those with an implementation here."""
    offered = {impl.backend for impl in IMPLEMENTATIONS}
    return [name for name in ("reference", "cpu_fused", "triton") if name in offered]


def choose(backend: str, opts: ScanOptions, inputs: ScanInputs) -> Implementation:
    """The implementation that runs a scan of ``opts`` on ``inputs``.

    ``"auto"``: the first in :data:`IMPLEMENTATIONS` that supports it (the Triton ones only for CUDA
    tensors). A backend by name: the first of its own that does; a RuntimeError with every one's reason
    otherwise. A name that is not a backend is a ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto" and backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not available in this install "
                           f"(available: {available_backends()})")
    reasons = []
    on_cuda = inputs.gx.is_cuda
    for impl in IMPLEMENTATIONS:
        if backend == "auto" and impl.auto_needs_cuda and not on_cuda:
            continue
        if backend not in ("auto", impl.backend):
            continue
        reason = opts.cell.reference_only if impl.kernel is not None else None
        reason = reason or impl.supports(opts, inputs)
        if reason is None:
            return impl
        reasons.append(f"{reason} ({impl.name})")
    raise RuntimeError(f"backend {backend!r} cannot run this input: {'; '.join(reasons)}; use backend='auto' "
                       f"to fall back to the next path")


def choose_for(backend: str, opts: ScanOptions, like: Tensor, hidden_size: int) -> Implementation:
    """:func:`choose` for a scan of ``opts`` on a gx like ``like`` (T, B, G*H) with ``hidden_size``, before any
    weights exist (the benchmarks and the tests ask which implementation a shape gets)."""
    w_hh = torch.empty(opts.cell.weight_shapes(hidden_size, hidden_size)[0], dtype=like.dtype, device=like.device)
    return choose(backend, opts, ScanInputs(like, (), (w_hh,)))


def scan(opts: ScanOptions, inputs: ScanInputs, *, backend: str = "auto", histories: bool = False):
    """One layer, one direction on the implementation :func:`choose` picks: the semantics and shapes of
    :func:`.reference.scan_reference`: output (T, B, P), zero at invalid steps, and the final states; with
    ``histories``, also every step's states (T, B, width) each, zero at invalid steps."""
    impl = choose(backend, opts, inputs)
    if impl.kernel is None:
        return _reference(opts, inputs, histories)
    dtype = _math_dtype(impl, inputs)
    out, finals, *every = autograd.scan(impl.kernel(opts), opts, _cast_inputs(inputs, dtype), histories)
    given = inputs.gx.dtype
    back = given if impl.dtypes == "promote" else None
    result = (_cast(out, given, False), tuple(_cast(f, back, False) for f in finals))
    return result + (tuple(_cast(s, back, False) for s in every[0]),) if histories else result


def _cast_inputs(inputs: ScanInputs, dtype: torch.dtype) -> ScanInputs:
    """The inputs as the ops take them: the floating ones in ``dtype``, lengths int64, all contiguous; ``inputs``
    itself where they are so already (most calls: a dozen casts that would each return their tensor)."""
    floating = (inputs.gx, *inputs.states, *inputs.weights, *inputs.reset_states, inputs.rec_mask, *(inputs.keep or ()))
    if (all(t is None or (t.dtype == dtype and t.is_contiguous()) for t in floating)
            and (inputs.lengths is None or (inputs.lengths.dtype == torch.int64 and inputs.lengths.is_contiguous()))
            and all(t is None or t.is_contiguous() for t in (inputs.mask, inputs.restart))):
        return inputs
    return ScanInputs(
        _cast(inputs.gx, dtype), tuple(_cast(s, dtype) for s in inputs.states),
        tuple(_cast(w, dtype) for w in inputs.weights), _cast(inputs.lengths, torch.int64), _cast(inputs.mask),
        _cast(inputs.restart), tuple(_cast(s, dtype) for s in inputs.reset_states), _cast(inputs.rec_mask, dtype),
        None if inputs.keep is None else tuple(_cast(k, dtype) for k in inputs.keep))


def _cast(x: Tensor | None, dtype: torch.dtype | None = None, contiguous: bool = True) -> Tensor | None:
    """``x.to(dtype).contiguous()`` (without ``.to`` when dtype is None, without ``.contiguous()`` when not
    ``contiguous``), x itself where it is that already, as those calls return it then (they cost a
    microsecond each even so, and a scan makes a dozen); None for None."""
    if x is None:
        return None
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    return x.contiguous() if contiguous and not x.is_contiguous() else x


def _reference(opts: ScanOptions, inputs: ScanInputs, histories: bool):
    kwargs = dict(lengths=inputs.lengths, rec_mask=inputs.rec_mask, reverse=opts.reverse, acts=opts.acts,
                  keep=inputs.keep, cell_args=opts.cell_args, mask=inputs.mask, restart=inputs.restart,
                  reset_states=inputs.reset_states)
    out, finals = scan_reference(opts.cell, inputs.gx, inputs.states, inputs.weights, **kwargs)
    if not histories:
        return out, finals
    every = state_history_reference(opts.cell, inputs.gx, inputs.states, inputs.weights, **kwargs)
    valid = valid_steps(out.shape[0], inputs.lengths, inputs.mask)
    every = tuple(s[:-1] if opts.reverse else s[1:] for s in every)
    if valid is not None:
        every = tuple(torch.where(valid.unsqueeze(-1), s, 0.0) for s in every)
    return out, finals, every


def _math_dtype(impl: Implementation, inputs: ScanInputs) -> torch.dtype:
    if impl.dtypes == "weights":
        return inputs.weights[0].dtype
    dtype = torch.float32
    for tensor in (inputs.gx, *inputs.states, *inputs.reset_states, *inputs.weights):
        if tensor is not None and tensor.dtype != dtype:  # promote_types(d, d) is d
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def scan_from_input(opts: ScanOptions, x: Tensor, input_weights: tuple[Tensor | None, ...],
                    states: tuple[Tensor, ...], weights: tuple[Tensor | None, ...], *, lengths: Tensor | None,
                    rec_mask: Tensor | None, keep: tuple[Tensor | None, ...] | None, backend: str = "auto"):
    """One layer, one direction from its input x (T, B, I) on a C++ op that projects x itself: the inference
    scan of :mod:`.projected`, else the layer op of :mod:`.layer` (training, and the inference scans the
    projected one leaves; the rules where they serve are there); None where neither serves: the caller then
    computes gx and calls :func:`scan`. Returns as :func:`scan`."""
    tensors = [*states, rec_mask, *(keep or ())]
    if projected.serves(backend, USE_NATIVE, opts.cell, x, [*input_weights, *weights], tensors):
        return projected.scan(opts, x, input_weights, states, weights, lengths, rec_mask, keep)
    if layer.serves(backend, USE_NATIVE, opts.cell, x, [*states, *input_weights, *weights], lengths, rec_mask, keep):
        return layer.scan(opts, x, input_weights, states, weights)
    return None
