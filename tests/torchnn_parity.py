"""Helpers for comparing a seqtorch module with its torch.nn twin: same weights, same inputs, random
upstream gradients on every output, then outputs and every gradient side by side."""

import torch
from torch import nn

import seqtorch

# seqtorch class -> torch.nn class
TWINS = {"rnn": (seqtorch.SimpleRNN, nn.RNN), "lstm": (seqtorch.LSTM, nn.LSTM), "gru": (seqtorch.GRU, nn.GRU)}
CELL_TWINS = {"rnn": (seqtorch.SimpleRNNCell, nn.RNNCell), "lstm": (seqtorch.LSTMCell, nn.LSTMCell),
              "gru": (seqtorch.GRUCell, nn.GRUCell)}


def twin_modules(mode, *args, dtype=torch.float64, seed=0, backend="auto", cells=False, **kwargs):
    """(ours, theirs) with identical weights: theirs is built, ours loads its state_dict strictly."""
    ours_cls, theirs_cls = (CELL_TWINS if cells else TWINS)[mode]
    torch.manual_seed(seed)
    theirs = theirs_cls(*args, dtype=dtype, **kwargs)
    extra = {} if cells else {"backend": backend}
    ours = ours_cls(*args, dtype=dtype, **kwargs, **extra)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def flat_outputs(result):
    """(output, h_n) or (output, (h_n, c_n)) or h or (h, c) -> a flat list of tensors."""
    if isinstance(result, torch.Tensor):
        return [result]
    out = []
    for item in result:
        out.extend(flat_outputs(item) if isinstance(item, (tuple, list)) else [item])
    return out


def run_with_grads(module, inputs, upstream):
    """Call module(*inputs), backprop ``upstream`` (one tensor per output), return outputs and grads
    of every differentiable input and every parameter."""
    leaves = [t for t in _tensors(inputs) if t.requires_grad]
    module.zero_grad(set_to_none=True)
    for t in leaves:
        t.grad = None
    outputs = flat_outputs(module(*inputs))
    data = [o.data if isinstance(o, nn.utils.rnn.PackedSequence) else o for o in outputs]
    torch.autograd.backward(data, upstream)
    grads = [t.grad.clone() for t in leaves] + [p.grad.clone() for _, p in sorted(module.named_parameters())]
    return [d.detach().clone() for d in data], grads


def _tensors(inputs):
    for item in inputs:
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (tuple, list)):
            yield from _tensors(item)
