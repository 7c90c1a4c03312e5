"""The ``cpu_fused`` backend: a fused scan with a hand-written BPTT, no per-step autograd graph.

Two implementations of the same ops (:mod:`.contract`), chosen per scan by one rule
(:func:`implementation`): the **C++ loop** (``csrc/``, built on first use, :mod:`.native`) for CPU
tensors in float32/float64 of a cell that has a ``cpu.h``; the **Python loop** (:mod:`.python_loop`)
everywhere else (other devices, other dtypes, a cell without C++ code, an install without a compiler,
``SEQTORCH_NATIVE=0``). Both are tested against the reference. It is the default (``backend="auto"``)
on CPU, and on CUDA where the Triton kernels cannot serve.

Dtypes: the scan runs in the promoted floating dtype of ``gx``, the states and the weights, at least
float32, and returns ``gx``'s dtype. So under autocast (``gx`` arrives as bf16/fp16 from the input
projection while the weights are float32) the recurrence is computed and accumulated in float32 and the
outputs are bf16/fp16 like the autocast ops around it; float64 stays float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import autograd, native, python_loop
from .autograd import Kernel
from .contract import ScanOptions

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

PYTHON_LOOP = Kernel("loop", python_loop.FORWARD, python_loop.BACKWARD)
autograd.register(PYTHON_LOOP)

#: Tests set this to False to run the Python loop where the C++ one would serve.
USE_NATIVE = True


def supports(opts: ScanOptions, gx: Tensor, hidden_size: int) -> str | None:
    """None if this backend can run a scan on ``gx`` (T, B, G*H), else the reason."""
    if gx.dtype not in _FLOATING:
        return f"dtype {gx.dtype} is not supported (expected one of {_FLOATING})"
    if gx.dim() != 3:
        return f"gx must be 3-D (T, B, G*H), got shape {tuple(gx.shape)}"
    return None


def implementation(opts: ScanOptions, like: Tensor) -> Kernel:
    """The C++ loop when it serves ``like``'s device and dtype and the cell, else the Python loop."""
    if USE_NATIVE and like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64) \
            and native.available(opts.cell):
        return native.kernel(opts.cell)
    return PYTHON_LOOP


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    dtype = torch.float32
    for tensor in tensors:
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def has_cell(cell: str) -> bool:
    """Every registered cell runs here (in the Python loop at least)."""
    return True


def scan(opts: ScanOptions, gx: Tensor, states: tuple[Tensor, ...], weights: tuple[Tensor | None, ...],
         lengths: Tensor | None = None, rec_mask: Tensor | None = None,
         zoneout: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction: :func:`seqtorch.reference.scan_reference`'s semantics and shapes.

    Returns output (T, B, P) (zero past each length) and the final states, in gx's dtype.
    """
    out_dtype = gx.dtype
    dtype = compute_dtype(gx, *states, *weights)

    def cast(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(dtype)

    gx = cast(gx).contiguous()
    lengths = None if lengths is None else lengths.to(torch.int64).contiguous()
    out, finals = autograd.scan(implementation(opts, gx), opts, gx, tuple(cast(s).contiguous() for s in states),
                                tuple(None if w is None else cast(w).contiguous() for w in weights), lengths,
                                None if rec_mask is None else cast(rec_mask).contiguous(),
                                None if zoneout is None else tuple(cast(z).contiguous() for z in zoneout))
    if out_dtype != dtype:
        out, finals = out.to(out_dtype), tuple(f.to(out_dtype) for f in finals)
    return out, finals
