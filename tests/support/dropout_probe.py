"""A SimpleRNN wired so that its outputs reveal its dropout masks, for the input- and recurrent-dropout tests."""

import torch

import seqtorch


def probe(mode, p_in, p_rec, seed, train=True, T=6, B=5, H=4):
    """The (T, B, H) outputs of a relu SimpleRNN on x = 1 under ``torch.manual_seed(seed)``.

    ``mode="input"``: W_ih = I, W_hh = 0, no bias, so out[t] is the input mask exactly. ``mode="recurrent"``:
    W_ih = 0, b_ih = 1, W_hh = I, h0 = 0, so h1 = 1 and h[t] = 1 + m * h[t-1] with the recurrent mask m.
    """
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
