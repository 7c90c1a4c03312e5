"""torch.nn's ``dropout`` between layers draws the same random numbers in seqtorch, packed input or padded.

torch.nn drops out the packed data of a PackedSequence between layers (and the padded output otherwise);
seqtorch does the same, so a program with a seed gives the same numbers with either class, and leaves the
global generator in the same state for everything after.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqtorch
from conftest import assert_close

PAIRS = [(nn.RNN, seqtorch.SimpleRNN), (nn.LSTM, seqtorch.LSTM), (nn.GRU, seqtorch.GRU)]


@pytest.mark.parametrize("torch_cls,cls", PAIRS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_dropout_between_layers_draws_what_torch_nn_draws(torch_cls, cls, bidirectional, packed, batch_first):
    torch.manual_seed(0)
    ref = torch_cls(4, 5, 3, dropout=0.5, batch_first=batch_first, bidirectional=bidirectional)
    mine = cls(4, 5, 3, dropout=0.5, batch_first=batch_first, bidirectional=bidirectional)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 4) if batch_first else torch.randn(6, 3, 4)
    inp = pack_padded_sequence(x, [6, 2, 4], batch_first=batch_first, enforce_sorted=False) if packed else x
    results = []
    for module in (ref, mine):
        torch.manual_seed(1)
        out, state = module(inp)
        h_n = state[0] if isinstance(state, tuple) else state
        out = out.data if packed else out
        loss = out.square().sum() + h_n.sum()
        grads = torch.autograd.grad(loss, list(module.parameters()))
        results.append((out, h_n, *grads, torch.get_rng_state()))
    *theirs, their_rng = results[0]
    *ours, our_rng = results[1]
    for a, b in zip(ours, theirs):
        assert_close(a, b)
    assert torch.equal(our_rng, their_rng)  # the generator ends where torch.nn leaves it
