"""The C++ library of the ``cpu_fused`` backend: what it is built from, where it is found, and its op pair.

* ``csrc/scan.cpp``: the scan loop, forward and BPTT, written once for every cell that has a ``cpu.h``
  in its folder (ops ``seqtorch::scan_forward_cpp`` / ``scan_backward_cpp``, the schema of
  :mod:`.contract`, defined in C++ so that a process without seqtorch's Python can load the library and
  run an exported model); ``csrc/step.cpp``, one step of a cell (``seqtorch::cell_step``); ``csrc/layer.cpp``,
  a layer's scan with its input projection and autograd (``seqtorch::scan_layer``). All run the
  cells through the C++ cell interface, which lives beside the cells
  (``recurrent_cells/cpu_cell.h``, ``cpu_math.h``, ``cpu_layernorm.h``, ``cpu_pointwise_math.h``). The
  build writes two headers from the cell registry (:func:`write_generated_headers`): ``cells_generated.h``
  (:func:`generated_header`), which includes those cells' headers and lists the cells, so adding a cell's
  C++ code needs no edit here, and ``cell_slots.h`` (:func:`slots_header`), each cell's buffer slots named
  by its spec (:mod:`seqtorch.recurrent_cells.cpu_slots`).
* ``csrc/buffer_pool.cpp``: a pool of large CPU buffers (``seqtorch::pooled_empty``) that the scans
  allocate from, so that a training step reuses the last step's memory instead of page-faulting fresh
  memory in.

Where the library comes from (:func:`load`, once per process), first that exists:

1. **prebuilt**: ``seqtorch/ops/<build name><EXT_SUFFIX>``, compiled by ``pip install`` (``setup.py``,
   torch's ``BuildExtension``). The build name carries a hash of every source (:func:`build_name`), so a
   prebuilt binary whose sources have changed since (an editable install after an edit) is not loaded.
2. **JIT**: compiled on first use by torch's JIT extension builder (needs a C++ compiler and ninja, about
   a minute, once per machine, torch version and source version), cached under ``TORCH_EXTENSIONS_DIR``
   or ``~/.cache/torch_extensions``.

:func:`load` returns ``torch.ops.seqtorch`` once the library is loaded, or None when it cannot be (no
prebuilt library and no compiler, a failed build, or ``SEQTORCH_NATIVE=0`` in the environment); a
failure is reported once, as a warning, and the Python loop serves instead: same numbers, slower.
:func:`library_path` says which file was loaded; ``python -m seqtorch.ops.build`` reports it all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path

import torch

from ..recurrent_cells import cpu_slots

PACKAGE_DIR = Path(__file__).resolve().parent
CSRC = PACKAGE_DIR / "csrc"
CELLS_DIR = PACKAGE_DIR.parent / "recurrent_cells"
# the scan and its buffer pool: what a library of cells from equations compiles too (native_cells.py); the
# cell step op (step.cpp) and the layer op (layer.cpp) only the main library has
SCAN_SOURCES = [CSRC / name for name in ("scan.cpp", "buffer_pool.cpp")]
SOURCES = SCAN_SOURCES[:1] + [CSRC / "step.cpp", CSRC / "layer.cpp"] + SCAN_SOURCES[1:]
GENERATED_HEADER = "cells_generated.h"
_state: dict = {}


def compile_flags() -> list[str]:
    """The compiler flags of both builds (install time and JIT)."""
    # -ffp-contract=off: no fused multiply-adds the reference does not do (hard_sigmoid's 0.2 x + 0.5 must
    # round exactly as torch's). -fno-trapping-math lets the exp polynomial vectorize. The ISA flags
    # follow what torch itself detected on this CPU, so the build runs wherever it was built.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    if capability == "AVX512":  # torch's AVX512 level: F, BW, DQ and VL, all four
        flags += ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"]
    return flags + openmp_flags()


def openmp_flags() -> list[str]:
    """``-fopenmp`` where torch runs its intra-op threads on OpenMP (Linux wheels: GNU OpenMP), for compiling
    and linking. ATen's ``at::parallel_for`` is a header template: compiled without it, every parallel loop
    of the library runs on the calling thread alone (``_OPENMP`` undefined). The library then shares
    torch's OpenMP runtime (the same ``libgomp.so.1``, already loaded by libtorch_cpu)."""
    return ["-fopenmp"] if torch.backends.openmp.is_available() and sys.platform.startswith("linux") else []


def include_dirs(generated_dir: Path) -> list[Path]:
    """The include path of both builds: csrc's headers, the cells' folder (the C++ cell interface and each
    cell's folder), the generated headers' folder."""
    return [CSRC, CELLS_DIR, generated_dir]


def interface_headers() -> list[Path]:
    """The C++ cell interface: the headers beside the cells that every cell's code may include."""
    return sorted(CELLS_DIR.glob("*.h"))


def cell_headers() -> dict[str, Path]:
    """Each registered cell's ``cpu.h``, for the cells that have one."""
    from ..recurrent_cells import CELLS

    return {name: CELLS_DIR / name / "cpu.h" for name in CELLS if (CELLS_DIR / name / "cpu.h").exists()}


def generated_header() -> str:
    """``cells_generated.h``: includes every cell's cpu.h and lists the cells for scan.cpp's dispatch.

    The includes are relative to :data:`CELLS_DIR` (on the include path), so the text, and with it
    :func:`build_name`, is the same in the source tree that ``pip install`` builds from and in the
    installed package."""
    headers = cell_headers()
    lines = ["// Written by seqtorch/ops/native.py from the cell registry: do not edit.", "#pragma once", ""]
    lines += [f'#include "{name}/cpu.h"' for name in headers]
    lines += ["", "#define SEQTORCH_FOR_EACH_CELL(X) " + " ".join(f"X({name})" for name in headers), ""]
    return "\n".join(lines)


def slots_header() -> str:
    """``cell_slots.h``: the buffer slots of every cell with a cpu.h, by the names its spec gives them
    (``lstm_slots::Saved::A``; :mod:`seqtorch.recurrent_cells.cpu_slots`), which its cpu.h includes."""
    from ..recurrent_cells import CELLS

    return cpu_slots.header([CELLS[name] for name in cell_headers()])


def write_generated_headers(directory: Path) -> Path:
    """Write :func:`generated_header` and :func:`slots_header` to ``directory`` and return it. Each is written
    whole, then renamed: a process building at the same time never reads half of it. Each is left as it is
    when it already says the same: a newer header would make ninja recompile scan.cpp (a minute) in every
    fresh process."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in ((GENERATED_HEADER, generated_header()), (cpu_slots.HEADER, slots_header())):
        path = directory / name
        if path.exists() and path.read_text() == text:
            continue
        partial = directory / f"{name}.{os.getpid()}"
        partial.write_text(text)
        os.replace(partial, path)
    return directory


def build_name() -> str:
    """The library's name: it carries what the binary depends on (every source and header, the cell
    interface, each cell's header, the generated headers, the compiler flags, torch's version, the CPU's
    ISA), so any change (a renamed slot included) builds afresh instead of loading a stale binary."""
    version = "".join(ch if ch.isalnum() else "_" for ch in torch.__version__)
    sources = sorted(CSRC.glob("*.cpp")) + sorted(CSRC.glob("*.h")) + interface_headers()
    parts = [path.read_bytes() for path in sources]
    parts += [path.read_bytes() for path in cell_headers().values()]
    parts += [generated_header().encode(), slots_header().encode()]
    parts.append(" ".join(compile_flags()).encode())  # other flags, another binary
    digest = hashlib.sha256(b"".join(parts)).hexdigest()[:10]
    return f"seqtorch_cpu_{torch.backends.cpu.get_cpu_capability().lower()}_torch{version}_{digest}"


def prebuilt_path() -> Path:
    """Where ``pip install`` puts the library built from these sources (it may not exist)."""
    return PACKAGE_DIR / f"{build_name()}{sysconfig.get_config_var('EXT_SUFFIX')}"


def jit_name() -> str:
    """The JIT build's name: :func:`build_name` and where these sources lie. torch's builder (ninja) rebuilds
    a library whose compile command changed, and the command names the sources' folders: two source trees
    of the same text sharing one extension cache (a clone and an editable install, two environments) took
    turns rebuilding one library, minutes each, and a process that found the other tree's build waited for
    its own. Each tree builds once, in its own folder."""
    where = hashlib.sha256(f"{CSRC}\n{CELLS_DIR}".encode()).hexdigest()[:6]
    return f"{build_name()}_{where}"


def jit_dir() -> Path:
    """The folder torch's JIT extension builder builds this library in (created if absent)."""
    from torch.utils import cpp_extension

    return Path(cpp_extension._get_build_directory(jit_name(), verbose=False))  # private, but stable


def jit_library() -> Path:
    """The library a JIT build makes (it may not exist yet): in :func:`jit_dir`, named as it is."""
    directory = jit_dir()
    return directory / f"{directory.name}.so"


def compiler() -> str | None:
    """The C++ compiler torch's extension builders run (``$CXX``, else ``c++``), if it is on PATH."""
    from torch.utils import cpp_extension

    return shutil.which(cpp_extension.get_cxx_compiler())


def enabled() -> bool:
    """False when the user turned the C++ loops off with ``SEQTORCH_NATIVE=0``."""
    return os.environ.get("SEQTORCH_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def load():
    """``torch.ops.seqtorch`` with the C++ ops registered, or None if unavailable."""
    if not enabled():
        return None
    if "ops" not in _state:
        _state["ops"] = _load_library()
        if _state["ops"] is not None:
            _register()
    return _state["ops"]


def loaded():
    """The ops :func:`load` gives, without reading ``SEQTORCH_NATIVE`` again once the library is loaded: for a
    caller that has just chosen the C++ loop in this call (through :func:`load` or :func:`cpp_cells`). Reading
    the environment takes about a microsecond, which a small layer call would otherwise pay twice."""
    ops = _state.get("ops")
    return ops if ops is not None else load()


def library_path() -> Path | None:
    """The shared library that holds the C++ ops, loading (and if need be building) it first; None if
    there is none (see :func:`failure`). A process that only needs to run an exported model loads it
    with ``torch.ops.load_library(path)``, without importing seqtorch."""
    return _state.get("path") if load() is not None else None


def origin() -> str | None:
    """``"prebuilt"`` or ``"jit"``: where the loaded library came from (None before :func:`load`)."""
    return _state.get("origin")


def failure() -> str | None:
    """Why the library could not be loaded in this process (None if it was, or was not tried)."""
    return _state.get("error")


def kernel(cell: str):
    """The library's op pair (a :class:`~.contract.Kernel`) if it is loaded and has ``cell`` (a cell with a
    ``cpu.h``); a cell from equations has a library of its own (:mod:`.native_cells`)."""
    if load() is None or cell not in _state["cells"]:
        return None
    return _state["kernel"]


def _register() -> None:
    """What Python adds to the library's ops: their fake kernels (for torch.compile, torch.export and
    AOTInductor). Their autograd formula is registered by :mod:`.dispatch`, which runs them; a process
    that only runs an exported program needs neither."""
    from .contract import Kernel, register_fakes

    ops = torch.ops.seqtorch
    _state["kernel"] = Kernel("cpp", ops.scan_forward_cpp.default, ops.scan_backward_cpp.default)
    _state["cells"] = _query_cells()
    register_fakes(_state["kernel"].forward, _state["kernel"].backward)


def cpp_cells() -> frozenset[str]:
    """The cells the C++ library has kernels for (loading it first; empty without a library)."""
    return _state["cells"] if load() is not None else frozenset()


def _query_cells() -> frozenset[str]:
    # The cells the library was built with: those of its generated header, which its name hashes (so a
    # loaded library has exactly these). Read without calling an op: the first load may come from inside
    # a trace (torch.export's non-strict mode runs this Python), which would record the call.
    return frozenset(cell_headers())


def _load_library():
    prebuilt = prebuilt_path()
    try:
        if prebuilt.exists():
            torch.ops.load_library(str(prebuilt))
            _state.update(path=prebuilt, origin="prebuilt")
        else:
            _state.update(path=_build_jit(), origin="jit")
        return torch.ops.seqtorch
    except Exception as error:  # noqa: BLE001 - any load or build failure means: use the Python loops, and say so
        _state["error"] = f"{type(error).__name__}: {error}"
        warnings.warn(f"seqtorch: the C++ CPU loops could not be loaded or built ({_state['error']}); "
                      f"the cpu_fused backend uses its Python loop (same results, slower). "
                      f"Set SEQTORCH_NATIVE=0 to skip the build.", RuntimeWarning, stacklevel=3)
        return None


#: A build takes about a minute; a lock older than this was left by a build that was killed.
STALE_LOCK_SECONDS = 15 * 60


def _clear_stale_lock(lock: Path) -> None:
    """torch's builder waits, without end, for the lock file of a build in progress; a build that was
    killed leaves its lock behind, and every later process would hang on it. An old one is removed, saying so."""
    import time

    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        warnings.warn(f"seqtorch: removing {lock}, left {age / 60:.0f} minutes ago by a C++ build that did not "
                      f"finish", RuntimeWarning, stacklevel=4)
        lock.unlink(missing_ok=True)


def _build_jit() -> Path:
    """Build the library with torch's JIT extension builder (or find it in its cache); its path."""
    from torch.utils import cpp_extension

    library = jit_library()  # the names hash every source: computed once (about a millisecond each)
    name, directory = library.stem, library.parent
    if not library.exists():
        if compiler() is None:
            raise RuntimeError(f"no C++ compiler: {cpp_extension.get_cxx_compiler()!r} ($CXX, else c++) is not "
                               f"on PATH, and there is no prebuilt library at {prebuilt_path()}")
        print(f"seqtorch: building the C++ CPU loops ({name}; once per machine, torch version and source "
              f"version, about a minute)...", file=sys.stderr, flush=True)
    generated = write_generated_headers(directory / "generated")
    _clear_stale_lock(directory / "lock")
    cpp_extension.load(name=name, sources=[str(path) for path in SOURCES], extra_cflags=compile_flags(),
                       extra_ldflags=openmp_flags(),
                       extra_include_paths=[str(path) for path in include_dirs(generated)],
                       is_python_module=False, verbose=False)
    return library
