"""``python -m seqtorch.ops.build``: build the C++ library if it is not there, and say where it stands.

    python -m seqtorch.ops.build               # load it (building it if need be) and report
    python -m seqtorch.ops.build --no-build    # report what is on disk, load and build nothing
    python -m seqtorch.ops.build --print-path  # print only the loaded library's path (for load_library)

The report names the library that is loaded, where it came from (``prebuilt`` by ``pip install``, or
``jit``: compiled on first use into torch's extension cache), which cells have C++ kernels, and, when
there is no library, why. The exit status is 0 when the library is (or, with ``--no-build``, would be)
loaded without a build, else 1.
"""

from __future__ import annotations

import argparse
import sys

from ..recurrent_cells import CELLS
from . import native


def report(build: bool) -> tuple[list[str], bool]:
    """The report's lines, and whether the library is loaded (``build``) or ready to load (not ``build``)."""
    prebuilt, jit = native.prebuilt_path(), native.jit_library()
    lines = [f"build name:  {native.build_name()}",
             f"prebuilt:    {prebuilt} ({'present' if prebuilt.exists() else 'absent'})",
             f"JIT cache:   {jit} ({'present' if jit.exists() else 'absent'})",
             f"compiler:    {native.compiler() or 'none found ($CXX, else c++, on PATH)'}"]
    if not native.enabled():
        return lines + ["state:       turned off (SEQTORCH_NATIVE=0): the Python loop serves every cell"], False
    if not build:
        ready = prebuilt.exists() or jit.exists()
        return lines + [f"state:       {'ready to load' if ready else 'not built: the first use compiles it'}"], ready
    if native.load() is None:
        return lines + [f"state:       no library: {native.failure()}",
                        "             the Python loop serves every cell (same results, slower)"], False
    cells = native.cpp_cells()
    without = [name for name in CELLS if name not in cells] or ["(none)"]
    return lines + [f"state:       loaded ({native.origin()}) from {native.library_path()}",
                    f"C++ kernels: {', '.join(name for name in CELLS if name in cells)}",
                    f"Python loop only: {', '.join(without)}"], True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqtorch.ops.build", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-build", action="store_true", help="report what is on disk; load and build nothing")
    mode.add_argument("--print-path", action="store_true",
                      help="print only the path of the library (building it if need be)")
    args = parser.parse_args(argv)
    if args.print_path:
        path = native.library_path()
        if path is None:
            print(f"seqtorch: no C++ library: {native.failure() or 'turned off (SEQTORCH_NATIVE=0)'}",
                  file=sys.stderr)
            return 1
        print(path)
        return 0
    lines, ok = report(build=not args.no_build)
    print("\n".join(["seqtorch C++ library"] + ["  " + line for line in lines]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
