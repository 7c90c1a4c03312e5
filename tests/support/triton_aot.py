"""Ahead-of-time compiles of the Triton scan kernels for sm_90 (Hopper), with Triton's bundled ptxas, no GPU.

What the compile tests share (``tests/ops/test_triton_compile.py`` for the built-in cells,
``tests/ops/test_triton_equations.py`` for cells written as equations): the per-step inputs a launch has
(:class:`Steps`), the kernels' argument types for a launch (:func:`signature`), and :func:`compile_sm90`, which
compiles a kernel with the constexprs the launchers compute (``forward_constexprs`` / ``backward_constexprs``
of :mod:`seqtorch.ops.triton.persistent` and :mod:`~seqtorch.ops.triton.alternating`) and returns its
binaries, and :func:`cross_of_grid`, which of the (cell, option set) compiles the default test run makes (a cold
compile takes seconds on 2 cores, the whole grid minutes). Import this only after ``pytest.importorskip("triton")``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import pytest
import torch
import triton

try:
    from triton.backends.compiler import GPUTarget
except ImportError:  # pragma: no cover - an older triton
    GPUTarget = None

INTEGER_ARGS = {"T", "B", "H", "P", "UW", "t", "t_done", "SW0", "SW1", "SW2", "SW3", "SW4", "SW5", "GW0", "GW1"}


class Steps(NamedTuple):
    """Which per-step inputs a launch has: lengths, the (T, B) step mask, restart (with reset states of the
    scan's own: ``own_resets``), the recurrent-dropout mask (and with it, zoneout on every state)."""

    lengths: bool = False
    step_mask: bool = False
    restart: bool = False
    own_resets: bool = False
    rec_mask: bool = False


def signature(kernel, constexprs: dict, dtype: torch.dtype) -> dict[str, str]:
    """Each argument's type in a launch of ``kernel`` in ``dtype``: constexpr, i32, the lengths' *i64, the
    (T, B) flags' *u8 (common.step_bytes), else a pointer to ``dtype``."""
    pointer = "*fp64" if dtype == torch.float64 else "*fp32"
    types = {}
    for name in kernel.arg_names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name in INTEGER_ARGS:
            types[name] = "i32"
        elif name == "lengths":
            types[name] = "*i64"
        elif name in ("smask", "restart"):
            types[name] = "*u8"
        else:
            types[name] = pointer
    return types


def compile_sm90(kernel, constexprs: dict, num_warps: int, dtype: torch.dtype):
    """``kernel`` compiled for sm_90 with these constexprs; its ``asm`` holds the ``ttir`` and the ``cubin``."""
    source = triton.compiler.ASTSource(fn=kernel, signature=signature(kernel, constexprs, dtype), constexprs=constexprs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps))


def cross_of_grid(cells: list, option_sets: list[tuple], *, every_cell_under: str, every_set_on: str,
                  cell_id: Callable[[object], str] = str) -> list:
    """The grid of ``cells`` x ``option_sets`` (each ``(id, *values)``) as ``pytest.param(cell, *values)``, marked
    slow but for a cross of it: every cell under the option set ``every_cell_under`` (the one with the most
    per-step inputs) and every option set on the cell whose id is ``every_set_on``. So the default run compiles
    each cell and each option set at least once; ``make test-all`` compiles the whole grid."""
    assert every_cell_under in [case[0] for case in option_sets]
    assert every_set_on in [cell_id(cell) for cell in cells]
    return [pytest.param(cell, *case[1:], id=f"{cell_id(cell)}-{case[0]}",
                         marks=() if every_set_on == cell_id(cell) or case[0] == every_cell_under else pytest.mark.slow)
            for cell in cells for case in option_sets]
