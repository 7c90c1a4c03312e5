"""The accuracy of the C++ loops' transcendentals: exp, sigmoid and tanh of ``cpu_math.h`` against libm in
double, over every float32 input in [-90, 90] (about 2.2 billion values; past 90 they have saturated).

The loops' gate math does not call libm (its scalar expf would keep the compiler from vectorizing): it
computes exp by a Cody-Waite reduction and a polynomial, and sigmoid and tanh from it. This script compiles
``math_accuracy.cpp`` with the library's own compiler flags (``seqtorch.ops.native.compile_flags``), so it
measures the code as the library runs it, and prints the largest error in ulps (of the exact value) and the
largest absolute error of each function.

    python benchmarks/math_accuracy.py             # every input: about 2.5 minutes
    python benchmarks/math_accuracy.py --stride 997  # every 997th input: a quick check
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from seqtorch.ops import native

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="take every STRIDE-th float32 only (default: all)")
    args = parser.parse_args(argv)
    if args.stride < 1:
        parser.error(f"--stride must be 1 or more, got {args.stride}")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "math_accuracy"
        flags = [f for f in native.compile_flags() if f != "-fopenmp"]
        command = ["g++", "-std=c++17", *flags, f"-I{native.CELLS_DIR}", str(HERE / "math_accuracy.cpp"), "-o",
                   str(binary)]
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            print(f"math_accuracy: the compile failed:\n{' '.join(command)}\n{built.stderr}", file=sys.stderr)
            return 1
        print(f"flags: {' '.join(flags)}")
        return subprocess.run([str(binary), str(args.stride)]).returncode


if __name__ == "__main__":
    sys.exit(main())
