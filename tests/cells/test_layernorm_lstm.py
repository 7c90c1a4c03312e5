"""The layers and cells added through the cell plugins: LayerNormLSTM/GRU, IndRNN and zoneout.

Each is checked against its equations written out here with plain torch ops (torch.nn.functional's
layer_norm, torch.nn.LSTMCell for zoneout), independently of seqtorch's reference; then every backend
against backend="reference" with stacking, directions, lengths and every dropout, and the cells against
one step of their layer. The scans themselves are tested for every cell in test_cell_registry.py.
"""

import pytest
import torch
import torch.nn.functional as F

import seqtorch
from conftest import assert_close, cpu_backends

T, B, I, H = 6, 3, 4, 5
LENGTHS = torch.tensor([6, 2, 4])


def inputs(seed=0, shape=(T, B, I)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomize(module, seed=1):
    """Random values for every parameter (gains away from 1), so no term can hide behind its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def layernorm_lstm_by_hand(layer, x):
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


def layernorm_gru_by_hand(layer, x):
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


def indrnn_by_hand(layer, x, act=torch.relu):
    h = x.new_zeros(B, H)
    out = []
    for t in range(x.shape[0]):
        h = act(x[t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + layer.weight_hh_l0 * h + layer.bias_hh_l0)
        out.append(h)
    return torch.stack(out), h


@pytest.mark.parametrize("backend", ["reference"] + cpu_backends()[1:])
def test_layernorm_lstm_is_its_equations(backend):
    layer = randomize(seqtorch.LayerNormLSTM(I, H, dtype=torch.float64, backend=backend))
    out, (h, c) = layer(inputs())
    want_out, want_h, want_c = layernorm_lstm_by_hand(layer, inputs())
    for a, b in ((out, want_out), (h[0], want_h), (c[0], want_c)):
        assert_close(a, b)


@pytest.mark.parametrize("backend", ["reference"] + cpu_backends()[1:])
def test_layernorm_gru_is_its_equations(backend):
    layer = randomize(seqtorch.LayerNormGRU(I, H, dtype=torch.float64, backend=backend))
    out, h = layer(inputs())
    want_out, want_h = layernorm_gru_by_hand(layer, inputs())
    assert_close(out, want_out)
    assert_close(h[0], want_h)


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
    ln = seqtorch.LayerNormLSTM(I, H, num_layers=2, bidirectional=True)
    names = dict(ln.named_parameters())
    assert names["ln_ih_weight_l1_reverse"].shape == (4 * H,) and names["ln_cell_bias_l0"].shape == (H,)
    assert names["weight_ih_l1"].shape == (4 * H, 2 * H)
    for name, p in names.items():
        if name.startswith(("ln_ih_weight", "ln_hh_weight", "ln_cell_weight")):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.startswith("ln_cell_bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
    gru = seqtorch.LayerNormGRU(I, H, init="keras")
    assert torch.equal(gru.ln_hh_weight_l0, torch.ones(3 * H))
    ind = seqtorch.IndRNN(I, 64)
    assert ind.weight_hh_l0.shape == (64,) and 0 <= ind.weight_hh_l0.min() and ind.weight_hh_l0.max() <= 1
    assert ind.weight_hh_l0.std() > 0.2  # uniform in [0, 1], not the default +-1/sqrt(H)
    assert ind.weight_ih_l0.abs().max() <= 64 ** -0.5
    assert seqtorch.IndRNN(I, H, init="keras").weight_hh_l0.max() <= 1


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="eps must be a positive number"):
        seqtorch.LayerNormLSTM(I, H, eps=0.0)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        seqtorch.IndRNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="zoneout must be a number in"):
        seqtorch.GRU(I, H, zoneout=1.0)
    with pytest.raises(TypeError):
        seqtorch.LayerNormGRU(I, H, reset_after=False)


# ---- zoneout -----------------------------------------------------------------------------------------

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


# ---- every backend against the reference, and the cells against their layers -------------------------

LAYERS = [
    ("layernorm-lstm", lambda **kw: seqtorch.LayerNormLSTM(I, H, **kw)),
    ("layernorm-gru", lambda **kw: seqtorch.LayerNormGRU(I, H, **kw)),
    ("indrnn", lambda **kw: seqtorch.IndRNN(I, H, **kw)),
    ("lstm-proj-zoneout", lambda **kw: seqtorch.LSTM(I, H, proj_size=2, zoneout=0.25, **kw)),
    ("gru-zoneout", lambda **kw: seqtorch.GRU(I, H, reset_after=False, zoneout=0.25, **kw)),
]


@pytest.mark.parametrize("backend", cpu_backends()[1:])
@pytest.mark.parametrize("name, build", LAYERS, ids=[name for name, _ in LAYERS])
def test_stacked_bidirectional_training_matches_reference(name, build, backend):
    options = dict(num_layers=2, bidirectional=True, dropout=0.2, input_dropout=0.1, recurrent_dropout=0.3,
                   dtype=torch.float64)
    torch.manual_seed(0)
    fused = randomize(build(backend=backend, **options)).train()
    reference = build(backend="reference", **options).train()
    reference.load_state_dict(fused.state_dict())

    def run(layer):
        x = inputs().requires_grad_()
        torch.manual_seed(7)  # the same masks (dropouts and zoneout) for both
        out, state = layer(x, lengths=LENGTHS)
        states = state if isinstance(state, tuple) else (state,)
        loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in (out, *states))
        layer.zero_grad()
        loss.backward()
        return [out, *states, x.grad] + [p.grad for p in layer.parameters()]

    for a, b in zip(run(fused), run(reference)):
        assert torch.isfinite(a).all()
        assert_close(a, b)


CELLS = [(seqtorch.LayerNormLSTMCell, seqtorch.LayerNormLSTM), (seqtorch.LayerNormGRUCell, seqtorch.LayerNormGRU),
         (seqtorch.IndRNNCell, seqtorch.IndRNN)]


@pytest.mark.parametrize("cell_cls, layer_cls", CELLS, ids=[c.__name__ for c, _ in CELLS])
def test_cells_are_one_step_of_their_layer(cell_cls, layer_cls):
    layer = randomize(layer_cls(I, H, dtype=torch.float64))
    cell = cell_cls(I, H, dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = inputs()
    out, state = layer(x[:1])
    step = cell(x[0])
    step = step if isinstance(step, tuple) else (step,)
    assert_close(step[0], out[0])
    if isinstance(state, tuple):
        assert_close(step[1], state[1][0])
    unbatched = cell(x[0, 0])
    assert_close(unbatched if not isinstance(unbatched, tuple) else unbatched[0], out[0, 0])


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
