"""The install-time build of seqtorch's C++ library (the metadata is in pyproject.toml).

When torch can be imported by the build (``pip install --no-build-isolation``, after torch) and a C++
compiler works, ``pip install`` compiles ``seqtorch/ops/<build name><EXT_SUFFIX>`` with torch's
``BuildExtension``, from what :mod:`seqtorch.ops.native` says the library is made of (sources, flags,
include path, the generated headers), so that the first ``import seqtorch`` loads it instead of compiling
it. Without torch in the build environment (pip's default isolated build), or when the compile fails (no
compiler), the install goes on without it, says why, and the JIT build of :mod:`seqtorch.ops.native` at
first use stays the fallback.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
PREBUILD_SKIPPED = (
    "seqtorch: the C++ library is not prebuilt ({}); its first use compiles it where a C++ compiler is found, "
    "else the Python loops serve")


def _say(message: str) -> None:
    # pip shows a build's output only with -v (the Makefile's lines frame its quiet install);
    # `python -m seqtorch.ops.build` reports the state later.
    print(message, file=sys.stderr, flush=True)


def _native_build():
    """``(ext_modules, cmdclass)`` for the C++ library, or empty ones when torch is not importable here."""
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as error:
        _say(PREBUILD_SKIPPED.format(f"torch is not importable in the build environment: {error}; "
                                     f"install torch first, then `pip install --no-build-isolation .`"))
        return [], {}
    # seqtorch.ops without seqtorch/__init__.py: the package's own imports (numpy, onnx's registration)
    # need dependencies that pip installs only after this build.
    package = types.ModuleType("seqtorch")
    package.__path__ = [str(HERE / "src" / "seqtorch")]
    sys.modules["seqtorch"] = package
    from seqtorch.ops import native  # the one description of the library, shared with the JIT build

    if native.compiler() is None:
        _say(PREBUILD_SKIPPED.format("no C++ compiler: $CXX, else c++, is not on PATH"))
        return [], {}
    extension = CppExtension(
        name=f"seqtorch.ops.{native.build_name()}",
        sources=[str(path.relative_to(HERE)) for path in native.SOURCES],
        # -g0: Python's own build flags (sysconfig) ask for debug info, 13x the library's size
        extra_compile_args=native.compile_flags() + ["-g0"], extra_link_args=native.openmp_flags())
    # The library calls no Python API: without libtorch_python it loads in a libtorch-only program too.
    extension.libraries = [name for name in extension.libraries if name != "torch_python"]

    class BuildNative(BuildExtension):
        def build_extensions(self):
            generated = native.write_generated_headers(Path(self.build_temp).resolve() / "generated")
            for ext in self.extensions:
                ext.include_dirs = [str(path) for path in native.include_dirs(generated)] + ext.include_dirs
            _say(f"seqtorch: compiling the C++ library {native.build_name()} with {native.compiler()} (about "
                 f"a minute on 2 cores)...")
            started = time.perf_counter()
            try:
                super().build_extensions()
            except Exception as error:  # noqa: BLE001 - any compile failure: install without it, visibly
                _say(PREBUILD_SKIPPED.format(f"the compile failed: {type(error).__name__}: {error}"))
                self.extensions = []  # nothing to copy into the package or the wheel
                return
            _say(f"seqtorch: the C++ library compiled in {time.perf_counter() - started:.0f} s")

    return [extension], {"build_ext": BuildNative}


ext_modules, cmdclass = _native_build()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
