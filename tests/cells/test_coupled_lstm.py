"""The coupled input-forget LSTM (seqtorch.equations.CoupledLSTM): its equations written out, the registry's
generic checks on every backend."""

import torch

from conftest import assert_close
from seqtorch.equations import CoupledLSTM
from support.cell_checks import CellChecks, poison  # noqa: F401 (poison: autouse)

CELL = CoupledLSTM()


def equations(z, h, c):
    """Greff et al. (2017), CIFG: the forget gate is 1 - i; gate blocks i, g, o."""
    H = h.shape[-1]
    i = torch.sigmoid(z[:, :H])
    c_new = (1 - i) * c + i * torch.tanh(z[:, H:2 * H])
    return torch.sigmoid(z[:, 2 * H:]) * torch.tanh(c_new), c_new


def test_the_cell_is_its_equations():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 15, generator=g, dtype=torch.float64), *torch.randn(2, 3, 5, generator=g, dtype=torch.float64)]
    for got, want in zip(CELL.forward(*args), equations(*args)):
        assert_close(got, want)


class TestCoupledLSTM(CellChecks):
    cell = CELL
