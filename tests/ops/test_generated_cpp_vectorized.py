"""The C++ that the generator writes vectorizes, as the hand-written cells' does: every row loop of every
shipped cell (and of a cell using bools, where and log/exp together) is reported vectorized by GCC
(``-fopt-info-vec-optimized``) with the library's own flags. A loop left scalar runs the cell several times
slower without changing a number, so only this test would notice (the SLSTM's forward once did: more than
ten overlap checks between blocks of one pointer)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

import seqtorch
from seqtorch.ops import native


class Clipped(seqtorch.PointwiseCell):
    """Bools saved for the backward (a maximum's ties), where, log and exp in one loop."""

    gates = 2

    def forward(self, z, h):
        a, b = z.chunk(2, dim=-1)
        m = torch.maximum(torch.log1p(torch.exp(a)), h)
        return torch.where(b > 0, m, torch.exp(-m) * b)


def instantiation(cell, function: str) -> str:
    """An explicit instantiation of ``cell``'s row function for float (so that it is compiled)."""
    params = re.search(rf"static void {function}\((.*?)\) {{", cell.generated_cpp(), re.S).group(1)
    types = [p.strip().rsplit(" ", 1)[0].replace(" __restrict", "").replace("T*", "float*") for p in params.split(",")]
    return f"template void seqtorch_cpu::cells::{cell.name}::{function}<float>({', '.join(types)});"


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_every_generated_row_loop_is_vectorized(tmp_path):
    from torch.utils import cpp_extension

    cells = [cls() for cls in seqtorch.equations.SHIPPED] + [Clipped()]
    source = []
    for cell in cells:
        (tmp_path / f"{cell.name}.h").write_text(cell.generated_cpp())
        source += [f'#include "{cell.name}.h"', instantiation(cell, "forward_row"), instantiation(cell, "backward_row")]
    (tmp_path / "rows.cpp").write_text("\n".join(source) + "\n")
    includes = [f"-I{path}" for path in [tmp_path, native.CSRC, native.CELLS_DIR, *cpp_extension.include_paths()]]
    result = subprocess.run(["c++", "-std=c++17", "-fPIC", *native.compile_flags(), *includes,
                             "-fopt-info-vec-optimized", "-c", str(tmp_path / "rows.cpp"), "-o", str(tmp_path / "rows.o")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    scalar = []
    for cell in cells:
        function = None
        for number, line in enumerate(cell.generated_cpp().splitlines(), 1):
            function = re.search(r"static void (\w+_row)", line).group(1) if "_row(" in line and "static" in line \
                else function
            if "for (int64_t j = 0; j < H; ++j)" in line and \
                    not re.search(rf"{cell.name}\.h:{number}:\d+: optimized: loop vectorized", result.stderr):
                scalar.append(f"{cell.name}.h:{number} ({function})")
    assert not scalar, f"row loops left scalar: {scalar}"
