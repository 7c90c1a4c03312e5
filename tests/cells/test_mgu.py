"""The minimal gated unit (seqtorch.equations.MGU): its equations written out, the registry's generic checks on
every backend."""

import torch

from conftest import assert_close
from seqtorch.equations import MGU
from support.cell_checks import CellChecks, poison  # noqa: F401 (poison: autouse)

CELL = MGU()


def equations(zx, zh, h):
    """Zhou et al. (2016) with the candidate's recurrent product gated after it is taken (reset after)."""
    H = h.shape[-1]
    f = torch.sigmoid(zx[:, :H] + zh[:, :H])
    n = torch.tanh(zx[:, H:] + f * zh[:, H:])
    return (1 - f) * h + f * n


def test_the_cell_is_its_equations():
    g = torch.Generator().manual_seed(0)
    zx, zh = torch.randn(2, 3, 10, generator=g, dtype=torch.float64)
    h = torch.randn(3, 5, generator=g, dtype=torch.float64)
    assert_close(CELL.forward(zx, zh, h), equations(zx, zh, h))


class TestMGU(CellChecks):
    cell = CELL
