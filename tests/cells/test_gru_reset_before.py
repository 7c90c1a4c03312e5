"""The reset-before GRU (cell ``gru_reset_before``: seqtorch.GRU/GRUCell with ``reset_after=False``, Keras 2's
GRU): its equations written out in numpy in Keras' own layout (kernels (I, H) per gate z, r, h, a single bias,
hard_sigmoid), against the cell's step and a GRUCell. The registry's generic checks of its scan:
tests/cells/test_cell_registry.py."""

import numpy as np
import torch

import seqtorch
from seqtorch.recurrent_cells import Acts, get_cell


def test_reset_before_gru_matches_keras_equations_in_numpy():
    """Keras 2.0's GRU (implementation 1, z r h gate order) written out independently in numpy."""
    rng = np.random.default_rng(0)
    B, I, H = 3, 4, 5
    x, h = rng.standard_normal((B, I)), rng.standard_normal((B, H))
    W = {g: rng.standard_normal((I, H)) for g in "zrh"}
    U = {g: rng.standard_normal((H, H)) for g in "zrh"}
    b = {g: rng.standard_normal(H) for g in "zrh"}
    hs = lambda v: np.clip(0.2 * v + 0.5, 0, 1)
    z = hs(x @ W["z"] + b["z"] + h @ U["z"])
    r = hs(x @ W["r"] + b["r"] + h @ U["r"])
    hh = np.tanh(x @ W["h"] + b["h"] + (r * h) @ U["h"])
    expected = z * h + (1 - z) * hh
    # torch layout: rows r, z, n of (3H, I) and (3H, H); Keras' single bias goes in b_ih.
    w_ih = torch.tensor(np.concatenate([W["r"].T, W["z"].T, W["h"].T]))
    w_hh = torch.tensor(np.concatenate([U["r"].T, U["z"].T, U["h"].T]))
    b_ih = torch.tensor(np.concatenate([b["r"], b["z"], b["h"]]))
    gx = torch.tensor(x) @ w_ih.T + b_ih
    h0 = torch.tensor(h)
    (got,) = get_cell("gru_reset_before").step(gx, h0, (h0,), (w_hh, None), Acts.of("tanh", "hard_sigmoid"))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    cell = seqtorch.GRUCell(I, H, bias=False, reset_after=False, recurrent_activation="hard_sigmoid",
                            dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(w_ih)
        cell.weight_hh.copy_(w_hh)
    # The cell has no bias here, so compare it with the bias-free equations.
    z0 = hs(x @ W["z"] + h @ U["z"])
    r0 = hs(x @ W["r"] + h @ U["r"])
    expected0 = z0 * h + (1 - z0) * np.tanh(x @ W["h"] + (r0 * h) @ U["h"])
    with torch.no_grad():
        got0 = cell(torch.tensor(x), torch.tensor(h))
    np.testing.assert_allclose(got0.numpy(), expected0, rtol=0, atol=1e-12)
