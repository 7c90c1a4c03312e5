"""Shared test settings: the one table of tolerances, and helpers every parity test uses."""

import pytest
import torch

# Max abs error allowed between two implementations of the same math, per dtype. A test never loosens these.
TOL = {
    torch.float64: dict(atol=1e-10, rtol=0.0),
    torch.float32: dict(atol=1e-5, rtol=0.0),
}


def assert_close(actual, expected, dtype=None, msg=""):
    """Max-abs-error comparison against the table above (rtol 0: an absolute bound, as the issues state)."""
    tol = TOL[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, **tol, msg=lambda m: f"{msg}\n{m}" if msg else m)


@pytest.fixture(autouse=True)
def _no_tf32():
    """Parity needs full float32 matmuls (TF32 would be a different computation)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def cpu_backends():
    """The backends the torch.nn parity grids run on: those that serve CPU tensors. The Triton kernels run
    on CPU only under the (slow) interpreter and have their own tests against the reference."""
    import seqtorch

    return [b for b in seqtorch.available_backends() if b != "triton"]


@pytest.fixture
def poison_cpu_buffers():
    """Every fresh buffer of the C++ and Python loops starts as NaN (seqtorch.ops.buffers.set_poison): an element
    a loop forgot to write cannot pass a comparison by chance. A test module takes it with
    ``pytest.mark.usefixtures("poison_cpu_buffers")``."""
    from seqtorch.ops import buffers

    buffers.set_poison(True)
    yield
    buffers.set_poison(False)
