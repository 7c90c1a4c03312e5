"""JANET (seqtorch.equations.JANET): its equations written out, the registry's generic checks on every backend."""

import torch

from conftest import assert_close
from seqtorch.equations import JANET
from support.cell_checks import CellChecks, poison  # noqa: F401 (poison: autouse)

CELL = JANET()


def equations(z, h, beta=1.0):
    """van der Westhuizen & Lasenby (2018): the forget gate alone, the input gate 1 - sigmoid(s - beta)."""
    H = h.shape[-1]
    s, c = z[:, :H], torch.tanh(z[:, H:])
    return torch.sigmoid(s) * h + (1 - torch.sigmoid(s - beta)) * c


def test_the_cell_is_its_equations():
    g = torch.Generator().manual_seed(0)
    z, h = torch.randn(3, 10, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    assert_close(CELL.forward(z, h), equations(z, h))


class TestJANET(CellChecks):
    cell = CELL
