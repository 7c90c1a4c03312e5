"""The LayerNorm LSTM (seqtorch.LayerNormLSTM, cell ``layernorm_lstm``): its equations written out with
``F.layer_norm``, independently of seqtorch's reference; its parameters and their initial values; every
backend against backend="reference" as a stacked, bidirectional layer in training; LayerNormLSTMCell as one
step of the layer. The registry's generic checks of its scan: tests/cells/test_cell_registry.py."""

import pytest
import torch
import torch.nn.functional as F

import seqtorch
from conftest import assert_close, cpu_backends
from support.layer_checks import (B, H, I, check_cell_is_one_step_of_its_layer, check_training_matches_reference,
                                  inputs, randomize)


def layernorm_lstm_by_hand(layer, x):
    """Ba et al. (2016), haste's formulation: LN of each projection (gains g_ih, g_hh), LN of c (g_c, b_c).

    z = LN(x W_ih^T) g_ih + LN(h W_hh^T) g_hh + b_ih + b_hh;  i, f, g, o = z's four blocks;
    c' = sigmoid(f) c + sigmoid(i) tanh(g);  h' = sigmoid(o) tanh(LN(c') g_c + b_c).
    """
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    g_ih, g_hh = layer.ln_ih_weight_l0, layer.ln_hh_weight_l0
    g_c, b_c = layer.ln_cell_weight_l0, layer.ln_cell_bias_l0
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    out = []
    for t in range(x.shape[0]):
        gates = (F.layer_norm(x[t] @ w_ih.T, (4 * H,)) * g_ih + F.layer_norm(h @ w_hh.T, (4 * H,)) * g_hh
                 + b_ih + b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (H,)) * g_c + b_c)
        out.append(h)
    return torch.stack(out), h, c


@pytest.mark.parametrize("backend", ["reference"] + cpu_backends()[1:])
def test_layernorm_lstm_is_its_equations(backend):
    layer = randomize(seqtorch.LayerNormLSTM(I, H, dtype=torch.float64, backend=backend))
    out, (h, c) = layer(inputs())
    want_out, want_h, want_c = layernorm_lstm_by_hand(layer, inputs())
    for a, b in ((out, want_out), (h[0], want_h), (c[0], want_c)):
        assert_close(a, b)


def test_parameters_and_their_initial_values():
    ln = seqtorch.LayerNormLSTM(I, H, num_layers=2, bidirectional=True)
    names = dict(ln.named_parameters())
    assert names["ln_ih_weight_l1_reverse"].shape == (4 * H,) and names["ln_cell_bias_l0"].shape == (H,)
    assert names["weight_ih_l1"].shape == (4 * H, 2 * H)
    for name, p in names.items():
        if name.startswith(("ln_ih_weight", "ln_hh_weight", "ln_cell_weight")):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.startswith("ln_cell_bias"):
            assert torch.equal(p, torch.zeros_like(p)), name


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="eps must be a positive number"):
        seqtorch.LayerNormLSTM(I, H, eps=0.0)


@pytest.mark.parametrize("backend", cpu_backends()[1:])
def test_stacked_bidirectional_training_matches_reference(backend):
    check_training_matches_reference(lambda **kw: seqtorch.LayerNormLSTM(I, H, **kw), backend)


def test_cell_is_one_step_of_its_layer():
    check_cell_is_one_step_of_its_layer(seqtorch.LayerNormLSTMCell, seqtorch.LayerNormLSTM)
