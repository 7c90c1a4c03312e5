"""The C++ loop of a cell generated from its equations: a library of its own, compiled on first use, cached.

The main library (:mod:`.native`) is built from the cells that have a ``cpu.h`` in their folder, before a
user's :class:`~seqtorch.PointwiseCell` exists. Such a cell's C++ code
(:meth:`~seqtorch.recurrent_cells.Cell.generated_cpp`) is compiled with the same ``csrc/scan.cpp`` and
``csrc/buffer_pool.cpp`` (one translation unit: ATen's headers, half the compile time, parsed once) into a
library of its own, whose ops are registered in a namespace of their own
(``torch.ops.seqtorch_gen_<hash>.scan_forward_cpp``; ``csrc/ops_namespace.h``), so it never clashes with
the main library or another one. The library holds every cell of the cell's module made so far
(:func:`group`; the cells of :mod:`seqtorch.equations` all five): they build as one, in about the time of
one. Its op pair keeps the contract's schema (:mod:`.contract`): the dispatch, the
autograd layer and every transform serve it unchanged, with :func:`native.kernel <.native.kernel>`
handing out its :class:`~.contract.Kernel`.

Where: ``$SEQTORCH_CACHE`` if set, else ``seqtorch_cells`` in torch's extensions folder
(``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``), one folder per library named by the hash of
everything the binary depends on (the cells' generated headers, every ``csrc`` source and the C++ cell
interface, the flags, torch's version, the CPU's ISA: :func:`library_name`). The folder keeps the generated
``<cell>.h`` and the Python loop's code to read, and the built library; a later process loads it without a
build. A failed build is reported once per cell as a warning, and the cell runs on the Python loop (same
results, slower).

Its buffer pool is the library's own (the same code as the main library's); :func:`set_poison` reaches
every loaded one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from . import native
from .contract import Kernel, register_fakes

_libraries: dict[str, object] = {}   # library name -> its torch.ops namespace
_kernels: dict[str, Kernel] = {}
_failures: dict[str, str] = {}
_POISON = [False]
_on_load: list = []  # callbacks (the ONNX exporter's registration) told each library's name when it loads


def cache_root() -> Path:
    """Where generated cells' libraries live: ``$SEQTORCH_CACHE``, else torch's extensions folder."""
    if os.environ.get("SEQTORCH_CACHE"):
        return Path(os.environ["SEQTORCH_CACHE"]).expanduser()
    from torch.utils import cpp_extension

    return Path(cpp_extension._get_build_directory("", verbose=False)) / "seqtorch_cells"  # private, but stable


def library_name(header: str) -> str:
    """The library's name and op namespace: ``seqtorch_gen_`` and a hash of the header, the sources it compiles
    and the main library's build name (which hashes every csrc source, the C++ cell interface, the flags,
    torch's version and the ISA)."""
    sources = " ".join(path.name for path in native.SCAN_SOURCES)
    digest = hashlib.sha256((native.build_name() + "\n" + sources + "\n" + header).encode()).hexdigest()[:16]
    return f"seqtorch_gen_{digest}"


def kernel(cell) -> Kernel | None:
    """The op pair of ``cell``'s own C++ library, building or loading it on the first call; None when the
    cell has no generated C++ code, the C++ loops are off, or the build failed (:func:`failure` says why)."""
    if cell.name in _kernels:
        return _kernels[cell.name]
    if cell.name in _failures or not native.enabled() or cell.generated_cpp() is None:
        return None
    cells = group(cell)
    try:
        name = _load(cells)
    except Exception as error:  # noqa: BLE001 - a failed build means: the Python loop serves, said once
        why = f"the C++ loop of cell {cell.name} could not be built ({type(error).__name__}: {error})"
        _failures.update((c.name, why) for c in cells)
        warnings.warn(f"seqtorch: {why}; it runs on the Python loop (same results, slower)", RuntimeWarning,
                      stacklevel=4)
        return None
    ops = getattr(torch.ops, name)
    ops.set_poison_buffers(_POISON[0])
    _libraries[name] = ops
    for callback in _on_load:
        callback(name)
    forward, backward = ops.scan_forward_cpp.default, ops.scan_backward_cpp.default
    register_fakes(forward, backward)
    for c in cells:
        _kernels.setdefault(c.name, Kernel(f"cpp_{name}", forward, backward))
    return _kernels[cell.name]


def group(cell) -> list:
    """The cells built into one library with ``cell``: it, and every other cell of its class's module made
    so far (registered) that has C++ code and no library yet; for a shipped cell, all the shipped ones."""
    from ..recurrent_cells import CELLS, equations

    module = type(cell).__module__
    if module == equations.__name__:  # the shipped cells build as one library, whichever of them runs first
        for cls in equations.SHIPPED:
            cls()
    cells = {other.name: other for other in CELLS.values()
             if type(other).__module__ == module and other.name not in _kernels and other.name not in _failures
             and other.generated_cpp() is not None}
    cells[cell.name] = cell
    return [cells[name] for name in sorted(cells)]


def loaded() -> list[str]:
    """The names (op namespaces) of the libraries loaded in this process."""
    return list(_libraries)


def on_load(callback) -> None:
    """Call ``callback(name)`` for each library loaded, now and from now on (how :mod:`seqtorch.onnx` adds
    the translation of each library's op without this module knowing of it)."""
    _on_load.append(callback)
    for name in _libraries:
        callback(name)


def failure(cell: str) -> str | None:
    """Why ``cell``'s library could not be built in this process (None if it was, or was not tried)."""
    return _failures.get(cell)


def set_poison(on: bool) -> None:
    """NaN-fill every fresh buffer of every loaded generated library (and of those loaded later)."""
    _POISON[0] = bool(on)
    for ops in _libraries.values():
        ops.set_poison_buffers(_POISON[0])


def _load(cells) -> str:
    """Build (unless cached) and load the library of ``cells``; its name (the ops' namespace)."""
    headers = {cell.name: cell.generated_cpp() for cell in cells}
    name = library_name("\n".join(headers.values()))
    directory = cache_root() / name
    library = directory / f"{name}.so"
    if not library.exists():
        _build(cells, headers, name, directory)
    torch.ops.load_library(str(library))
    return name


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole, then rename (a process building at the same time never reads half of it); left as
    it is when it says the same (a newer file would make ninja rebuild)."""
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _build(cells, headers: dict[str, str], name: str, directory: Path) -> None:
    from torch.utils import cpp_extension

    if native.compiler() is None:
        raise RuntimeError(f"no C++ compiler: {cpp_extension.get_cxx_compiler()!r} ($CXX, else c++) is not on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        _write(directory / f"{cell.name}.h", headers[cell.name])
        if cell.generated_python() is not None:
            _write(directory / f"{cell.name}_loop.py", cell.generated_python())
    _write(directory / native.GENERATED_HEADER, "\n".join([
        f"// Written by seqtorch/ops/native_cells.py: the cells of library {name}.", "#pragma once", "",
        *(f'#include "{cell}.h"' for cell in headers), "",
        "#define SEQTORCH_FOR_EACH_CELL(X) " + " ".join(f"X({cell})" for cell in headers), ""]))
    # one translation unit: the ATen headers, half of the compile time, are parsed once
    _write(directory / "library.cpp", "\n".join([
        f"// Written by seqtorch/ops/native_cells.py: library {name}, the scan and its buffer pool as one unit.",
        *(f'#include "{path.name}"' for path in native.SCAN_SOURCES), ""]))
    native._clear_stale_lock(directory / "lock")
    names = ", ".join(headers)
    print(f"seqtorch: compiling the C++ loop of {names} into {directory} (once per machine; about 20 s of one "
          f"core)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    # the folder first on the include path: its cells_generated.h, not the main library's
    cpp_extension.load(name=name, sources=[str(directory / "library.cpp")],
                       extra_cflags=native.compile_flags() + [f"-DSEQTORCH_OPS_NAMESPACE={name}"],
                       extra_ldflags=native.openmp_flags(),
                       extra_include_paths=[str(directory), *(str(p) for p in native.include_dirs(directory))],
                       build_directory=str(directory), is_python_module=False, verbose=False)
    print(f"seqtorch: compiled {names} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
