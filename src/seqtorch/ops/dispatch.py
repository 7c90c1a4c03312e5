"""The one dispatch: an ordered list of the scan's implementations, asked once per scan.

:data:`IMPLEMENTATIONS`, fastest first, each with the ``backend=`` name it answers to and a
``supports(opts, gx, hidden) -> reason | None``:

==================  ===========  ======================================================================
implementation      backend      serves
==================  ===========  ======================================================================
triton persistent   triton       a cell with ``triton.py``, H <= 128: one kernel per layer and direction
                                 (:mod:`.triton_scan`); CUDA tensors (CPU under ``TRITON_INTERPRET=1``)
triton alternating  triton       H > 128, a cell with one product over all of W_hh: per step a cuBLAS
                                 GEMM and one Triton launch (:mod:`.triton_alternating`)
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

from . import autograd, native, python_loop
from .contract import Kernel, ScanOptions
from .reference import scan_reference

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
    supports: Callable[[ScanOptions, Tensor, int], str | None]
    kernel: Callable[[ScanOptions], Kernel] | None
    dtypes: str = "promote"
    auto_needs_cuda: bool = False


def _python_loop_supports(opts: ScanOptions, gx: Tensor, hidden: int) -> str | None:
    if gx.dtype not in _FLOATING:
        return f"dtype {gx.dtype} is not supported (expected one of {_FLOATING})"
    if gx.dim() != 3:
        return f"gx must be 3-D (T, B, G*H), got shape {tuple(gx.shape)}"
    return None


def _cpp_supports(opts: ScanOptions, gx: Tensor, hidden: int) -> str | None:
    if not USE_NATIVE:
        return "the C++ loop is switched off (seqtorch.ops.dispatch.USE_NATIVE)"
    if gx.device.type != "cpu" or gx.dtype not in (torch.float32, torch.float64):
        return f"the C++ loop runs CPU float32/float64 tensors, got {gx.device.type} {gx.dtype}"
    if not _cpp_available(opts.cell.name):
        return native.failure(opts.cell.name) or f"the C++ library has no loop for cell {opts.cell.name!r}"
    return None


@torch.compiler.assume_constant_result
def _cpp_available(cell: str) -> bool:
    """Whether the C++ loop serves ``cell``, building the library on the first call and registering the
    autograd formula of its ops. torch.compile runs this at trace time and keeps the answer: a build cannot
    be traced."""
    kernel = native.kernel(cell)
    if kernel is not None and kernel.name not in _REGISTERED:
        autograd.register(kernel)
        _REGISTERED.add(kernel.name)
    return kernel is not None


_REGISTERED: set[str] = set()
PYTHON_LOOP = Kernel("loop", python_loop.FORWARD, python_loop.BACKWARD)
autograd.register(PYTHON_LOOP)
_REGISTERED.add(PYTHON_LOOP.name)

IMPLEMENTATIONS: list[Implementation] = [
    Implementation("C++ loop", "cpu_fused", _cpp_supports, lambda opts: native.kernel(opts.cell.name)),
    Implementation("Python loop", "cpu_fused", _python_loop_supports, lambda opts: PYTHON_LOOP),
    Implementation("reference", "reference", lambda opts, gx, hidden: None, None),
]

# triton is an optional dependency: without it, its implementations are not offered.
if importlib.util.find_spec("triton") is not None:
    from . import triton_alternating, triton_scan

    for _kernel in (triton_scan.KERNEL, triton_alternating.KERNEL):
        autograd.register(_kernel)
        _REGISTERED.add(_kernel.name)
    IMPLEMENTATIONS[:0] = [
        Implementation("triton persistent", "triton", triton_scan.supports, lambda opts: triton_scan.KERNEL,
                       dtypes="weights", auto_needs_cuda=True),
        Implementation("triton alternating", "triton", triton_alternating.supports,
                       lambda opts: triton_alternating.KERNEL, dtypes="weights", auto_needs_cuda=True),
    ]


def available_backends() -> list[str]:
    """The backends this install can run (besides ``"auto"``), in the order ``"auto"`` tries them last
    to first: ``"reference"`` first, then those with an implementation here."""
    offered = {impl.backend for impl in IMPLEMENTATIONS}
    return [name for name in ("reference", "cpu_fused", "triton") if name in offered]


def choose(backend: str, opts: ScanOptions, gx: Tensor, hidden: int) -> Implementation:
    """The implementation that runs a scan of ``opts`` on ``gx`` (T, B, G*H) with hidden size ``hidden``.

    ``"auto"``: the first in :data:`IMPLEMENTATIONS` that supports it (the Triton ones only for CUDA
    tensors). A backend by name: the first of its own that does; a RuntimeError with every one's reason
    otherwise. A name that is not a backend is a ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto" and backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not available in this install "
                           f"(available: {available_backends()})")
    reasons = []
    for impl in IMPLEMENTATIONS:
        if backend == "auto" and impl.auto_needs_cuda and gx.device.type != "cuda":
            continue
        if backend not in ("auto", impl.backend):
            continue
        reason = opts.cell.reference_only if impl.kernel is not None else None
        reason = reason or impl.supports(opts, gx, hidden)
        if reason is None:
            return impl
        reasons.append(f"{reason} ({impl.name})")
    raise RuntimeError(f"backend {backend!r} cannot run this input: {'; '.join(reasons)}; use backend='auto' "
                       f"to fall back to the next path")


def scan(opts: ScanOptions, gx: Tensor, states: tuple[Tensor, ...], weights: tuple[Tensor | None, ...], *,
         lengths: Tensor | None = None, rec_mask: Tensor | None = None,
         zoneout: tuple[Tensor, ...] | None = None, backend: str = "auto") -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction on the implementation :func:`choose` picks: the semantics and shapes of
    :func:`.reference.scan_reference` (output (T, B, P), zero past each length; the final states)."""
    impl = choose(backend, opts, gx, opts.cell.hidden_size(weights))
    if impl.kernel is None:
        return scan_reference(opts.cell, gx, states, weights, lengths=lengths, rec_mask=rec_mask,
                              reverse=opts.reverse, acts=opts.acts, zoneout=zoneout, cell_args=opts.cell_args)
    dtype = _math_dtype(impl, gx, states, weights)
    cast = lambda x: None if x is None else x.to(dtype).contiguous()  # noqa: E731
    out, finals = autograd.scan(impl.kernel(opts), opts, cast(gx), tuple(cast(s) for s in states),
                                tuple(cast(w) for w in weights),
                                None if lengths is None else lengths.to(torch.int64).contiguous(), cast(rec_mask),
                                None if zoneout is None else tuple(cast(z) for z in zoneout))
    if impl.dtypes == "promote" and gx.dtype != dtype:
        finals = tuple(f.to(gx.dtype) for f in finals)
    return out.to(gx.dtype), finals


def _math_dtype(impl: Implementation, gx: Tensor, states, weights) -> torch.dtype:
    if impl.dtypes == "weights":
        return weights[0].dtype
    dtype = torch.float32
    for tensor in (gx, *states, *weights):
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype
