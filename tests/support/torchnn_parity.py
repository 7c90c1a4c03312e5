"""Helpers for comparing a seqtorch module with its torch.nn twin: same weights, same inputs, random
upstream gradients on every output, then outputs and every gradient side by side."""

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

import seqtorch
from conftest import assert_close

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
    """(output, h_n) or (output, (h_n, c_n)) or h or (h, c) -> a flat list of tensors and PackedSequences."""
    if isinstance(result, (torch.Tensor, PackedSequence)):
        return [result]
    out = []
    for item in result:
        out.extend(flat_outputs(item))
    return out


def fresh_inputs(inputs):
    """A copy of ``inputs`` (tensors, PackedSequences, tuples, anything else as is) whose floating
    tensors are new autograd leaves, so two modules can each be run on their own copy."""
    def copy(item):
        if isinstance(item, PackedSequence):
            return PackedSequence(copy(item.data), item.batch_sizes, item.sorted_indices, item.unsorted_indices)
        if isinstance(item, torch.Tensor):
            t = item.detach().clone()
            return t.requires_grad_() if t.is_floating_point() else t
        if isinstance(item, (tuple, list)):
            return type(item)(copy(i) for i in item)
        return item
    return [copy(i) for i in inputs]


def run_with_grads(module, inputs, upstream):
    """Call module(*inputs), backprop ``upstream`` (one tensor per output, or an int: the seed of random
    ones), return outputs and grads of every differentiable input and every parameter. A PackedSequence
    output counts as its ``data``."""
    leaves = [t for t in _tensors(inputs) if t.requires_grad]
    module.zero_grad(set_to_none=True)
    for t in leaves:
        t.grad = None
    outputs = flat_outputs(module(*inputs))
    data = [o.data if isinstance(o, PackedSequence) else o for o in outputs]
    if isinstance(upstream, int):
        gen = torch.Generator().manual_seed(upstream)
        upstream = [torch.randn(d.shape, dtype=d.dtype, generator=gen) for d in data]
    torch.autograd.backward(data, upstream)
    grads = [t.grad.clone() for t in leaves] + [p.grad.clone() for _, p in sorted(module.named_parameters())]
    return [d.detach().clone() for d in data], grads


def assert_same_run(ours, theirs, inputs, *, seed=7, msg=""):
    """Both modules on their own copies of ``inputs``: the same outputs (and PackedSequence layout) and
    the same gradients of the inputs and every parameter under the same random upstream gradients."""
    with torch.no_grad():
        layout_o = [_layout(o) for o in flat_outputs(ours(*fresh_inputs(inputs)))]
        layout_t = [_layout(o) for o in flat_outputs(theirs(*fresh_inputs(inputs)))]
    assert layout_o == layout_t, f"{msg}: output structure {layout_o} vs torch.nn {layout_t}"
    out_t, grads_t = run_with_grads(theirs, fresh_inputs(inputs), seed)
    out_o, grads_o = run_with_grads(ours, fresh_inputs(inputs), seed)
    assert len(grads_o) == len(grads_t), msg
    for a, b in zip(out_o, out_t):
        assert_close(a, b, msg=f"{msg}: forward")
    for a, b in zip(grads_o, grads_t):
        assert a.shape == b.shape, f"{msg}: gradient shape"
        assert_close(a, b, msg=f"{msg}: gradient")


def _layout(output):
    """What must match exactly: shapes, and a PackedSequence's batch sizes and orderings."""
    if isinstance(output, PackedSequence):
        return ("packed", tuple(output.data.shape), output.batch_sizes.tolist(),
                None if output.sorted_indices is None else output.sorted_indices.tolist(),
                None if output.unsorted_indices is None else output.unsorted_indices.tolist())
    return tuple(output.shape)


def _tensors(inputs):
    for item in inputs:
        if isinstance(item, PackedSequence):
            yield item.data
        elif isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (tuple, list)):
            yield from _tensors(item)
