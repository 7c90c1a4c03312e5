"""Sequences as users have them: masks with holes, mid-sequence resets, learned initial states, every step's
states, and streaming, each against what it must equal (float64, every CPU implementation; the masked and the
reset batch also on the Triton kernels, for GRU layers).

* a masked batch equals each sequence's masked steps run alone (compacted), outputs 0 where masked;
* a batch with resets equals each segment run alone from the layer's initial state;
* the learned initial state equals that state passed as ``hx``, and gets its gradient;
* ``return_all_states`` equals an LSTMCell loop's states;
* a stream of chunks equals one call over the concatenation.
"""

from __future__ import annotations

import pytest
import torch

import seqtorch
from conftest import assert_close
from seqtorch.ops import dispatch

LAYERS = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}
I, H, T, B = 3, 4, 7, 4


CPU_IMPLEMENTATIONS = ["reference", "cpp", "python"]


@pytest.fixture(params=CPU_IMPLEMENTATIONS)
def backend(request, monkeypatch):
    """Every CPU implementation: the reference loop, the C++ loop, the Python loop; and, where a test names it,
    the Triton kernels ("triton": on CPU tensors in Triton's interpreter, with NaN-poisoned buffers; slow, so
    only for the GRU layers of the masked and the reset batch)."""
    if request.param == "triton":
        common = pytest.importorskip("seqtorch.ops.triton.common")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        monkeypatch.setattr(common, "POISON_NEW_BUFFERS", True)
        return "triton"
    monkeypatch.setattr(dispatch, "USE_NATIVE", request.param == "cpp")
    return "reference" if request.param == "reference" else "cpu_fused"


# each layer on every CPU implementation, and the GRU on the Triton kernels
KINDS_AND_BACKENDS = [(kind, impl) for kind in LAYERS for impl in CPU_IMPLEMENTATIONS] + [("gru", "triton")]
# Slow: the bidirectional GRU on the Triton kernels (15 s on 2 cores); by default the unidirectional one runs there,
# the bidirectional layers on every CPU implementation, and tests/ops/test_triton_masks.py runs the kernels reversed.
LAYOUTS = [pytest.param(bidirectional, kind, impl, id=f"{'bi' if bidirectional else 'uni'}-{kind}-{impl}",
                        marks=pytest.mark.slow if bidirectional and impl == "triton" else ())
           for bidirectional in (False, True) for kind, impl in KINDS_AND_BACKENDS]


def _layer(kind, backend, **kwargs):
    torch.manual_seed(0)
    return LAYERS[kind](I, H, num_layers=2, batch_first=True, dtype=torch.float64, backend=backend, **kwargs)


def _holes():
    """A (B, T) mask with holes: left padding, a hole in the middle, a right-padded row, one full row."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, :3] = False          # left padding (Keras' pad_sequences, the book's)
    mask[1, 2] = mask[1, 5] = False
    mask[2, 4:] = False          # right padding
    return mask


def _states(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("bidirectional, kind, backend", LAYOUTS, indirect=["backend"])
def test_masked_batch_equals_each_sequence_compacted(kind, bidirectional, backend):
    layer = _layer(kind, backend, bidirectional=bidirectional)
    x = torch.randn(B, T, I, dtype=torch.float64)
    mask = _holes()
    out, state = layer(x, mask=mask)
    upstream = torch.randn_like(out)
    loss = (out * upstream).sum() + sum(s.square().sum() for s in _states(state))
    grads = torch.autograd.grad(loss, list(layer.parameters()))
    want_loss = 0
    for b in range(B):
        alone, alone_state = layer(x[b:b + 1, mask[b]])
        assert_close(out[b, mask[b]], alone[0])
        assert (out[b, ~mask[b]] == 0).all()
        for got, want in zip(_states(state), _states(alone_state)):
            assert_close(got[:, b], want[:, 0])
        want_loss = want_loss + (alone[0] * upstream[b, mask[b]]).sum() + \
            sum(s.square().sum() for s in _states(alone_state))
    for got, want in zip(grads, torch.autograd.grad(want_loss, list(layer.parameters()))):
        assert_close(got, want)


def test_a_sequence_masked_throughout_outputs_zeros_and_keeps_its_initial_state(backend):
    layer = _layer("lstm", backend)
    x = torch.randn(2, T, I, dtype=torch.float64)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1] = False
    h0 = torch.randn(2, 2, H, dtype=torch.float64), torch.randn(2, 2, H, dtype=torch.float64)
    out, (h_n, c_n) = layer(x, h0, mask=mask)
    assert (out[1] == 0).all()
    assert_close(h_n[:, 1], h0[0][:, 1])
    assert_close(c_n[:, 1], h0[1][:, 1])


def _segments(row_resets):
    starts = [0] + [t for t in range(1, T) if row_resets[t]]
    return list(zip(starts, starts[1:] + [T]))


@pytest.mark.parametrize("bidirectional, kind, backend", LAYOUTS, indirect=["backend"])
@pytest.mark.parametrize("learned", [False, True], ids=["zeros", "learned"])
def test_reset_batch_equals_each_segment_run_alone(kind, bidirectional, learned, backend):
    layer = _layer(kind, backend, bidirectional=bidirectional, learn_initial_state=learned)
    if learned:
        with torch.no_grad():
            for name in layer.initial_state_names():
                getattr(layer, name).normal_()
    x = torch.randn(B, T, I, dtype=torch.float64)
    resets = torch.zeros(B, T, dtype=torch.bool)
    resets[0, 3] = True
    resets[1, 1] = resets[1, 5] = True
    resets[3, 6] = True
    out, state = layer(x, resets=resets)
    upstream = torch.randn_like(out)
    loss = (out * upstream).sum() + sum(s.square().sum() for s in _states(state))
    grads = torch.autograd.grad(loss, list(layer.parameters()))
    want_loss = 0
    for b in range(B):
        segments = _segments(resets[b])
        finals = []
        for start, stop in segments:
            alone, alone_state = layer(x[b:b + 1, start:stop])
            assert_close(out[b, start:stop], alone[0])
            want_loss = want_loss + (alone[0] * upstream[b, start:stop]).sum()
            finals.append(_states(alone_state))
        D = 2 if bidirectional else 1
        for k, got in enumerate(_states(state)):
            for row in range(got.shape[0]):
                # the forward direction ends in the last segment, the reverse one in the first
                want = finals[-1 if row % D == 0 else 0][k][row, 0]
                assert_close(got[row, b], want)
                want_loss = want_loss + want.square().sum()
    for got, want in zip(grads, torch.autograd.grad(want_loss, list(layer.parameters()))):
        assert_close(got, want)


def test_resets_with_hx_restart_from_the_initial_state_not_hx(backend):
    """hx is the first segment's start (a trajectory slice carrying its state); a reset starts afresh."""
    layer = _layer("gru", backend)
    x = torch.randn(1, T, I, dtype=torch.float64)
    resets = torch.zeros(1, T, dtype=torch.bool)
    resets[0, 4] = True
    hx = torch.randn(2, 1, H, dtype=torch.float64, requires_grad=True)
    out, h_n = layer(x, hx, resets=resets)
    first, _ = layer(x[:, :4], hx)
    second, second_h = layer(x[:, 4:])
    assert_close(out[:, :4], first)
    assert_close(out[:, 4:], second)
    assert_close(h_n, second_h)
    (g,) = torch.autograd.grad(out[:, :4].sum(), hx)
    (want,) = torch.autograd.grad(first.sum(), hx)
    assert_close(g, want)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_learned_initial_state_equals_it_given_as_hx(kind, backend):
    layer = _layer(kind, backend, learn_initial_state=True, bidirectional=True)
    names = layer.initial_state_names()
    assert names == [f"{s}0_l{k}{d}" for s in layer.cell.states for k in range(2) for d in ("", "_reverse")]
    with torch.no_grad():
        for name in names:
            getattr(layer, name).normal_()
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, state = layer(x)
    rows = len(names) // len(layer.cell.states)
    hx = tuple(torch.stack([getattr(layer, n) for n in names[k * rows:(k + 1) * rows]]).unsqueeze(1)
               .expand(-1, B, -1).detach().clone().requires_grad_() for k in range(len(layer.cell.states)))
    want_out, want_state = layer(x, hx if len(hx) > 1 else hx[0])
    assert_close(out, want_out)
    out.sum().backward()
    for k, h in enumerate(hx):
        (g,) = torch.autograd.grad(want_out.sum(), h, retain_graph=True)
        for row in range(rows):
            assert_close(getattr(layer, names[k * rows + row]).grad, g[row].sum(0))


def test_an_explicit_hx_wins_over_the_learned_initial_state(backend):
    layer = _layer("lstm", backend, learn_initial_state=True)
    with torch.no_grad():
        layer.h0_l0.fill_(3.0)
    x = torch.randn(B, T, I, dtype=torch.float64)
    zeros = tuple(torch.zeros(2, B, H, dtype=torch.float64) for _ in range(2))
    plain = _layer("lstm", backend)
    assert_close(layer(x, zeros)[0], plain(x, zeros)[0])
    assert not torch.allclose(layer(x)[0], plain(x)[0])


def test_learned_initial_state_of_a_cell():
    torch.manual_seed(0)
    cell = seqtorch.LSTMCell(I, H, learn_initial_state=True, dtype=torch.float64)
    assert [n for n, _ in cell.named_parameters()][-2:] == ["h0", "c0"]
    with torch.no_grad():
        cell.h0.normal_(), cell.c0.normal_()
    x = torch.randn(B, I, dtype=torch.float64)
    want = cell(x, (cell.h0.expand(B, -1), cell.c0.expand(B, -1)))
    for a, b in zip(cell(x), want):
        assert_close(a, b)


def test_return_all_states_equals_an_lstm_cell_loop(backend):
    """The last layer's h and c after every step: those of an LSTMCell loop over the first layer's output."""
    layer = _layer("lstm", backend)
    x = torch.randn(B, T, I, dtype=torch.float64)
    out, (h_n, c_n), (h_all, c_all) = layer(x, return_all_states=True)
    assert_close(h_all, out)
    first = seqtorch.LSTM(I, H, batch_first=True, dtype=torch.float64)
    first.load_state_dict({k: v for k, v in layer.state_dict().items() if k.endswith("_l0")})
    cell = seqtorch.LSTMCell(H, H, dtype=torch.float64)
    cell.load_state_dict({k.removesuffix("_l1"): v for k, v in layer.state_dict().items() if k.endswith("_l1")})
    below, _ = first(x)
    h = c = torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        h, c = cell(below[:, t], (h, c))
        assert_close(h_all[:, t], h)
        assert_close(c_all[:, t], c)
    assert_close(c_n[-1], c)


def test_return_all_states_is_zero_at_masked_steps(backend):
    layer = _layer("lstm", backend, bidirectional=True)
    x = torch.randn(B, T, I, dtype=torch.float64)
    mask = _holes()
    out, _, (h_all, c_all) = layer(x, mask=mask, return_all_states=True)
    assert h_all.shape == c_all.shape == (B, T, 2 * H)
    assert_close(h_all, out)
    assert (c_all[~mask] == 0).all() and (c_all[mask] != 0).all()


@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_stream_of_chunks_equals_one_call(kind, backend):
    layer = _layer(kind, backend)
    x = torch.randn(B, T, I, dtype=torch.float64)
    resets = torch.zeros(B, T, dtype=torch.bool)
    resets[1, 4] = True
    want, want_state = layer(x, resets=resets)
    stream = layer.stream()
    outs = [stream(x[:, a:b], resets=resets[:, a:b]) for a, b in ((0, 3), (3, 4), (4, T))]
    assert_close(torch.cat(outs, dim=1), want)
    for got, expected in zip(_states(stream.state), _states(want_state)):
        assert_close(got, expected)
    stream.detach_()
    assert all(not s.requires_grad for s in _states(stream.state))


def test_a_bidirectional_layer_refuses_to_stream():
    with pytest.raises(ValueError, match="bidirectional"):
        seqtorch.GRU(I, H, bidirectional=True).stream()


@pytest.mark.parametrize("bad,error,match", [
    (lambda: torch.ones(T, B, dtype=torch.bool), ValueError, r"mask must be \(B, T\) = \(4, 7\)"),
    (lambda: torch.ones(B, T), ValueError, "mask must be a bool tensor"),
    (lambda: torch.ones(B, T, dtype=torch.bool, device="meta"), RuntimeError, "mask is on meta"),
], ids=["shape", "dtype", "device"])
def test_bad_masks_are_refused(bad, error, match):
    layer = seqtorch.LSTM(I, H, batch_first=True)
    with pytest.raises(error, match=match):
        layer(torch.randn(B, T, I), mask=bad())


def test_mask_with_lengths_or_packed_input_is_refused():
    layer = seqtorch.GRU(I, H)
    mask = torch.ones(T, B, dtype=torch.bool)
    with pytest.raises(ValueError, match="lengths= or mask=, not both"):
        layer(torch.randn(T, B, I), lengths=[T] * B, mask=mask)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(T, B, I), [T] * B)
    with pytest.raises(ValueError, match="mask= cannot be combined with a PackedSequence"):
        layer(packed, mask=mask)
    with pytest.raises(ValueError, match="resets= cannot be combined with a PackedSequence"):
        layer(packed, resets=mask)


def test_unbatched_mask():
    layer = seqtorch.GRU(I, H, dtype=torch.float64)
    x = torch.randn(T, I, dtype=torch.float64)
    mask = torch.tensor([False, True, True, False, True, True, True])
    out, h_n = layer(x, mask=mask)
    alone, alone_h = layer(x[mask])
    assert_close(out[mask], alone)
    assert_close(h_n, alone_h)


def test_masks_and_resets_compose_with_the_transforms(backend):
    """Double backward and forward mode go through the reference with the same masks and resets; vmap folds
    its dimension into the batch (the masks with it)."""
    torch.manual_seed(1)
    layer = seqtorch.GRU(2, 3, batch_first=True, dtype=torch.float64, backend=backend)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[False, True, True, False, True], [True, True, True, True, True]])
    resets = torch.tensor([[False, False, False, False, True], [False, False, True, False, False]])
    run = lambda x: layer(x, mask=mask, resets=resets)[0]  # noqa: E731
    torch.autograd.gradgradcheck(run, (x,))
    tangent = torch.randn_like(x)
    _, jvp = torch.func.jvp(run, (x,), (tangent,))
    _, vjp = torch.func.vjp(run, x)
    probe = torch.randn_like(jvp)
    assert_close((jvp * probe).sum(), (vjp(probe)[0] * tangent).sum())  # <J t, p> = <t, J^T p>
    batched = torch.func.vmap(lambda x, m, r: layer(x, mask=m, resets=r)[0])(x.unsqueeze(1), mask.unsqueeze(1),
                                                                               resets.unsqueeze(1))
    assert_close(batched.squeeze(1), run(x))


def test_masks_and_resets_compile_to_one_graph():
    torch.manual_seed(2)
    layer = seqtorch.LSTM(3, 4, 2, batch_first=True, bidirectional=True)
    x = torch.randn(B, T, 3)
    mask, resets = _holes(), torch.zeros(B, T, dtype=torch.bool)
    resets[2, 3] = True
    explained = torch._dynamo.explain(layer)(x, mask=mask, resets=resets)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    got, want = compiled(x, mask=mask, resets=resets)[0], layer(x, mask=mask, resets=resets)[0]
    assert_close(got, want)
    exported = torch.export.export(layer, (x,), {"mask": mask, "resets": resets})
    assert_close(exported.module()(x, mask=mask, resets=resets)[0], want)
