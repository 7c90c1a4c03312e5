"""The peephole LSTM (seqtorch.equations.PeepholeLSTM): its equations written out, the registry's generic checks
on every backend (its export to ONNX's LSTM with the peepholes as P: tests/export/test_onnx_export.py)."""

import torch

from conftest import assert_close
from seqtorch.equations import PeepholeLSTM
from support.cell_checks import CellChecks, poison  # noqa: F401 (poison: autouse)

CELL = PeepholeLSTM()


def equations(z, h, c, w_ci, w_cf, w_co):
    """Gers & Schmidhuber (2000): the input and forget gates see c, the output gate the new c."""
    H = h.shape[-1]
    zi, zf, zg, zo = (z[:, k * H:(k + 1) * H] for k in range(4))
    i = torch.sigmoid(zi + w_ci * c)
    f = torch.sigmoid(zf + w_cf * c)
    c_new = f * c + i * torch.tanh(zg)
    o = torch.sigmoid(zo + w_co * c_new)
    return o * torch.tanh(c_new), c_new


def test_the_cell_is_its_equations():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 20, generator=g, dtype=torch.float64), *torch.randn(2, 3, 5, generator=g, dtype=torch.float64),
            *torch.randn(3, 5, generator=g, dtype=torch.float64)]
    for got, want in zip(CELL.forward(*args), equations(*args)):
        assert_close(got, want)


class TestPeepholeLSTM(CellChecks):
    cell = CELL
