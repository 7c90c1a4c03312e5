"""The C++ layer op (``seqtorch::scan_layer``, :mod:`seqtorch.ops.layer`) against the general route (the input
projection in PyTorch, then :func:`seqtorch.ops.dispatch.scan`) and the reference scan: the output, the final
states and the gradient of every input and weight under random upstream gradients for every output, in float64
to the table's tolerance, and float32 against the float64 reference; the rule that sends a scan the general
way instead; the double backward; and that the layers run the op where it serves. Fresh buffers of the C++
code are NaN-poisoned (poison_cpu_buffers, for the whole module), so an element the op forgot to write cannot
pass."""

from dataclasses import replace

import pytest
import torch

import seqtorch
from conftest import assert_close
from seqtorch import functional as SF
from seqtorch.ops import dispatch, native
from seqtorch.ops import layer as layer_op
from seqtorch.ops.contract import ScanInputs
from seqtorch.ops.reference import scan_reference
from seqtorch.recurrent_cells import get_cell

pytestmark = [pytest.mark.skipif(native.load() is None, reason="the C++ library is not available"),
              pytest.mark.usefixtures("poison_cpu_buffers")]

# (cell, options): every cell the op serves, every activation it takes
CASES = [("rnn", {}), ("rnn", {"activation": "relu"})] + \
    [(cell, {"recurrent_activation": gate}) for cell in ("lstm", "gru", "gru_reset_before")
     for gate in ("sigmoid", "hard_sigmoid_keras2", "hardsigmoid")] + [("lstm", {"activation": "relu"})]
SHAPES = {"T5B3": (5, 3, 4, 7), "T1B1": (1, 1, 3, 5), "T7B2I1": (7, 2, 1, 6)}  # (T, B, I, H)


def _inputs(cell, T, B, I, H, dtype, bias=True, seed=0, weight_scale=0.8):
    """x (T, B, I), the states (B, width), (W_ih, b_ih) and the recurrent weights, all requiring grad (values
    near 1 in size, so the hard sigmoids see both their slope and their flat parts; the weights
    ``weight_scale`` times a standard normal)."""
    gen = torch.Generator().manual_seed(seed)
    spec = get_cell(cell)
    shapes = dict(spec.parameters(I, H, H))

    def rand(*shape, scale=0.8):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype).requires_grad_()

    x = rand(T, B, I)
    states = tuple(rand(B, w) for w in spec.state_sizes(H, H))
    input_weights = (rand(*shapes["weight_ih"], scale=weight_scale),
                     rand(*shapes["bias_ih"], scale=weight_scale) if bias else None)
    weights = tuple(rand(*shapes[name], scale=weight_scale) if not (name.startswith("bias") and not bias) else None
                    for name in spec.weights)
    return x, states, input_weights, weights


def _op(opts, x, states, input_weights, weights):
    assert layer_op.serves("auto", True, opts.cell, x, [*states, *input_weights, *weights], None, None, None)
    out, finals = layer_op.scan(opts, x, input_weights, states, weights)
    assert "ScanLayer" in out.grad_fn.next_functions[0][0].name(), out.grad_fn.next_functions
    return out, finals


def _general(opts, x, states, input_weights, weights):
    gx, scan_weights = opts.cell.scan_inputs(x, input_weights, weights, opts.cell_args)
    return dispatch.scan(opts, ScanInputs(gx, states, tuple(scan_weights)), backend="cpu_fused")


def _reference(opts, x, states, input_weights, weights):
    gx, scan_weights = opts.cell.scan_inputs(x, input_weights, weights, opts.cell_args)
    return scan_reference(opts.cell, gx, states, scan_weights, reverse=opts.reverse, acts=opts.acts,
                          cell_args=opts.cell_args)


def _run(fn, opts, x, states, input_weights, weights, upstream):
    """The output, the final states and the gradients of every input that requires grad, for the upstream
    gradients (one per output)."""
    out, finals = fn(opts, x, states, input_weights, weights)
    outputs = [out, *finals]
    leaves = [t for t in (x, *states, *input_weights, *weights) if t is not None and t.requires_grad]
    grads = torch.autograd.grad(outputs, leaves, upstream, allow_unused=True)
    return [o.detach() for o in outputs], list(grads)


def _upstream(x, states, H, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    T, B = x.shape[:2]
    return [torch.randn(T, B, H, generator=gen, dtype=torch.float64).to(dtype)] + \
        [torch.randn(s.shape, generator=gen, dtype=torch.float64).to(dtype) for s in states]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("cell,options", CASES, ids=[c + "-" + "-".join(o.values()) for c, o in CASES])
def test_op_equals_general_route_and_reference_float64(cell, options, shape, bias, reverse):
    T, B, I, H = SHAPES[shape]
    opts = SF.scan_options(get_cell(cell), {**options, "backend": "cpu_fused"})
    if reverse:
        opts = replace(opts, reverse=True)
    x, states, iw, w = _inputs(cell, T, B, I, H, torch.float64, bias)
    upstream = _upstream(x, states, H, torch.float64)
    got = _run(_op, opts, x, states, iw, w, upstream)
    general = _run(_general, opts, x, states, iw, w, upstream)
    reference = _run(_reference, opts, x, states, iw, w, upstream)
    assert len(got[1]) == 1 + len(states) + sum(t is not None for t in (*iw, *w))
    for want in (general, reference):
        for g, r in zip(got[0] + got[1], want[0] + want[1]):
            assert g.shape == r.shape
            assert_close(g, r)


@pytest.mark.parametrize("cell,options", CASES[::2], ids=[c + "-" + "-".join(o.values()) for c, o in CASES[::2]])
def test_op_float32_within_tolerance_of_float64_reference(cell, options):
    T, B, I, H = 9, 6, 5, 20
    opts = SF.scan_options(get_cell(cell), options)
    # weights of torch.nn's scale: at 0.8 a standard normal, H=20 makes the recurrence expand, and float32's
    # rounding grows with it over the steps (on the general route as much)
    x, states, iw, w = _inputs(cell, T, B, I, H, torch.float64, seed=3, weight_scale=H ** -0.5)
    upstream = _upstream(x, states, H, torch.float64, seed=4)
    want = _run(_reference, opts, x, states, iw, w, upstream)
    as32 = [None if t is None else t.detach().float().requires_grad_() for t in (x, *states, *iw, *w)]
    n = len(states)
    got = _run(_op, opts, as32[0], tuple(as32[1:1 + n]), tuple(as32[1 + n:3 + n]), tuple(as32[3 + n:]),
               [u.float() for u in upstream])
    for g, r in zip(got[0] + got[1], want[0] + want[1]):
        assert_close(g.double(), r, dtype=torch.float32)


def test_only_some_gradients_and_outputs_without_upstream():
    """An input that needs no gradient gets none (x of a first layer; one state); an output that gets no
    upstream gradient counts as zero (the final states of a model that reads only the output)."""
    opts = SF.scan_options(get_cell("lstm"), {})
    x, states, iw, w = _inputs("lstm", 6, 3, 4, 5, torch.float64)
    x, states = x.detach(), (states[0], states[1].detach())
    results = []
    for fn in (_op, _general):
        out, _ = fn(opts, x, states, iw, w)
        results.append(torch.autograd.grad((out * out).sum(), [states[0], *iw, *w]))
    for got, want in zip(*results):
        assert_close(got, want)


def test_single_bias_and_two_threads():
    """b_ih alone (a layer whose b_hh is None: the folded bias is b_ih), over a batch large enough for the
    scan to split its rows over two threads."""
    opts = SF.scan_options(get_cell("lstm"), {})
    x, states, iw, w = _inputs("lstm", 4, 130, 3, 64, torch.float64)
    w = (w[0], None)
    upstream = _upstream(x, states, 64, torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = _run(_op, opts, x, states, iw, w, upstream)
    finally:
        torch.set_num_threads(threads)
    want = _run(_reference, opts, x, states, iw, w, upstream)
    for g, r in zip(got[0] + got[1], want[0] + want[1]):
        assert_close(g, r)


def test_double_backward_goes_through_the_reference(monkeypatch):
    """create_graph=True: the op's first derivative is the reference's, differentiable again."""
    torch.manual_seed(0)
    lstm = seqtorch.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert "ScanLayer" in lstm(x)[0].grad_fn.next_functions[0][0].name()
    assert torch.autograd.gradgradcheck(lambda x: lstm(x)[0], (x,))

    def penalty():
        out, (h, c) = lstm(x)
        (g,) = torch.autograd.grad((out * out).sum() + c.sum(), x, create_graph=True)
        return torch.autograd.grad((g * g).sum(), [x, lstm.weight_hh_l0, lstm.bias_ih_l0])

    got = penalty()
    monkeypatch.setattr(layer_op, "serves", lambda *args: False)  # the same computation, the general route
    assert "ScanLayer" not in lstm(x)[0].grad_fn.next_functions[0][0].name()
    for g, r in zip(got, penalty()):
        assert_close(g, r)


def test_saved_tensors_go_through_the_hooks():
    """torch.autograd.graph.saved_tensors_hooks (activation offloading, checkpointing) sees what the node
    keeps: the inputs and the histories."""
    lstm = seqtorch.LSTM(3, 4)
    packed = []

    def pack(t):
        packed.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = lstm(torch.randn(5, 2, 3))
    assert (6, 2, 4) in packed and (16, 3) in packed and (16, 4) in packed, packed
    out.sum().backward()
    assert lstm.weight_ih_l0.grad is not None


def _layer_nodes(module, *args, **kwargs):
    return _scan_nodes(module(*args, **kwargs)[0])


def _scan_nodes(out):
    """The names of the scans' autograd nodes in out's graph."""
    names, stack, seen = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(n for n, _ in node.next_functions)
    return {n for n in names if "ScanLayer" in n or "RecurrentScan" in n}


@pytest.mark.parametrize("make", [
    lambda: seqtorch.LSTM(3, 4), lambda: seqtorch.GRU(3, 4, num_layers=2, bidirectional=True),
    lambda: seqtorch.RNN(3, 4, nonlinearity="relu"), lambda: seqtorch.LSTM(3, 4, bias=False),
    lambda: seqtorch.GRU(3, 4, reset_after=False), lambda: seqtorch.LSTM(3, 4, batch_first=True)],
    ids=["lstm", "gru-2-bidirectional", "rnn-relu", "lstm-nobias", "gru-before", "batch-first"])
def test_layers_run_the_op(make):
    names = _layer_nodes(make(), torch.randn(5, 2, 3))
    assert names and all("ScanLayer" in n for n in names), names


@pytest.mark.parametrize("case", ["lengths", "mask", "recurrent_dropout", "zoneout", "mixed-dtypes", "backend",
                                  "proj_size", "layernorm", "indrnn"])
def test_scans_outside_the_rule_take_the_general_route(case):
    """Each thing the op does not do sends the scan the general way, with a gradient still computed there."""
    x = torch.randn(5, 2, 3)
    kwargs = {}
    if case in ("recurrent_dropout", "zoneout"):
        module = seqtorch.LSTM(3, 4, **{case: 0.3}).train()
    elif case == "backend":
        module = seqtorch.LSTM(3, 4, backend="reference")
    elif case == "proj_size":
        module = seqtorch.LSTM(3, 4, proj_size=2)
    elif case == "layernorm":
        module = seqtorch.Recurrent(get_cell("layernorm_lstm"), 3, 4)
    elif case == "indrnn":
        module = seqtorch.Recurrent(get_cell("indrnn"), 3, 4)
    else:
        module = seqtorch.LSTM(3, 4)
    if case == "lengths":
        kwargs["lengths"] = torch.tensor([5, 3])
    elif case == "mask":
        kwargs["mask"] = torch.ones(5, 2, dtype=torch.bool)
    if case == "mixed-dtypes":  # the Modules refuse them; the functional API promotes them on the general route
        states = (torch.zeros(1, 2, 4, dtype=torch.float64),) * 2
        assert not layer_op.serves("auto", True, module.cell, x, [*states, *module.scan_weights()[0][1]], None, None,
                                   None)
        out, _ = SF.stack(module.cell, x, states, module.scan_weights(), num_layers=1, bidirectional=False)
        assert out.dtype == torch.float32 and _scan_nodes(out) == {"RecurrentScanBackward"}
        return
    names = _layer_nodes(module, x, **kwargs)
    assert not any("ScanLayer" in n for n in names), names


def test_transforms_and_modes_take_the_general_route():
    """vmap, forward AD and autocast: the rule says no, and the layer still computes the op's numbers."""
    lstm = seqtorch.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(4, 5, 2, 3, dtype=torch.float64)
    weights = [lstm.weight_hh_l0, lstm.bias_hh_l0]
    want = torch.stack([lstm(x_i)[0] for x_i in x]).detach()
    got = torch.func.vmap(lambda x_i: lstm(x_i)[0])(x)
    assert_close(got, want)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        dual = fwAD.make_dual(x[0], torch.ones_like(x[0]))
        assert not layer_op.serves("auto", True, lstm.cell, dual, weights, None, None, None)
        out = lstm(dual)[0]
        assert_close(fwAD.unpack_dual(out).primal, want[0])
        assert fwAD.unpack_dual(out).tangent is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer_op.serves("auto", True, lstm.cell, x[0], weights, None, None, None)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("transposed", ["none", "a", "b"], ids=["a@b", "a^T@b", "a@b^T"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M,K,N", [(1200, 40, 1040), (96, 1300, 24), (300, 9, 70), (20, 2600, 650), (3, 5, 7),
                                   (300, 700, 400), (96, 1300, 240)],
                         ids=["rows", "long-K", "odd", "chunks", "tiny", "panels", "chunked-panels"])
def test_whole_sequence_products_exact(M, K, N, dtype, transposed, threads):
    """The GEMMs of the layer op (gemm.h's matmul_into: brgemm by row blocks per thread and chunks of K past
    1024, B over 1 MiB copied into panels of 64 columns from 64 rows, a ragged last one included;
    matmul_transposed_into: the same from W^T; own_autograd.h's weight_grad_into: A copied transposed from
    256 rows) on small integers, whose products and sums are exact in float32: any element computed wrong,
    skipped or added twice shows."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (K, M) if transposed == "a" else (M, K), generator=gen).to(dtype)
    b = torch.randint(-3, 4, (N, K) if transposed == "b" else (K, N), generator=gen).to(dtype)
    want = (a.double().t() if transposed == "a" else a.double()) @ (b.double().t() if transposed == "b"
                                                                     else b.double())
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = torch.ops.seqtorch.layer_gemm(a, b, transposed == "a", transposed == "b")
    finally:
        torch.set_num_threads(old)
    assert got.dtype == dtype and torch.equal(got.double(), want)


def test_float32_layer_on_brgemm_within_tolerance_of_float64_reference():
    """A float32 layer whose products take every branch of the brgemm GEMMs (1200 rows: dgx copied transposed
    and K chunked in the weights' gradients; G = 1040: K chunked in dx), with an input that needs its
    gradient, against the float64 reference; upstream gradients of a loss averaged over the batch (1/B)."""
    T, B, I, H = 40, 30, 20, 260
    opts = SF.scan_options(get_cell("lstm"), {})
    x, states, iw, w = _inputs("lstm", T, B, I, H, torch.float64, seed=5, weight_scale=H ** -0.5)
    upstream = [u / B for u in _upstream(x, states, H, torch.float64, seed=6)]
    want = _run(_reference, opts, x, states, iw, w, upstream)
    as32 = [None if t is None else t.detach().float().requires_grad_() for t in (x, *states, *iw, *w)]
    got = _run(_op, opts, as32[0], tuple(as32[1:3]), tuple(as32[3:5]), tuple(as32[5:]), [u.float() for u in upstream])
    for g, r in zip(got[0] + got[1], want[0] + want[1]):
        assert_close(g.double(), r, dtype=torch.float32)


def test_inference_of_large_layers_runs_the_op(monkeypatch):
    """Without a gradient, a layer whose weights are over the projected scan's bound takes the op's forward
    (no autograd node), one under it the projected scan; both with the general route's numbers."""
    from seqtorch.ops import projected

    monkeypatch.setattr(projected, "MAX_WEIGHT_BYTES", 4096)  # a small layer over the bound: quick to run
    calls = []
    monkeypatch.setattr(layer_op, "scan", lambda *args: calls.append(1) or SCAN(*args))
    lstm = seqtorch.LSTM(6, 9, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(7, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        out, (h, c) = lstm(x)
    assert len(calls) == 4 and out.grad_fn is None
    monkeypatch.setattr(layer_op, "serves", lambda *args: False)
    with torch.no_grad():
        want = lstm(x)
    for g, r in zip((out, h, c), (want[0], *want[1])):
        assert_close(g, r)


SCAN = layer_op.scan


@pytest.mark.parametrize("weight_bytes", [4096, None], ids=["layer-op", "projected"])
def test_inference_mode(monkeypatch, weight_bytes):
    """torch.inference_mode() skips autograd's dispatch keys: the layer op runs as its CPU kernel (the
    forward alone), as the projected scan does, with the numbers of no_grad."""
    from seqtorch.ops import projected

    if weight_bytes is not None:  # a small layer over the projected scan's bound: the layer op's forward
        monkeypatch.setattr(projected, "MAX_WEIGHT_BYTES", weight_bytes)
    lstm = seqtorch.GRU(6, 9, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(7, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        want = lstm(x)
    with torch.inference_mode():
        got = lstm(x)
    assert got[0].is_inference()
    for g, r in zip(got, want):
        assert_close(g, r)
