"""Fused recurrent scans: the fast paths behind ``backend=``.

Each backend provides a scan with exactly the signature of
:func:`seqtorch.reference.recurrent_scan_reference` (and is tested against it), plus a ``supports``
rule that says, for given inputs, why it cannot serve them (a string) or None when it can.
:func:`seqtorch.functional.resolve_backend` reads these two tables; nothing else should.

* ``cpu_fused`` (:mod:`.cpu_fused`): forward and hand-written BPTT loops on preallocated buffers,
  no per-step autograd graph. Any device; the default on CPU.
* ``triton`` (:mod:`.triton_scan`): one persistent Triton kernel per layer and direction for the
  forward and one for the backward. CUDA tensors (CPU under ``TRITON_INTERPRET=1`` for tests);
  registered only when triton is importable.
"""

from __future__ import annotations

import importlib.util

SCANS: dict = {}
SUPPORTS: dict = {}


def _register() -> None:
    if importlib.util.find_spec("seqtorch.ops.cpu_fused") is not None:
        from .cpu_fused import recurrent_scan_cpu_fused, supports_cpu_fused

        SCANS["cpu_fused"], SUPPORTS["cpu_fused"] = recurrent_scan_cpu_fused, supports_cpu_fused
    # triton is an optional dependency: without it, this backend is simply not offered.
    if importlib.util.find_spec("triton") is not None and importlib.util.find_spec("seqtorch.ops.triton_scan"):
        from .triton_scan import recurrent_scan_triton, supports_triton

        SCANS["triton"], SUPPORTS["triton"] = recurrent_scan_triton, supports_triton


_register()
