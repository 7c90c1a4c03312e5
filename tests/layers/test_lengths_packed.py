"""Per-sequence lengths and PackedSequence input against torch.nn on the same PackedSequence."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqtorch
from conftest import assert_close, cpu_backends
from support.torchnn_parity import twin_modules

MODES = ["rnn", "lstm", "gru"]
T, B, I, H = 6, 4, 3, 5
LENGTHS = [6, 1, 4, 6]  # 1 and T in the same batch, unsorted


def _setup(mode, layers, bidir, batch_first, dtype, with_hx, backend="auto"):
    ours, theirs = twin_modules(mode, I, H, layers, bidirectional=bidir, batch_first=batch_first, dtype=dtype,
                                backend=backend)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype, generator=gen, requires_grad=True)
    hx = None
    if with_hx:
        shape = (layers * (2 if bidir else 1), B, H)
        h0 = torch.randn(shape, dtype=dtype, generator=gen, requires_grad=True)
        hx = (h0, torch.randn(shape, dtype=dtype, generator=gen, requires_grad=True)) if mode == "lstm" else h0
    return ours, theirs, x, hx, gen


def _states(s):
    return list(s) if isinstance(s, tuple) else [s]


def _leaves(x, hx):
    return [x] + ([] if hx is None else _states(hx))


def _grads(module, leaves):
    out = [t.grad.clone() for t in leaves] + [p.grad.clone() for _, p in sorted(module.named_parameters())]
    for t in leaves:
        t.grad = None
    module.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tf", "bf"])
@pytest.mark.parametrize("layers,bidir", [(1, False), (1, True), (2, True)], ids=["L1", "L1-bi", "L2-bi"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
def test_lengths_and_packed_match_torch_nn_packed(mode, dtype, layers, bidir, batch_first, with_hx, backend):
    ours, theirs, x, hx, gen = _setup(mode, layers, bidir, batch_first, dtype, with_hx, backend)
    lengths = torch.tensor(LENGTHS)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out_t, s_t = theirs(packed, hx)
    padded_t, _ = pad_packed_sequence(out_t, batch_first=batch_first, total_length=T)
    up_out = torch.randn(padded_t.shape, dtype=dtype, generator=gen)
    up_states = [torch.randn(s.shape, dtype=dtype, generator=gen) for s in _states(s_t)]
    # Gradients flow only from valid positions in torch.nn; zero the upstream on padding for all three runs.
    valid = (torch.arange(T)[:, None] < lengths[None, :]).to(dtype)
    up_out = up_out * (valid.T[..., None] if batch_first else valid[..., None])
    torch.autograd.backward([padded_t] + _states(s_t), [up_out] + up_states)
    grads_t = _grads(theirs, _leaves(x, hx))

    # 1. our module on the same PackedSequence: a PackedSequence comes back, packed the same way.
    out_p, s_p = ours(pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False), hx)
    assert torch.equal(out_p.batch_sizes, out_t.batch_sizes)
    assert torch.equal(out_p.sorted_indices, out_t.sorted_indices)
    assert_close(out_p.data, out_t.data)
    for a, b in zip(_states(s_p), _states(s_t)):
        assert_close(a, b)
    padded_p, _ = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)
    torch.autograd.backward([padded_p] + _states(s_p), [up_out] + up_states)
    for a, b in zip(_grads(ours, _leaves(x, hx)), grads_t):
        assert_close(a, b)

    # 2. our module on the padded tensor with lengths= (a list here, a tensor elsewhere).
    out_l, s_l = ours(x, hx, lengths=LENGTHS)
    assert_close(out_l, padded_t.detach())
    for a, b in zip(_states(s_l), _states(s_t)):
        assert_close(a, b)
    torch.autograd.backward([out_l] + _states(s_l), [up_out] + up_states)
    for a, b in zip(_grads(ours, _leaves(x, hx)), grads_t):
        assert_close(a, b)


@pytest.mark.parametrize("mode", MODES)
def test_outputs_past_length_are_exactly_zero_and_reverse_starts_at_own_end(mode):
    layer_cls = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}[mode]
    torch.manual_seed(0)
    m = layer_cls(I, H, bidirectional=True, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, _ = m(x, lengths=torch.tensor(LENGTHS))
    for b, n in enumerate(LENGTHS):
        assert torch.count_nonzero(out[n:, b]) == 0
        # The sequence alone, cut to its length, gives the same numbers: padding never leaks in.
        alone, _ = m(x[:n, b:b + 1])
        assert_close(out[:n, b:b + 1], alone)


def test_packed_sorted_input_and_lengths_tensor_on_any_device():
    ours, theirs, x, _, _ = _setup("lstm", 2, True, False, torch.float64, False)
    lengths = torch.tensor(sorted(LENGTHS, reverse=True))
    packed = pack_padded_sequence(x, lengths, enforce_sorted=True)
    out_t, (h_t, c_t) = theirs(packed)
    out_o, (h_o, c_o) = ours(packed)
    assert out_o.sorted_indices is None
    assert_close(out_o.data, out_t.data)
    assert_close(h_o, h_t)
    assert_close(c_o, c_t)
    out_l, (h_l, _) = ours(x, lengths=lengths.to(torch.int32))
    assert_close(h_l, h_t)
