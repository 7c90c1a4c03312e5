"""The options torch.nn lacks: gradcheck with every extra on, variational dropout's masks, Keras' GRU,
hard_sigmoid and initializers."""

import numpy as np
import pytest
import torch

import seqtorch
from seqtorch.ops import dispatch
from conftest import assert_close, cpu_backends
from seqtorch.recurrent_cells import Acts, get_cell
from seqtorch.recurrent_cells.activations import hard_sigmoid_keras2 as hard_sigmoid

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


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("mode", list(LAYERS))
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


def _probe(mode, p_in, p_rec, seed, train=True, T=6, B=5, H=4):
    """A SimpleRNN wired so its outputs reveal the dropout masks (see the two tests below)."""
    torch.manual_seed(seed)
    layer = seqtorch.SimpleRNN(H, H, nonlinearity="relu", input_dropout=p_in, recurrent_dropout=p_rec,
                               dtype=torch.float64)
    layer.train(train)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.eye(H) if mode == "input" else torch.zeros(H, H))
        layer.weight_hh_l0.copy_(torch.zeros(H, H) if mode == "input" else torch.eye(H))
        layer.bias_ih_l0.fill_(0.0 if mode == "input" else 1.0)
        layer.bias_hh_l0.zero_()
    out, _ = layer(torch.ones(T, B, H, dtype=torch.float64))
    return out


def test_input_dropout_mask_is_constant_over_time_and_differs_between_sequences():
    # W_ih = I, W_hh = 0, relu, x = 1: out[t] = mask exactly.
    p = 0.5
    out = _probe("input", p, 0.0, seed=3)
    assert torch.equal(out, out[:1].expand_as(out))  # constant over time
    mask = out[0]
    assert set(mask.unique().tolist()) <= {0.0, 1.0 / (1 - p)}
    assert len({tuple(row.tolist()) for row in mask}) > 1  # differs between sequences
    assert torch.equal(_probe("input", p, 0.0, seed=3), out)  # fixed seed, same masks
    assert not torch.equal(_probe("input", p, 0.0, seed=4), out)
    assert torch.equal(_probe("input", p, 0.0, seed=3, train=False), torch.ones_like(out))  # off in eval()


def test_recurrent_dropout_mask_is_constant_over_time_and_differs_between_sequences():
    # W_ih = 0, b_ih = 1, W_hh = I, relu, h0 = 0: h1 = 1 and h[t] = 1 + m * h[t-1] with the same m every step.
    p = 0.5
    out = _probe("recurrent", 0.0, p, seed=5)
    mask = out[1] - 1.0
    assert set(mask.unique().tolist()) <= {0.0, 1.0 / (1 - p)}
    assert len({tuple(row.tolist()) for row in mask}) > 1
    for t in range(1, out.shape[0]):
        assert_close(out[t], 1.0 + mask * out[t - 1])
    eval_out = _probe("recurrent", 0.0, p, seed=5, train=False)
    assert_close(eval_out[2], torch.full_like(eval_out[2], 3.0))  # no mask: 1, 2, 3, ...


def test_dropout_masks_are_per_layer_and_direction():
    calls = []
    real = dispatch.scan

    def spy(opts, inputs, **kwargs):
        calls.append(inputs.rec_mask)
        return real(opts, inputs, **kwargs)

    layer = seqtorch.GRU(3, 4, num_layers=2, bidirectional=True, recurrent_dropout=0.5)
    dispatch.scan = spy
    try:
        layer(torch.randn(5, 6, 3))
    finally:
        dispatch.scan = real
    assert len(calls) == 4 and all(m.shape == (6, 4) for m in calls)
    assert len({tuple(m.flatten().tolist()) for m in calls}) == 4


def test_hard_sigmoid_is_keras_2_formula():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    expected = np.clip(0.2 * x.numpy() + 0.5, 0.0, 1.0)
    assert np.array_equal(hard_sigmoid(x).numpy(), expected)


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
