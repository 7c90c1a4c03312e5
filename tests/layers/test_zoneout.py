"""Zoneout (``zoneout=p``, every layer and cell Module): in evaluation each state is its expectation
p h_{t-1} + (1 - p) h'_t, written out here with torch.nn.LSTMCell as the step; in training each unit keeps its
previous value with probability p; an LSTM with a projection and a reset-before GRU with zoneout, on every
backend against backend="reference" as stacked, bidirectional layers in training. The scan with zoneout, per
cell and backend: tests/cells/test_cell_registry.py."""

import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from support.layer_checks import B, H, I, T, check_training_matches_reference, inputs


def test_zoneout_in_evaluation_is_the_expectation():
    """Eval: h_t = p h_{t-1} + (1 - p) h'_t and the same for c, with torch.nn.LSTMCell as the step."""
    p = 0.3
    torch.manual_seed(0)
    layer = seqtorch.LSTM(I, H, zoneout=p, dtype=torch.float64).eval()
    cell = torch.nn.LSTMCell(I, H, dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = inputs()
    h, c = x.new_zeros(B, H), x.new_zeros(B, H)
    want = []
    for t in range(T):
        h_new, c_new = cell(x[t], (h, c))
        h, c = p * h + (1 - p) * h_new, p * c + (1 - p) * c_new
        want.append(h)
    out, (h_n, c_n) = layer(x)
    assert_close(out, torch.stack(want))
    assert_close(c_n[0], c)


@pytest.mark.parametrize("backend", cpu_backends())
def test_zoneout_in_training_keeps_a_fraction_p_of_the_units(backend):
    """Training: every unit either keeps its previous value exactly or takes the new one; about p keep."""
    p = 0.4
    torch.manual_seed(0)
    layer = seqtorch.GRU(8, 64, zoneout=p, dtype=torch.float64, backend=backend).train()
    out, _ = layer(torch.randn(50, 16, 8, dtype=torch.float64))
    kept = (out[1:] == out[:-1]).double().mean().item()
    assert abs(kept - p) < 0.03, kept
    with torch.no_grad():
        layer.eval()
        eval_out, _ = layer(torch.randn(50, 16, 8, dtype=torch.float64))
    assert (eval_out[1:] == eval_out[:-1]).double().mean() < 0.01  # evaluation: no unit is held exactly


LAYERS = [
    ("lstm-proj-zoneout", lambda **kw: seqtorch.LSTM(I, H, proj_size=2, zoneout=0.25, **kw)),
    ("gru-zoneout", lambda **kw: seqtorch.GRU(I, H, reset_after=False, zoneout=0.25, **kw)),
]


@pytest.mark.parametrize("backend", cpu_backends()[1:])
@pytest.mark.parametrize("name, build", LAYERS, ids=[name for name, _ in LAYERS])
def test_stacked_bidirectional_training_matches_reference(name, build, backend):
    check_training_matches_reference(build, backend)


def test_cell_zoneout_in_evaluation_and_training():
    torch.manual_seed(0)
    cell = seqtorch.GRUCell(I, H, zoneout=0.5, dtype=torch.float64)
    plain = seqtorch.GRUCell(I, H, dtype=torch.float64)
    plain.load_state_dict(cell.state_dict())
    x, h = inputs()[0], inputs(1, (B, H))
    cell.eval()
    assert_close(cell(x, h), 0.5 * h + 0.5 * plain(x, h))
    cell.train()
    new = cell(x, h)
    held = new == h
    assert held.any() and (~held).any()
    assert_close(new[~held], plain(x, h)[~held])


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="zoneout must be a number in"):
        seqtorch.GRU(I, H, zoneout=1.0)
