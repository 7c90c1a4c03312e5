"""The C++ step op of the cell Modules (``seqtorch::cell_step``, :mod:`seqtorch.ops.step`) against the cells'
reference step (``Cell.step`` of ``x W_ih^T + b_ih``): the new states and the gradient of every input and
parameter under random upstream gradients for every output, in float64 to the table's tolerance, and float32
against the float64 reference; the rule that sends a call to the reference instead; the double backward; and
that the Modules run the op where it serves. Fresh buffers of the C++ code are NaN-poisoned
(poison_cpu_buffers, for the whole module), so an element the op forgot to write cannot pass."""

import warnings

import pytest
import torch

import seqtorch
from conftest import assert_close
from seqtorch.ops import native
from seqtorch.ops import step as step_op
from seqtorch.recurrent_cells import get_cell

pytestmark = [pytest.mark.skipif(native.load() is None, reason="the C++ library is not available"),
              pytest.mark.usefixtures("poison_cpu_buffers")]

# (cell, activation, recurrent_activation): every cell the op serves, every activation it takes
CASES = [("rnn", "tanh", "sigmoid"), ("rnn", "relu", "sigmoid")] + \
    [(cell, "tanh", gate) for cell in ("lstm", "gru", "gru_reset_before")
     for gate in ("sigmoid", "hard_sigmoid_keras2", "hardsigmoid")] + [("lstm", "relu", "sigmoid")]
SHAPES = {"B1": (1, 3, 7), "B5": (5, 3, 7), "I1": (4, 1, 5)}  # (B, I, H): H not a power of two, I of 1


def _inputs(cell, B, I, H, dtype, bias=True, seed=0):
    """x (B, I), the states, (W_ih, b_ih), the recurrent weights, all requiring grad (values near 1 in size,
    so the hard sigmoids see both their slope and their flat parts)."""
    gen = torch.Generator().manual_seed(seed)
    spec = get_cell(cell)
    shapes = dict(spec.parameters(I, H, H))

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.8).to(dtype).requires_grad_()

    x = rand(B, I)
    states = tuple(rand(B, w) for w in spec.state_sizes(H, H))
    input_weights = (rand(*shapes["weight_ih"]), rand(*shapes["bias_ih"]) if bias else None)
    weights = tuple(rand(*shapes[name]) if not (name.startswith("bias") and not bias) else None
                    for name in spec.weights)
    return x, states, input_weights, weights


def _run(fn, x, states, input_weights, weights, upstream):
    """The new states and the gradients of every input that requires grad, for the upstream gradients."""
    out = fn(x, states, input_weights, weights)
    leaves = [t for t in (x, *states, *input_weights, *weights) if t is not None and t.requires_grad]
    grads = torch.autograd.grad(out, leaves, upstream, allow_unused=True)
    return list(out), list(grads)


def _op(plan):
    def run(x, states, input_weights, weights):
        assert step_op.op_serves(plan, x, states[0])
        out = step_op.cell_step(plan, x, states, input_weights, weights)
        assert all("CellStep" in o.grad_fn.name() for o in out), [o.grad_fn.name() for o in out]
        return out
    return run


def _reference(plan):
    return lambda x, states, iw, w: step_op.reference_step(plan, x, states, iw, w)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("cell,activation,gate", CASES, ids=["-".join(c) for c in CASES])
def test_op_equals_reference_float64(cell, activation, gate, shape, bias):
    B, I, H = SHAPES[shape]
    plan = step_op.plan(cell, activation, gate, ())
    assert plan.op is not None
    x, states, iw, w = _inputs(cell, B, I, H, torch.float64, bias)
    gen = torch.Generator().manual_seed(1)
    upstream = [torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in states]
    out_o, grads_o = _run(_op(plan), x, states, iw, w, upstream)
    out_r, grads_r = _run(_reference(plan), x, states, iw, w, upstream)
    assert len(grads_o) == len(grads_r) == 1 + len(states) + sum(t is not None for t in (*iw, *w))
    for got, want in zip(out_o + grads_o, out_r + grads_r):
        assert got.shape == want.shape
        assert_close(got, want)


@pytest.mark.parametrize("cell,activation,gate", CASES, ids=["-".join(c) for c in CASES])
def test_op_float32_within_tolerance_of_float64_reference(cell, activation, gate):
    B, I, H = 6, 5, 9
    plan = step_op.plan(cell, activation, gate, ())
    x, states, iw, w = _inputs(cell, B, I, H, torch.float64, seed=3)
    gen = torch.Generator().manual_seed(4)
    upstream = [torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in states]
    want = _run(_reference(plan), x, states, iw, w, upstream)
    as32 = [None if t is None else t.detach().float().requires_grad_() for t in (x, *states, *iw, *w)]
    n = len(states)
    got = _run(_op(plan), as32[0], tuple(as32[1:1 + n]), tuple(as32[1 + n:3 + n]), tuple(as32[3 + n:]),
               [u.float() for u in upstream])
    for g, r in zip(got[0] + got[1], want[0] + want[1]):
        assert_close(g.double(), r, dtype=torch.float32)


def test_only_some_gradients_and_states_without_upstream():
    """An input that needs no gradient gets none; a state that gets no upstream gradient counts as zero."""
    plan = step_op.plan("lstm", "tanh", "sigmoid", ())
    x, states, iw, w = _inputs("lstm", 4, 3, 5, torch.float64)
    x = x.detach()  # as time_sequence_prediction's input
    states = (states[0], states[1].detach())
    results = []
    for fn in (_op(plan), _reference(plan)):
        h_new, _ = fn(x, states, iw, w)  # c' unused: no upstream gradient
        results.append(torch.autograd.grad(h_new.sum(), [states[0], *iw, *w]))
    for got, want in zip(*results):
        assert_close(got, want)


def test_noncontiguous_input_and_two_threads():
    """A column of a (B, T) batch (input.split(1, dim=1)) and a batch large enough to be split over rows."""
    plan = step_op.plan("lstm", "tanh", "sigmoid", ())
    _, states, iw, w = _inputs("lstm", 130, 1, 64, torch.float64)
    x = torch.randn(130, 9, dtype=torch.float64)[:, 4:5]
    assert not x.is_contiguous()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = step_op.cell_step(plan, x, states, iw, w)
    finally:
        torch.set_num_threads(threads)
    for g, r in zip(got, step_op.reference_step(plan, x, states, iw, w)):
        assert_close(g, r)


def test_double_backward_goes_through_the_reference(monkeypatch):
    """create_graph=True: the op's first derivative is the reference's, differentiable again."""
    cell = seqtorch.LSTMCell(3, 4, dtype=torch.float64)
    torch.manual_seed(0)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    hc = (torch.randn(2, 4, dtype=torch.float64, requires_grad=True),
          torch.randn(2, 4, dtype=torch.float64, requires_grad=True))
    assert "CellStep" in cell(x, hc)[0].grad_fn.name()
    assert torch.autograd.gradgradcheck(lambda x, h, c: cell(x, (h, c)), (x, *hc))

    def penalty():
        h, c = cell(x, hc)
        (g,) = torch.autograd.grad((h * h).sum() + c.sum(), x, create_graph=True)
        return torch.autograd.grad((g * g).sum(), [x, cell.weight_hh])

    got = penalty()
    monkeypatch.setattr(step_op, "op_serves", lambda *args: False)  # the same computation, reference alone
    assert "CellStep" not in cell(x, hc)[0].grad_fn.name()
    for g, r in zip(got, penalty()):
        assert_close(g, r)


def _grad_fn_names(module, x, hx):
    out = module(x, hx)
    return {o.grad_fn.name() for o in (out if isinstance(out, tuple) else (out,))}


@pytest.mark.parametrize("make", [
    lambda: seqtorch.LSTMCell(3, 4), lambda: seqtorch.GRUCell(3, 4), lambda: seqtorch.GRUCell(3, 4, reset_after=False),
    lambda: seqtorch.SimpleRNNCell(3, 4, nonlinearity="relu"), lambda: seqtorch.LSTMCell(3, 4, bias=False),
    lambda: seqtorch.LSTMCell(3, 4, single_bias=True)], ids=["lstm", "gru", "gru-before", "rnn", "nobias", "single"])
def test_modules_run_the_op(make):
    cell = make()
    x = torch.randn(2, 3)
    names = _grad_fn_names(cell, x, None)
    assert all("CellStep" in n for n in names), names


@pytest.mark.parametrize("make", [lambda: seqtorch.LayerNormLSTMCell(3, 4), lambda: seqtorch.IndRNNCell(3, 4)],
                         ids=["layernorm", "indrnn"])
def test_cells_outside_the_op_run_the_reference(make):
    """The LayerNorm cells' input projection and IndRNN's weight gradients are not the op's rule."""
    cell = make()
    values = cell.option_values()
    assert step_op.plan(cell.cell, values.get("activation", "tanh"), values.get("recurrent_activation", "sigmoid"),
                        tuple(values[name] for name in cell.cell.cell_args)).op is None
    assert not any("CellStep" in n for n in _grad_fn_names(cell, torch.randn(2, 3), None))


def test_transforms_and_modes_run_the_reference():
    """vmap, forward AD, autocast, torch.jit.trace, float16 and empty batches go to the reference step, with
    the numbers of the op where both can run."""
    cell = seqtorch.LSTMCell(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    plan = step_op.plan("lstm", "tanh", "sigmoid", ())
    assert not step_op.op_serves(plan, x[0, :0], x[0, :0])
    assert not step_op.op_serves(plan, x[0].half(), x[0].half())
    with torch.no_grad():
        want = torch.stack([cell(x_i)[0] for x_i in x])
    got = torch.func.vmap(lambda x_i: cell(x_i)[0])(x)
    assert_close(got, want)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        dual = fwAD.make_dual(x[0], torch.ones_like(x[0]))
        assert not step_op.op_serves(plan, dual, dual)
        h, _ = cell(dual)
        assert_close(fwAD.unpack_dual(h).primal, want[0])
        assert fwAD.unpack_dual(h).tangent is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not step_op.op_serves(plan, x[0], x[0])
    traced = torch.jit.trace(_FirstState(cell), (x[0],), check_trace=False)
    assert_close(traced(x[1]), want[1])
    assert "seqtorch::cell_step" not in str(traced.inlined_graph)  # it holds the reference's torch ops


@pytest.mark.parametrize("make", [lambda: seqtorch.LSTMCell(3, 4), lambda: seqtorch.GRUCell(3, 4)], ids=["lstm", "gru"])
def test_compile_fullgraph_traces_the_reference_step(make):
    """torch.compile(fullgraph=True) over a cell, as over torch.nn's: one graph, no warning, with eager's
    values and gradients (tracing the cached plan went into the C++ library's lookup: a graph break)."""
    cell = make().double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    want = cell(x)
    want_grads = torch.autograd.grad(want[0].sum() if isinstance(want, tuple) else want.sum(), [x, cell.weight_hh])
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled = torch.compile(cell, fullgraph=True, backend="aot_eager")
        got = compiled(x)
    assert type(got) is type(want)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert_close(g, w)
    got_grads = torch.autograd.grad(got[0].sum() if isinstance(got, tuple) else got.sum(), [x, cell.weight_hh])
    for g, w in zip(got_grads, want_grads):
        assert_close(g, w)


class _FirstState(torch.nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        return self.cell(x)[0]


@pytest.mark.parametrize("make", [lambda: seqtorch.LSTMCell(3, 4), lambda: seqtorch.GRUCell(3, 4)], ids=["lstm", "gru"])
def test_inference_mode(make):
    """torch.inference_mode() skips autograd's dispatch keys: the op runs as its CPU kernel, with the numbers
    of no_grad (it raised "Could not run 'seqtorch::cell_step' with arguments from the 'CPU' backend")."""
    cell = make().double()
    x = torch.randn(2, 3, dtype=torch.float64)
    with torch.no_grad():
        want = cell(x)
    with torch.inference_mode():
        got = cell(x)
    for g, r in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert g.is_inference()
        assert_close(g, r)
