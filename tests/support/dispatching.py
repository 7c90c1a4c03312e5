"""Which implementation the dispatch picks (:func:`seqtorch.ops.dispatch.choose`), by the names the tests use."""

from __future__ import annotations

from torch import Tensor

from seqtorch.ops import dispatch
from seqtorch.ops.contract import Kernel, ScanOptions


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
