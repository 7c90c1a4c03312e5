"""The fused scans behind ``backend=``, each tested against :func:`seqtorch.reference.scan_reference`.

Each backend is a module with ``supports(opts, gx, hidden_size) -> reason | None``, ``has_cell(name) -> bool`` and
``scan(opts, gx, states, weights, lengths, rec_mask) -> (output, final states)``; :data:`BACKENDS` maps
names to them and :func:`seqtorch.functional.resolve_backend` reads it (nothing else should).

* ``cpu_fused`` (:mod:`.cpu_fused`): the C++ loop on CPU, the Python loop elsewhere; any device.
* ``triton`` (:mod:`.triton_scan`): up to H=128 one persistent Triton kernel per layer and direction for
  the forward and one for the backward; above, the alternating loop (:mod:`.triton_alternating`: per step
  a cuBLAS GEMM and one Triton launch). CUDA tensors (CPU under ``TRITON_INTERPRET=1`` for tests); offered
  only when triton is importable.

Both run through :mod:`.autograd`, which gives every one the same autograd semantics, and keep the op
contract of :mod:`.contract`.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from . import cpu_fused

BACKENDS: dict[str, ModuleType] = {"cpu_fused": cpu_fused}

# triton is an optional dependency: without it, this backend is simply not offered.
if importlib.util.find_spec("triton") is not None:
    from . import triton_scan

    BACKENDS["triton"] = triton_scan
