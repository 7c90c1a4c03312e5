"""Which implementation the dispatch picks (:func:`seqtorch.ops.dispatch.choose`), by the names the tests use,
and which cells the Triton tests parametrize over."""

from __future__ import annotations

from torch import Tensor

from seqtorch.ops import dispatch
from seqtorch.ops.contract import Kernel, ScanOptions
from seqtorch.recurrent_cells import CELLS, PointwiseCell


def resolve_backend(backend: str, gx: Tensor, hidden_size: int | None = None, *, cell: str = "lstm",
                    activation: str = "tanh", recurrent_activation: str = "sigmoid") -> str:
    """The ``backend=`` name of the implementation that serves a scan of ``cell`` on ``gx`` (T, B, G*H)."""
    opts = ScanOptions(cell, activation, recurrent_activation)
    hidden_size = gx.shape[-1] // opts.cell.gates if hidden_size is None else hidden_size
    return dispatch.choose_for(backend, opts, gx, hidden_size).backend


def serving_kernel(backend: str, cell: str, gx: Tensor, hidden_size: int) -> Kernel | None:
    """The op pair that serves a scan of ``cell`` on ``gx`` with ``backend`` (None: the reference)."""
    opts = ScanOptions(cell)
    impl = dispatch.choose_for(backend, opts, gx, hidden_size)
    return None if impl.kernel is None else impl.kernel(opts)


def implementation(name: str) -> dispatch.Implementation:
    """The implementation called ``name`` ("C++ loop", "Python loop", "triton persistent", ...)."""
    return next(impl for impl in dispatch.IMPLEMENTATIONS if impl.name == name)


def built_in_triton_cells() -> list[str]:
    """The built-in cells the Triton kernels run (a ``triton.py`` in their folder), in the registry's order.
    Not the cells written as equations, which register when made, so that which exist at collection depends on
    what else was collected: they run on the Triton kernels on their own pages (``tests/cells/``) and in
    ``tests/ops/test_triton_equations.py``."""
    from seqtorch.ops.triton import common

    return [name for name in common.cell_names() if not isinstance(CELLS[name], PointwiseCell)]
