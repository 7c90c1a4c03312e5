"""The LayerNorm GRU (seqtorch.LayerNormGRU, cell ``layernorm_gru``): its equations written out with
``F.layer_norm``, independently of seqtorch's reference; its initial gains; every backend against
backend="reference" as a stacked, bidirectional layer in training; LayerNormGRUCell as one step of the layer.
The registry's generic checks of its scan: tests/cells/test_cell_registry.py."""

import pytest
import torch
import torch.nn.functional as F

import seqtorch
from conftest import assert_close, cpu_backends
from support.layer_checks import (B, H, I, check_cell_is_one_step_of_its_layer, check_training_matches_reference,
                                  inputs, randomize)


def layernorm_gru_by_hand(layer, x):
    """Ba et al. (2016), haste's formulation: the reset-after GRU, LN of each projection (gains g_ih, g_hh).

    a = LN(x W_ih^T) g_ih + b_ih;  b = LN(h W_hh^T) g_hh + b_hh  (blocks r, z, n);
    r = sigmoid(a_r + b_r);  z = sigmoid(a_z + b_z);  n = tanh(a_n + r b_n);  h' = (1 - z) n + z h.
    """
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    g_ih, g_hh = layer.ln_ih_weight_l0, layer.ln_hh_weight_l0
    h = x.new_zeros(B, H)
    out = []
    for t in range(x.shape[0]):
        gx = F.layer_norm(x[t] @ w_ih.T, (3 * H,)) * g_ih + b_ih
        gh = F.layer_norm(h @ w_hh.T, (3 * H,)) * g_hh + b_hh
        r = torch.sigmoid(gx[:, :H] + gh[:, :H])
        z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out), h


@pytest.mark.parametrize("backend", ["reference"] + cpu_backends()[1:])
def test_layernorm_gru_is_its_equations(backend):
    layer = randomize(seqtorch.LayerNormGRU(I, H, dtype=torch.float64, backend=backend))
    out, h = layer(inputs())
    want_out, want_h = layernorm_gru_by_hand(layer, inputs())
    assert_close(out, want_out)
    assert_close(h[0], want_h)


def test_parameters_and_their_initial_values():
    gru = seqtorch.LayerNormGRU(I, H, init="keras")
    assert torch.equal(gru.ln_hh_weight_l0, torch.ones(3 * H))


def test_bad_options_are_refused():
    with pytest.raises(TypeError):
        seqtorch.LayerNormGRU(I, H, reset_after=False)


@pytest.mark.parametrize("backend", cpu_backends()[1:])
def test_stacked_bidirectional_training_matches_reference(backend):
    check_training_matches_reference(lambda **kw: seqtorch.LayerNormGRU(I, H, **kw), backend)


def test_cell_is_one_step_of_its_layer():
    check_cell_is_one_step_of_its_layer(seqtorch.LayerNormGRUCell, seqtorch.LayerNormGRU)
