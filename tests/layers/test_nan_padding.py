"""Padding past ``lengths=`` never reaches a value or a gradient, whatever it holds (NaN, inf, garbage).

torch.nn never sees padding when given the same PackedSequence; seqtorch with a padded batch and
lengths must give the same numbers, with every gradient finite, on every backend and loop.
"""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqtorch
from conftest import assert_close, cpu_backends
from seqtorch.ops import dispatch

T, B, I, H = 6, 3, 4, 5
LENGTHS = torch.tensor([6, 2, 4])
LAYERS = {"rnn": (seqtorch.SimpleRNN, nn.RNN), "lstm": (seqtorch.LSTM, nn.LSTM), "gru": (seqtorch.GRU, nn.GRU)}


@pytest.fixture(params=["native", "python"])
def loops(request, monkeypatch):
    monkeypatch.setattr(dispatch, "USE_NATIVE", request.param == "native")


def padded(fill: float) -> torch.Tensor:
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for b, length in enumerate(LENGTHS.tolist()):
        x[length:, b] = fill
    return x


def run(layer, x, **kwargs):
    """Outputs and the gradients of the input and every parameter under a fixed upstream gradient."""
    x = x.clone().requires_grad_()
    out, state = layer(x, **kwargs)
    states = state if isinstance(state, tuple) else (state,)
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in (out, *states))
    layer.zero_grad()
    loss.backward()
    return [out, *states, x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), 1e30], ids=["nan", "inf", "huge"])
@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_padding_reaches_nothing(mode, backend, fill, loops):
    torch.manual_seed(0)
    layer = LAYERS[mode][0](I, H, num_layers=2, bidirectional=True, backend=backend, dtype=torch.float64)
    got = run(layer, padded(fill), lengths=LENGTHS)
    want = run(layer, padded(0.0), lengths=LENGTHS)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)
    x_grad = got[-1 - len(list(layer.parameters()))]
    for b, length in enumerate(LENGTHS.tolist()):
        assert (x_grad[length:, b] == 0).all()  # the padding gets no gradient, as torch.nn's packed input


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_nan_padding_equals_torch_nn_packed(mode, backend, loops):
    torch.manual_seed(0)
    ours = LAYERS[mode][0](I, H, backend=backend, dtype=torch.float64)
    theirs = LAYERS[mode][1](I, H, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    got = run(ours, padded(float("nan")), lengths=LENGTHS)
    x = padded(float("nan")).requires_grad_()
    out, state = theirs(pack_padded_sequence(x, LENGTHS, enforce_sorted=False))
    states = state if isinstance(state, tuple) else (state,)
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in states)
    theirs.zero_grad()
    loss.backward()
    for a, b in zip(got[1:1 + len(states)], states):
        assert_close(a, b)
    # the final states' gradients: compare with seqtorch under the same loss (states only)
    ours.zero_grad()
    x2 = padded(float("nan")).requires_grad_()
    _, state2 = ours(x2, lengths=LENGTHS)
    states2 = state2 if isinstance(state2, tuple) else (state2,)
    sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in states2).backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.isfinite(p.grad).all()
        assert_close(p.grad, q.grad)
    assert_close(torch.nan_to_num(x.grad, nan=0.0), x2.grad)
