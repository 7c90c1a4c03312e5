"""The fused scans under every autograd transform PyTorch has, against the reference backend (float64).

What each transform must give (seqtorch.ops.autograd says how each is served): double backward
(gradgradcheck; a gradient penalty's parameter gradients), forward mode (torch.func.jvp, jacfwd, dual
tensors of torch.autograd.forward_ad), torch.func.grad / jacrev / functional_call, vmap over a batch of
inputs, over stacked parameter sets (stack_module_state) and vmap(grad) per-sample gradients. Every
configuration runs on the default backend (the C++ loop) and on the Python loop, and is compared with the
same layer on backend="reference", which is plain autograd. torch.compile (one graph for every sequence
length, with backward) and torch.export (a dynamic T) are at the end.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, stack_module_state, vmap

import seqtorch
from conftest import assert_close
from seqtorch.ops import dispatch

T, B, I, H = 4, 3, 3, 4

CONFIGS = {  # id: (class, constructor options, use lengths)
    "lstm-bidir-stacked-lengths": (seqtorch.LSTM, dict(num_layers=2, bidirectional=True), True),
    "gru-reset-before-hard": (seqtorch.GRU, dict(reset_after=False, recurrent_activation="hard_sigmoid"), True),
    "gru-relu": (seqtorch.GRU, dict(activation="relu", bidirectional=True), False),
    "rnn-relu-stacked": (seqtorch.SimpleRNN, dict(nonlinearity="relu", num_layers=2), True),
    "lstm-hardsigmoid-nobias": (seqtorch.LSTM, dict(recurrent_activation="hardsigmoid", bias=False), True),
}


@pytest.fixture(params=["native", "python"])
def loops(request, monkeypatch):
    """The default backend with the C++ loop, and with the Python loop it falls back to."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", request.param == "native")
    return request.param


def pair(config: str, **extra):
    """The same layer on the default backend and on the reference backend (equal weights), and lengths."""
    cls, options, use_lengths = CONFIGS[config]
    options = dict(options, **extra)
    torch.manual_seed(0)
    fused = cls(I, H, dtype=torch.float64, **options)
    reference = cls(I, H, dtype=torch.float64, backend="reference", **options)
    reference.load_state_dict(fused.state_dict())
    lengths = torch.tensor([T, 1, 3]) if use_lengths else None
    return fused, reference, lengths


def inputs(seed: int = 1, shape=(T, B, I)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_all_close(actual, expected):
    actual = actual if isinstance(actual, (tuple, list)) else [actual]
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        assert torch.isfinite(a).all()
        assert_close(a, b, dtype=torch.float64)


def output_of(layer, lengths):
    """x -> the output and the final state(s) flattened into one tensor (every output matters)."""
    def run(x):
        out, state = layer(x, lengths=lengths)
        states = state if isinstance(state, tuple) else (state,)
        return torch.cat([out.flatten(), *[s.flatten() for s in states]])
    return run


# ---- double backward -------------------------------------------------------------------------------

# Slow: lstm-bidir-stacked-lengths, 20 to 30 s a loop on 2 cores (800 inputs, each a double backward through 4
# scans); by default both loops gradgradcheck the LSTM, stacking, both directions and lengths in the smaller configs.
@pytest.mark.parametrize("loops, config", [
    pytest.param(loop, config, id=f"{loop}-{config}",
                 marks=pytest.mark.slow if config == "lstm-bidir-stacked-lengths" else ())
    for loop in ("native", "python") for config in CONFIGS], indirect=["loops"])
def test_gradgradcheck(config, loops):
    fused, _, lengths = pair(config)
    x = inputs().requires_grad_()
    params = list(fused.parameters())

    def fn(x, *weights):
        return functional_call(fused, dict(zip([n for n, _ in fused.named_parameters()], weights)), (x,),
                               {"lengths": lengths})[0]

    assert torch.autograd.gradgradcheck(fn, (x, *[p.detach().requires_grad_() for p in params]))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_gradient_penalty_matches_reference(config, loops):
    fused, reference, lengths = pair(config)

    def penalty_grads(layer):
        x = inputs().requires_grad_()
        out = output_of(layer, lengths)(x)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
        (dx,) = torch.autograd.grad((out * weights).sum(), x, create_graph=True)
        layer.zero_grad()
        (dx.square().sum() + out.sum()).backward()
        return [p.grad.clone() for p in layer.parameters()]

    assert_all_close(penalty_grads(fused), penalty_grads(reference))


# ---- forward mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", list(CONFIGS))
def test_jvp_and_jacfwd_match_reference(config, loops):
    fused, reference, lengths = pair(config)
    x, tangent = inputs(1), inputs(2)
    got = jvp(output_of(fused, lengths), (x,), (tangent,))
    want = jvp(output_of(reference, lengths), (x,), (tangent,))
    assert got[1].abs().max() > 0  # a silent zero tangent cannot pass
    assert_all_close(got, want)
    assert_all_close(jacfwd(output_of(fused, lengths))(x), jacrev(output_of(reference, lengths))(x))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_forward_ad_dual_tensors_match_reference(config, loops):
    fused, reference, lengths = pair(config)
    x, tangent = inputs(1), inputs(2)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        got = fwAD.unpack_dual(output_of(fused, lengths)(fwAD.make_dual(x, tangent))).tangent
    want = jvp(output_of(reference, lengths), (x,), (tangent,))[1]
    assert_all_close(got, want)


@pytest.mark.parametrize("config", ["lstm-bidir-stacked-lengths", "gru-reset-before-hard"])
def test_jvp_with_respect_to_the_weights(config, loops):
    fused, reference, lengths = pair(config)
    x = inputs()
    params = dict(fused.named_parameters())
    tangents = {k: torch.randn_like(v) for k, v in params.items()}

    def run(layer):
        return jvp(lambda p: output_of_params(layer, p, x, lengths), (params,), (tangents,))

    assert_all_close(run(fused), run(reference))


def output_of_params(layer, params, x, lengths):
    out, state = functional_call(layer, params, (x,), {"lengths": lengths})
    states = state if isinstance(state, tuple) else (state,)
    return torch.cat([out.flatten(), *[s.flatten() for s in states]])


# ---- reverse mode in torch.func ---------------------------------------------------------------------

@pytest.mark.parametrize("config", list(CONFIGS))
def test_func_grad_and_jacrev_match_reference(config, loops):
    fused, reference, lengths = pair(config)
    x = inputs()

    def loss(layer):
        weights = torch.linspace(-1, 1, output_of(layer, lengths)(x).numel(), dtype=x.dtype)
        return lambda p: (output_of_params(layer, p, x, lengths) * weights).sum()

    got = grad(loss(fused))(dict(fused.named_parameters()))
    want = grad(loss(reference))(dict(reference.named_parameters()))
    assert got.keys() == want.keys()
    assert_all_close(list(got.values()), list(want.values()))
    assert_all_close(jacrev(output_of(fused, lengths))(x), jacrev(output_of(reference, lengths))(x))


# ---- vmap -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", list(CONFIGS))
def test_vmap_over_inputs(config, loops):
    fused, reference, lengths = pair(config)
    xs = inputs(shape=(5, T, B, I))
    assert_all_close(vmap(output_of(fused, lengths))(xs), vmap(output_of(reference, lengths))(xs))


@pytest.mark.parametrize("config", ["lstm-bidir-stacked-lengths", "gru-relu", "rnn-relu-stacked"])
def test_vmap_over_stacked_parameters(config, loops):
    cls, options, _ = CONFIGS[config]
    fused, reference, lengths = pair(config)
    torch.manual_seed(5)
    members = [cls(I, H, dtype=torch.float64, **options) for _ in range(3)]
    params, buffers = stack_module_state(members)
    x = inputs()

    def ensemble(layer):
        return vmap(lambda p, b: output_of_params(layer, {**p, **b}, x, lengths))(params, buffers)

    assert_all_close(ensemble(fused), ensemble(reference))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_per_sample_gradients(config, loops):
    fused, reference, lengths = pair(config)
    x = inputs()

    def per_sample(layer):
        params = dict(layer.named_parameters())

        def loss(p, sample, length):
            out, _ = functional_call(layer, p, (sample.unsqueeze(1),),
                                     {"lengths": None if lengths is None else length.unsqueeze(0)})
            return out.square().sum()

        lens = lengths if lengths is not None else torch.full((B,), T)
        return vmap(grad(loss), in_dims=(None, 1, 0))(params, x, lens)

    got, want = per_sample(fused), per_sample(reference)
    assert_all_close(list(got.values()), list(want.values()))


# ---- torch.compile and torch.export -----------------------------------------------------------------

def test_compile_one_graph_for_every_length_with_backward():
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: count this test's graphs only
    torch.manual_seed(0)
    layer = seqtorch.LSTM(I, H, num_layers=2, bidirectional=True)
    compiled = torch.compile(layer, fullgraph=True, dynamic=True, backend="aot_eager")
    for steps in (5, 9, 13):
        x = torch.randn(steps, B, I)
        out, (h, c) = compiled(x)
        ref_out, (ref_h, ref_c) = layer(x)
        assert_close(out, ref_out)
        grads = torch.autograd.grad(out.sum() + c.sum(), list(layer.parameters()))
        want = torch.autograd.grad(ref_out.sum() + ref_c.sum(), list(layer.parameters()))
        for a, b in zip(grads, want):
            assert_close(a, b)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_export_with_a_dynamic_sequence_length():
    torch.manual_seed(0)
    layer = seqtorch.GRU(I, H, reset_after=False)
    steps = torch.export.Dim("steps", min=2, max=512)
    program = torch.export.export(layer, (torch.randn(6, B, I),), dynamic_shapes=({0: steps},))
    for length in (3, 17):
        x = torch.randn(length, B, I)
        got_out, got_h = program.module()(x)
        want_out, want_h = layer(x)
        assert_close(got_out, want_out)
        assert_close(got_h, want_h)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("seqtorch.scan_forward" in target for target in targets), targets
