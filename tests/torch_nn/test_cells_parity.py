"""seqtorch cells against torch.nn.RNNCell/LSTMCell/GRUCell, and gradcheck in float64."""

import itertools

import pytest
import torch

import seqtorch
from conftest import assert_close
from support.torchnn_parity import run_with_grads, twin_modules

MODES = ["rnn", "lstm", "gru"]


def _cell_kwargs(mode, nonlinearity):
    return {"nonlinearity": nonlinearity} if mode == "rnn" else {}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode,bias,with_hx,batched,nonlinearity", [
    pytest.param(m, b, h, bt, nl, id=f"{m}-{'bias' if b else 'nobias'}-{'hx' if h else 'nohx'}-"
                                      f"{'batched' if bt else 'unbatched'}-{nl}")
    for m, b, h, bt, nl in itertools.product(MODES, [True, False], [True, False], [True, False], ["tanh", "relu"])
    if m == "rnn" or nl == "tanh"])
def test_cell_matches_torch_nn(mode, bias, with_hx, batched, nonlinearity, dtype):
    ours, theirs = twin_modules(mode, 3, 7, bias=bias, dtype=dtype, cells=True, **_cell_kwargs(mode, nonlinearity))
    gen = torch.Generator().manual_seed(0)
    B = 5
    x = torch.randn((B, 3) if batched else (3,), dtype=dtype, generator=gen, requires_grad=True)
    state_shape = (B, 7) if batched else (7,)
    inputs = (x,)
    if with_hx:
        h = torch.randn(state_shape, dtype=dtype, generator=gen, requires_grad=True)
        inputs = (x, (h, torch.randn(state_shape, dtype=dtype, generator=gen, requires_grad=True))
                  if mode == "lstm" else h)
    n_out = 2 if mode == "lstm" else 1
    upstream = [torch.randn(state_shape, dtype=dtype, generator=gen) for _ in range(n_out)]
    out_t, grads_t = run_with_grads(theirs, inputs, upstream)
    out_o, grads_o = run_with_grads(ours, inputs, upstream)
    for a, b in zip(out_o + grads_o, out_t + grads_t):
        assert a.shape == b.shape
        assert_close(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_cells_same_seed_same_init_as_torch_nn(mode):
    ours_cls, theirs_cls = {"rnn": (seqtorch.SimpleRNNCell, torch.nn.RNNCell),
                            "lstm": (seqtorch.LSTMCell, torch.nn.LSTMCell),
                            "gru": (seqtorch.GRUCell, torch.nn.GRUCell)}[mode]
    torch.manual_seed(4)
    theirs = theirs_cls(3, 6)
    torch.manual_seed(4)
    ours = ours_cls(3, 6)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


OPTIONS = [{}, {"recurrent_activation": "hard_sigmoid"}, {"activation": "relu"}, {"init": "keras"},
           {"reset_after": False}, {"reset_after": False, "recurrent_activation": "hard_sigmoid", "init": "keras"}]


@pytest.mark.parametrize("mode,options", [
    pytest.param(m, o, id=f"{m}-{o}") for m in MODES for o in OPTIONS
    if (m == "gru" or "reset_after" not in o) and (m != "rnn" or "recurrent_activation" not in o)])
def test_cell_gradcheck_float64(mode, options):
    cls = {"rnn": seqtorch.SimpleRNNCell, "lstm": seqtorch.LSTMCell, "gru": seqtorch.GRUCell}[mode]
    if mode == "rnn":
        options = {("nonlinearity" if k == "activation" else k): v for k, v in options.items()}
    torch.manual_seed(0)
    cell = cls(3, 4, dtype=torch.float64, **options)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h, c, *ps):
        args = (x, (h, c)) if mode == "lstm" else (x, h)
        return torch.func.functional_call(cell, dict(zip(names, ps)), args)

    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradcheck(f, (x, h, c, *params))
