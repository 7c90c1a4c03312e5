"""seqtorch.SimpleRNN/LSTM/GRU against torch.nn.RNN/LSTM/GRU: same weights, outputs, final states and the
gradients of the input, hx and every parameter under random upstream gradients for every output."""

import itertools

import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from support.torchnn_parity import run_with_grads, twin_modules

MODES = ["rnn", "lstm", "gru", "lstm-proj"]  # lstm-proj: torch.nn.LSTM's proj_size (P = 2)
PROJ_SIZE = 2
# (T, B, I, H): T=1 and B=1, hidden sizes that are not powers of two.
SIZES = {"T1-B1-H5": (1, 1, 3, 5), "T5-B3-H7": (5, 3, 4, 7)}
BACKENDS = cpu_backends()


def _grid():
    for mode, layers, bidir, batch_first, bias, with_hx, batched in itertools.product(
            MODES, [1, 2, 3], [False, True], [False, True], [True, False], [False, True], [True, False]):
        yield pytest.param(mode, layers, bidir, batch_first, bias, with_hx, batched,
                           id=f"{mode}-L{layers}-{'bi' if bidir else 'uni'}-{'bf' if batch_first else 'tf'}-"
                              f"{'bias' if bias else 'nobias'}-{'hx' if with_hx else 'nohx'}-"
                              f"{'batched' if batched else 'unbatched'}")


def _inputs(mode, layers, bidir, batch_first, with_hx, batched, sizes, dtype, gen):
    T, B, I, H = sizes
    D = 2 if bidir else 1
    if batched:
        shape = (B, T, I) if batch_first else (T, B, I)
        state_shape = (layers * D, B, H)
    else:
        shape, state_shape = (T, I), (layers * D, H)
    x = torch.randn(shape, dtype=dtype, generator=gen, requires_grad=True)
    hx = None
    if with_hx:
        h_shape = state_shape[:-1] + (PROJ_SIZE,) if mode == "lstm-proj" else state_shape
        h0 = torch.randn(h_shape, dtype=dtype, generator=gen, requires_grad=True)
        c0 = torch.randn(state_shape, dtype=dtype, generator=gen, requires_grad=True)
        hx = (h0, c0) if mode.startswith("lstm") else h0
    return x, hx


def _upstream(outputs, gen):
    return [torch.randn(o.shape, dtype=o.dtype, generator=gen) for o in outputs]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("size_id", list(SIZES))
@pytest.mark.parametrize("mode,layers,bidir,batch_first,bias,with_hx,batched", list(_grid()))
def test_layer_matches_torch_nn(mode, layers, bidir, batch_first, bias, with_hx, batched, size_id, dtype, backend):
    sizes = SIZES[size_id]
    proj = {"proj_size": PROJ_SIZE} if mode == "lstm-proj" else {}
    ours, theirs = twin_modules(mode.split("-")[0], sizes[2], sizes[3], layers, bias=bias, batch_first=batch_first,
                                bidirectional=bidir, dtype=dtype, backend=backend, **proj)
    gen = torch.Generator().manual_seed(1)
    x, hx = _inputs(mode, layers, bidir, batch_first, with_hx, batched, sizes, dtype, gen)
    inputs = (x,) if hx is None else (x, hx)
    with torch.no_grad():
        upstream = _upstream([theirs(*inputs)[0]] + list(_flat_states(theirs(*inputs)[1])), gen)
    out_t, grads_t = run_with_grads(theirs, inputs, upstream)
    out_o, grads_o = run_with_grads(ours, inputs, upstream)
    assert len(out_o) == len(out_t) and len(grads_o) == len(grads_t)
    for a, b in zip(out_o, out_t):
        assert a.shape == b.shape
        assert_close(a, b, msg="forward")
    for a, b in zip(grads_o, grads_t):
        assert_close(a, b, msg="gradient")


def _flat_states(states):
    return states if isinstance(states, tuple) else (states,)


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trips_both_ways(mode):
    proj = {"proj_size": PROJ_SIZE} if mode == "lstm-proj" else {}
    mode = mode.split("-")[0]
    ours, theirs = twin_modules(mode, 4, 6, 2, bidirectional=True, **proj)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    torch.manual_seed(5)
    ours2 = type(ours)(4, 6, 2, bidirectional=True, dtype=torch.float64, **proj)
    theirs.load_state_dict(ours2.state_dict(), strict=True)
    for (k1, v1), (k2, v2) in zip(ours2.state_dict().items(), theirs.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_gives_torch_nn_initial_weights(mode):
    proj = {"proj_size": PROJ_SIZE} if mode == "lstm-proj" else {}
    ours_cls, theirs_cls = {"rnn": (seqtorch.SimpleRNN, torch.nn.RNN), "lstm": (seqtorch.LSTM, torch.nn.LSTM),
                            "gru": (seqtorch.GRU, torch.nn.GRU)}[mode.split("-")[0]]
    torch.manual_seed(3)
    theirs = theirs_cls(5, 9, 2, bidirectional=True, **proj)
    torch.manual_seed(3)
    ours = ours_cls(5, 9, 2, bidirectional=True, **proj)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.parametrize("mode", MODES[:3])
def test_eval_mode_torch_dropout_is_identity_like_torch_nn(mode):
    ours, theirs = twin_modules(mode, 3, 4, 2, dropout=0.5)
    ours.eval(), theirs.eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert_close(ours(x)[0], theirs(x)[0])


def test_repr_shows_non_defaults_like_torch_nn():
    assert repr(seqtorch.LSTM(3, 4)) == repr(torch.nn.LSTM(3, 4))
    assert repr(seqtorch.LSTM(3, 4, proj_size=2)) == repr(torch.nn.LSTM(3, 4, proj_size=2))
    assert repr(seqtorch.GRU(3, 4, 2, batch_first=True)) == repr(torch.nn.GRU(3, 4, 2, batch_first=True))
    r = repr(seqtorch.GRU(3, 4, reset_after=False, recurrent_dropout=0.25))
    assert "reset_after=False" in r and "recurrent_dropout=0.25" in r
    # torch.nn.RNN's repr does not show its nonlinearity; SimpleRNN's reads the same (test_torchnn_api.py).
