"""Recurrent dropout (``recurrent_dropout=p``): Gal & Ghahramani's variational mask on h_{t-1}, one mask per
sequence held for every step, redrawn per layer and direction, off in eval(). The mask inside every scan, per
cell and backend: tests/cells/test_cell_registry.py."""

import torch

import seqtorch
from conftest import assert_close
from seqtorch.ops import dispatch
from support.dropout_probe import probe


def test_recurrent_dropout_mask_is_constant_over_time_and_differs_between_sequences():
    # W_ih = 0, b_ih = 1, W_hh = I, relu, h0 = 0: h1 = 1 and h[t] = 1 + m * h[t-1] with the same m every step.
    p = 0.5
    out = probe("recurrent", 0.0, p, seed=5)
    mask = out[1] - 1.0
    assert set(mask.unique().tolist()) <= {0.0, 1.0 / (1 - p)}
    assert len({tuple(row.tolist()) for row in mask}) > 1
    for t in range(1, out.shape[0]):
        assert_close(out[t], 1.0 + mask * out[t - 1])
    eval_out = probe("recurrent", 0.0, p, seed=5, train=False)
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
