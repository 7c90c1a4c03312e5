"""The options torch.nn lacks: gradcheck with every extra on, the input-dropout mask, Keras' initializers.

Each option's own page: tests/layers/test_recurrent_dropout.py, tests/layers/test_zoneout.py,
tests/layers/test_single_bias.py, tests/keras/test_keras_hard_sigmoid.py, and Keras' GRU (reset before):
tests/cells/test_gru_reset_before.py."""

import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from support.dropout_probe import probe

LAYERS = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}


def _extras(mode):
    kw = {"input_dropout": 0.3, "recurrent_dropout": 0.4}
    if mode == "rnn":
        kw["nonlinearity"] = "relu"
    else:
        kw.update(recurrent_activation="hard_sigmoid", activation="tanh")
    if mode == "gru":
        kw["reset_after"] = False
    return kw


# Slow: the reference backend's cases, 20 s on 2 cores; by default cpu_fused's, through the same layer code (its scan's
# gradients are the reference's: tests/cells/test_cell_registry.py compares them).
@pytest.mark.parametrize("mode, backend", [
    pytest.param(mode, backend, id=f"{mode}-{backend}", marks=pytest.mark.slow if backend == "reference" else ())
    for mode in LAYERS for backend in cpu_backends()])
def test_layer_gradcheck_with_every_extra_on(mode, backend):
    torch.manual_seed(0)
    layer = LAYERS[mode](3, 4, num_layers=2, bidirectional=True, batch_first=True, dropout=0.2,
                         dtype=torch.float64, init="keras", backend=backend, **_extras(mode))
    layer.train()
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 1, 3])

    def f(x, h0, c0, *ps):
        torch.manual_seed(7)  # the same dropout masks at every evaluation gradcheck makes
        hx = (h0, c0) if mode == "lstm" else h0
        out, states = torch.func.functional_call(layer, dict(zip(names, ps)), (x, hx), {"lengths": lengths})
        return (out,) + (tuple(states) if isinstance(states, tuple) else (states,))

    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, c0, *params))


def test_input_dropout_mask_is_constant_over_time_and_differs_between_sequences():
    # W_ih = I, W_hh = 0, relu, x = 1: out[t] = mask exactly.
    p = 0.5
    out = probe("input", p, 0.0, seed=3)
    assert torch.equal(out, out[:1].expand_as(out))  # constant over time
    mask = out[0]
    assert set(mask.unique().tolist()) <= {0.0, 1.0 / (1 - p)}
    assert len({tuple(row.tolist()) for row in mask}) > 1  # differs between sequences
    assert torch.equal(probe("input", p, 0.0, seed=3), out)  # fixed seed, same masks
    assert not torch.equal(probe("input", p, 0.0, seed=4), out)
    assert torch.equal(probe("input", p, 0.0, seed=3, train=False), torch.ones_like(out))  # off in eval()


@pytest.mark.parametrize("mode", list(LAYERS))
def test_keras_initializers(mode):
    torch.manual_seed(0)
    I, H = 20, 16
    layer = LAYERS[mode](I, H, num_layers=2, bidirectional=True, init="keras")
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[mode]
    for w_ih, w_hh, b_ih, b_hh in layer.layer_weights():
        fan_in = w_ih.shape[1]
        bound = (6.0 / (fan_in + gates * H)) ** 0.5  # glorot uniform over the whole (I, G*H) kernel
        assert w_ih.abs().max() <= bound
        assert abs(w_ih.std().item() - bound / 3 ** 0.5) < 0.15 * bound
        eye = torch.eye(H)
        assert_close(w_hh.T @ w_hh, eye, dtype=torch.float32)  # orthogonal columns in torch's layout
        expected_b_ih = torch.zeros_like(b_ih)
        if mode == "lstm":
            expected_b_ih[H:2 * H] = 1.0  # unit forget bias
        assert torch.equal(b_ih, expected_b_ih) and torch.equal(b_hh, torch.zeros_like(b_hh))
