"""The C++ parts of the ``cpu_fused`` backend (``csrc/``), compiled on first use.

* ``csrc/lstm_cpu.cpp``, ``csrc/gru_cpu.cpp``: the LSTM's and the GRU's forward and BPTT loops (ops
  ``lstm_forward``, ``lstm_backward``, ``gru_forward``, ``gru_backward``; shared math in ``math.h``).
* ``csrc/buffer_pool.cpp``: a pool of large CPU buffers (``pooled_empty``) that the scans allocate from,
  so that a training step reuses the last step's memory instead of page-faulting fresh memory in.

:func:`load` returns ``torch.ops.seqtorch_cpu`` once they are built and loaded, or None when they
cannot be (no C++ compiler, a failed build, or ``SEQTORCH_NATIVE=0`` in the environment).
The build runs once per machine and torch version (torch's JIT extension builder, ~1 minute, cached
under ``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``); a failure is reported once, as a
warning, and the Python loops of :mod:`.cpu_loops` serve instead: same numbers, slower.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / name for name in ("lstm_cpu.cpp", "gru_cpu.cpp", "buffer_pool.cpp")]
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


def enabled() -> bool:
    """False when the user turned the C++ loops off with ``SEQTORCH_NATIVE=0``."""
    return os.environ.get("SEQTORCH_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def load():
    """``torch.ops.seqtorch_cpu`` (the ops listed above), or None if unavailable."""
    if not enabled():
        return None
    if "ops" not in _state:
        _state["ops"] = _build()
    return _state["ops"]


def _build():
    try:
        from torch.utils import cpp_extension

        # The name carries what the binary depends on (the sources and the headers they include, torch's
        # version, the CPU's ISA), so any change builds afresh instead of loading a stale binary.
        version = "".join(ch if ch.isalnum() else "_" for ch in torch.__version__)
        digest = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(CSRC.iterdir()))).hexdigest()[:10]
        name = f"seqtorch_cpu_{torch.backends.cpu.get_cpu_capability().lower()}_torch{version}_{digest}"
        try:  # only to say when a build (not a load) is coming: a private helper, so never fatal
            built = (Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so").exists()
        except Exception:  # noqa: BLE001
            built = False
        if not built:
            print(f"seqtorch: building the C++ CPU loops ({name}; once per machine, torch version and source "
                  f"version, about a minute)...", file=sys.stderr, flush=True)
        cpp_extension.load(name=name, sources=[str(path) for path in SOURCES], extra_cflags=_flags(),
                           is_python_module=False, verbose=False)
        return torch.ops.seqtorch_cpu
    except Exception as error:  # noqa: BLE001 - any build failure means: use the Python loops, and say so
        warnings.warn(f"seqtorch: the C++ CPU loops could not be built ({type(error).__name__}: {error}); "
                      f"the cpu_fused backend uses its Python loops (same results, slower). "
                      f"Set SEQTORCH_NATIVE=0 to skip the build.", RuntimeWarning, stacklevel=3)
        return None
