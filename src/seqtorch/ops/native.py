"""The C++ library of the ``cpu_fused`` backend, compiled on first use, and its op pair.

* ``csrc/scan.cpp``: the scan loop, forward and BPTT, written once for every cell that has a ``cpu.h``
  in its folder (ops ``seqtorch::scan_forward_cpp`` / ``scan_backward_cpp``, the schema of
  :mod:`.contract`). The build writes ``cells_generated.h``, which includes those headers and lists the
  cells, so adding a cell's C++ code needs no edit here.
* ``csrc/buffer_pool.cpp``: a pool of large CPU buffers (``seqtorch::pooled_empty``) that the scans
  allocate from, so that a training step reuses the last step's memory instead of page-faulting fresh
  memory in.

:func:`load` returns ``torch.ops.seqtorch`` once the library is built and loaded, or None when it cannot
be (no C++ compiler, a failed build, or ``SEQTORCH_NATIVE=0`` in the environment). The build runs once
per machine, torch version and source version (torch's JIT extension builder, about a minute, cached
under ``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``); a failure is reported once, as a
warning, and the Python loop serves instead: same numbers, slower.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")
CELLS_DIR = Path(__file__).resolve().parent.parent / "recurrent_cells"
SOURCES = [CSRC / name for name in ("scan.cpp", "buffer_pool.cpp")]
_state: dict = {}


def _flags() -> list[str]:
    # -ffp-contract=off: no fused multiply-adds the reference does not do (hard_sigmoid's 0.2 x + 0.5 must
    # round exactly as torch's). -fno-trapping-math lets the exp polynomial vectorize. The ISA flags
    # follow what torch itself detected on this CPU, so the build runs wherever it was built.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def cell_headers() -> dict[str, Path]:
    """Each registered cell's ``cpu.h``, for the cells that have one."""
    from ..recurrent_cells import CELLS

    return {name: CELLS_DIR / name / "cpu.h" for name in CELLS if (CELLS_DIR / name / "cpu.h").exists()}


def generated_header() -> str:
    """``cells_generated.h``: includes every cell's cpu.h and lists the cells for scan.cpp's dispatch."""
    headers = cell_headers()
    lines = ["// Written by seqtorch/ops/native.py from the cell registry: do not edit.", "#pragma once", ""]
    lines += [f'#include "{path.as_posix()}"' for path in headers.values()]
    lines += ["", "#define SEQTORCH_FOR_EACH_CELL(X) " + " ".join(f"X({name})" for name in headers), ""]
    return "\n".join(lines)


def build_name() -> str:
    """The library's name: it carries what the binary depends on (every source, header and cell header,
    torch's version, the CPU's ISA), so any change builds afresh instead of loading a stale binary."""
    version = "".join(ch if ch.isalnum() else "_" for ch in torch.__version__)
    parts = [path.read_bytes() for path in sorted(CSRC.iterdir()) if path.is_file()]
    parts += [path.read_bytes() for path in cell_headers().values()] + [generated_header().encode()]
    digest = hashlib.sha256(b"".join(parts)).hexdigest()[:10]
    return f"seqtorch_cpu_{torch.backends.cpu.get_cpu_capability().lower()}_torch{version}_{digest}"


def enabled() -> bool:
    """False when the user turned the C++ loops off with ``SEQTORCH_NATIVE=0``."""
    return os.environ.get("SEQTORCH_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def load():
    """``torch.ops.seqtorch`` with the C++ ops registered, or None if unavailable."""
    if not enabled():
        return None
    if "ops" not in _state:
        _state["ops"] = _build()
    return _state["ops"]


@torch.compiler.assume_constant_result
def available(cell: str) -> bool:
    """Whether the C++ loop serves ``cell`` (building the library on the first call). torch.compile runs
    this at trace time and keeps the answer: a build cannot be traced, and after it :func:`kernel` is a
    lookup that can."""
    return kernel(cell) is not None


def kernel(cell: str):
    """The C++ loop's op pair (a :class:`~.autograd.Kernel`) if the library is loaded and has ``cell``."""
    if load() is None:
        return None
    if "kernel" not in _state:
        from .autograd import Kernel, register
        from .contract import register_fakes

        ops = torch.ops.seqtorch
        _state["kernel"] = Kernel("cpp", ops.scan_forward_cpp.default, ops.scan_backward_cpp.default)
        # the cells the library was built with (its generated header's), read without calling an op: a
        # tracer (torch.export) may be recording when this first runs
        _state["cells"] = frozenset(cell_headers())
        register_fakes(_state["kernel"].forward, _state["kernel"].backward)
        register(_state["kernel"])
    return _state["kernel"] if cell in _state["cells"] else None


def _build():
    try:
        from torch.utils import cpp_extension

        name = build_name()
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))  # private, but stable
        if not (build_dir / f"{name}.so").exists():
            print(f"seqtorch: building the C++ CPU loops ({name}; once per machine, torch version and source "
                  f"version, about a minute)...", file=sys.stderr, flush=True)
        generated = build_dir / "generated"
        generated.mkdir(parents=True, exist_ok=True)
        header, text = generated / "cells_generated.h", generated_header()
        if not header.exists() or header.read_text() != text:  # an unchanged header must keep its mtime:
            # ninja would rebuild the library otherwise. Written whole, then renamed: a process building at
            # the same time never reads half of it.
            partial = generated / f"cells_generated.h.{os.getpid()}"
            partial.write_text(text)
            os.replace(partial, header)
        cpp_extension.load(name=name, sources=[str(path) for path in SOURCES], extra_cflags=_flags(),
                           extra_include_paths=[str(CSRC), str(generated)], is_python_module=False, verbose=False)
        return torch.ops.seqtorch
    except Exception as error:  # noqa: BLE001 - any build failure means: use the Python loops, and say so
        warnings.warn(f"seqtorch: the C++ CPU loops could not be built ({type(error).__name__}: {error}); "
                      f"the cpu_fused backend uses its Python loop (same results, slower). "
                      f"Set SEQTORCH_NATIVE=0 to skip the build.", RuntimeWarning, stacklevel=3)
        return None
