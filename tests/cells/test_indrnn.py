"""IndRNN (seqtorch.IndRNN, cell ``indrnn``): its equations written out, independently of seqtorch's reference;
its parameters and their initial values; every backend against backend="reference" as a stacked,
bidirectional layer in training; IndRNNCell as one step of the layer. The registry's generic checks of its
scan: tests/cells/test_cell_registry.py."""

import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from support.layer_checks import (B, H, I, check_cell_is_one_step_of_its_layer, check_training_matches_reference,
                                  inputs, randomize)


def indrnn_by_hand(layer, x, act=torch.relu):
    """Li et al. (2018): each unit its own recurrent weight, h' = act(x W_ih^T + b_ih + w_hh * h + b_hh)."""
    h = x.new_zeros(B, H)
    out = []
    for t in range(x.shape[0]):
        h = act(x[t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + layer.weight_hh_l0 * h + layer.bias_hh_l0)
        out.append(h)
    return torch.stack(out), h


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("backend", ["reference"] + cpu_backends()[1:])
def test_indrnn_is_its_equations(backend, nonlinearity):
    layer = randomize(seqtorch.IndRNN(I, H, nonlinearity=nonlinearity, dtype=torch.float64, backend=backend))
    out, h = layer(inputs())
    want_out, want_h = indrnn_by_hand(layer, inputs(), torch.relu if nonlinearity == "relu" else torch.tanh)
    assert_close(out, want_out)
    assert_close(h[0], want_h)


def test_parameters_and_their_initial_values():
    torch.manual_seed(0)
    ind = seqtorch.IndRNN(I, 64)
    assert ind.weight_hh_l0.shape == (64,) and 0 <= ind.weight_hh_l0.min() and ind.weight_hh_l0.max() <= 1
    assert ind.weight_hh_l0.std() > 0.2  # uniform in [0, 1], not the default +-1/sqrt(H)
    assert ind.weight_ih_l0.abs().max() <= 64 ** -0.5
    assert seqtorch.IndRNN(I, H, init="keras").weight_hh_l0.max() <= 1


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        seqtorch.IndRNN(I, H, nonlinearity="sigmoid")


@pytest.mark.parametrize("backend", cpu_backends()[1:])
def test_stacked_bidirectional_training_matches_reference(backend):
    check_training_matches_reference(lambda **kw: seqtorch.IndRNN(I, H, **kw), backend)


def test_cell_is_one_step_of_its_layer():
    check_cell_is_one_step_of_its_layer(seqtorch.IndRNNCell, seqtorch.IndRNN)
