"""The two hard sigmoids Keras has meant, by names that cannot be confused, on every CPU backend:
``"hard_sigmoid_keras2"`` (and its alias ``"hard_sigmoid"``) is Keras 2's ``clip(0.2 x + 0.5, 0, 1)``,
``"hardsigmoid"`` torch's ``F.hardsigmoid`` = Keras 3's ``clip(x / 6 + 0.5, 0, 1)``."""

import numpy as np
import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from seqtorch.recurrent_cells.activations import hard_sigmoid_keras2

FORMULAS = {"hard_sigmoid_keras2": lambda v: torch.clamp(0.2 * v + 0.5, 0.0, 1.0),
            "hard_sigmoid": lambda v: torch.clamp(0.2 * v + 0.5, 0.0, 1.0),
            "hardsigmoid": lambda v: torch.clamp(v / 6.0 + 0.5, 0.0, 1.0)}
T, B, I, H = 6, 3, 4, 5


def _spelled_out(layer, x, gate):
    """The layer's one-direction recurrence written out with ``gate`` as the recurrent activation."""
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    h = torch.zeros(B, H, dtype=x.dtype)
    c = torch.zeros(B, H, dtype=x.dtype)
    outputs = []
    for t in range(T):
        gx, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if layer.cell.family == "lstm":
            i, f, g, o = (gx + gh).chunk(4, dim=-1)
            c = gate(f) * c + gate(i) * torch.tanh(g)
            h = gate(o) * torch.tanh(c)
        else:  # reset-after GRU
            (xr, xz, xn), (hr, hz, hn) = gx.chunk(3, dim=-1), gh.chunk(3, dim=-1)
            r, z = gate(xr + hr), gate(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        outputs.append(h)
    return torch.stack(outputs)


@pytest.mark.parametrize("name", list(FORMULAS))
@pytest.mark.parametrize("backend", ["auto"] + cpu_backends())
@pytest.mark.parametrize("cls", [seqtorch.LSTM, seqtorch.GRU], ids=["lstm", "gru"])
def test_each_name_computes_its_formula(cls, backend, name):
    torch.manual_seed(0)
    layer = cls(I, H, recurrent_activation=name, backend=backend, dtype=torch.float64)
    x = 3 * torch.randn(T, B, I, dtype=torch.float64)  # wide inputs: the two formulas part outside |x| < 2.5
    expected = _spelled_out(layer, x, FORMULAS[name])
    output, _ = layer(x)
    assert_close(output, expected)
    other = "hardsigmoid" if name != "hardsigmoid" else "hard_sigmoid_keras2"
    assert (output - _spelled_out(layer, x, FORMULAS[other])).abs().max() > 1e-3


def test_hardsigmoid_is_torchs_function():
    v = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert_close(FORMULAS["hardsigmoid"](v), torch.nn.functional.hardsigmoid(v))  # relu6(x + 3) / 6 there


def test_hard_sigmoid_is_keras_2_formula():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    expected = np.clip(0.2 * x.numpy() + 0.5, 0.0, 1.0)
    assert np.array_equal(hard_sigmoid_keras2(x).numpy(), expected)
