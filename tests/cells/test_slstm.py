"""The sLSTM of xLSTM (seqtorch.equations.SLSTM): its stabilized equations against the paper's unstabilized
ones over a sequence, the registry's generic checks on every backend (the normalizer state starts positive)."""

import torch

from conftest import assert_close
from seqtorch.equations import SLSTM
from support.cell_checks import INITIAL_STATES, CellChecks, poison  # noqa: F401 (poison: autouse)

CELL = SLSTM()
# n is a normalizer (a sum of positive input gates): a random negative one would divide by ~0
INITIAL_STATES[CELL.name] = lambda states: (states[0], states[1], states[2].abs() + 0.5, states[3])


def unstabilized(zs, H):
    """Beck et al. (2024), eqs. 8-13 without the stabilizer: i = exp(z_i), f = sigmoid(z_f), from zero states."""
    c = n = torch.zeros(zs[0].shape[0], H, dtype=zs[0].dtype)
    hs = []
    for z in zs:
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        c = torch.sigmoid(f) * c + torch.exp(i) * torch.tanh(g)
        n = torch.sigmoid(f) * n + torch.exp(i)
        hs.append(torch.sigmoid(o) * c / n)
    return hs


def test_the_stabilized_cell_gives_the_papers_outputs():
    """The stabilizer m rescales c and n alike: h = o * c / n is that of the unstabilized equations."""
    g = torch.Generator().manual_seed(0)
    H = 5
    zs = [torch.randn(3, 4 * H, generator=g, dtype=torch.float64) * 3 for _ in range(6)]
    h = c = n = m = torch.zeros(3, H, dtype=torch.float64)
    for z, want in zip(zs, unstabilized(zs, H)):
        h, c, n, m = CELL.forward(z, h, c, n, m)
        assert_close(h, want)
        assert (m >= z[:, :H]).all()  # m' = max(log f + m, z_i): the exponentials stay at most 1


class TestSLSTM(CellChecks):
    cell = CELL
    triton = False  # four states; the Triton kernels take two (tests/ops/test_triton_equations.py: the reason)
