"""Every registered cell, on every backend that has it, against its own reference step (float64).

This runs whatever is in ``seqtorch.recurrent_cells.CELLS``, from the shapes its spec declares: a new cell
is tested here as soon as it has its registry line. Random upstream gradients for every output and final
state, NaN-poisoned buffers, lengths of 1 and of T in one batch, the recurrent-dropout mask, reverse; in
float64 and, against the float64 reference, in float32. The C++ case runs only for a cell with a ``cpu.h``
and checks that the C++ loop (not the Python one) served it.
"""

import importlib.util

import pytest
import torch

from conftest import assert_close
from seqtorch.functional import scan
from seqtorch.ops import buffers, dispatch, native
from support.dispatching import serving_kernel
from seqtorch.ops.contract import ScanOptions
from seqtorch.recurrent_cells import CELLS, Acts, Cell, get_cell
from seqtorch.ops.reference import scan_reference

T, B, H = 5, 4, 3


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    """Every buffer the loops and the Triton launchers allocate starts as NaN: an element a kernel forgot to
    write fails the comparison (the Triton launchers have a switch of their own)."""
    buffers.set_poison(True)
    if importlib.util.find_spec("triton") is not None:
        from seqtorch.ops.triton import common

        monkeypatch.setattr(common, "POISON_NEW_BUFFERS", True)
    yield
    buffers.set_poison(False)


def make(cell, *, bias=True, mask=False, lengths=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    spec = CELLS[cell]
    P = H - 1 if spec.projected else H

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()

    gx = rand(T, B, spec.gates * H)
    states = tuple(rand(B, w, scale=0.5) for w in spec.state_sizes(H, P))
    weights = tuple(None if (name.startswith("bias") and not bias) else rand(*shape, scale=0.5)
                    for name, shape in zip(spec.weights, spec.weight_shapes(H, P)))
    L = torch.tensor([T, 1] + [3] * (B - 2)) if lengths else None
    M = (torch.bernoulli(torch.full((B, P), 0.7, dtype=torch.float64), generator=g) / 0.7).to(dtype) if mask else None
    return gx, states, weights, L, M


def cell_args(cell):
    return (1e-5,) * len(CELLS[cell].cell_args)  # LayerNorm's eps


def outputs_and_grads(run, gx, states, weights):
    out, finals = run()
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)).sum() for t in (out, *finals))
    leaves = [t for t in (gx, *states, *weights) if t is not None]
    return [out, *finals, *torch.autograd.grad(loss, leaves)]


def backends_for(cell):
    """The fused backends that have ``cell``: the C++ loop (a cell with a ``cpu.h``) and the Python loop, the
    Triton kernels: the persistent ones and, for a cell it takes, the alternating loop (GEMM + launch per step)."""
    cases = [("cpu_fused", "native")] if cell in native.cell_headers() else []
    cases += [("cpu_fused", "python")]
    if "triton" in dispatch.available_backends():
        from seqtorch.ops.triton import alternating, common

        if common.has_cell(get_cell(cell)):
            cases.append(("triton", "interpreter"))
            cases += [("triton", "alternating")] if alternating.supports_cell(get_cell(cell)) is None else []
    return cases


CASES = [pytest.param(cell, backend, loop, id=f"{cell}-{backend}-{loop}")
         for cell in CELLS for backend, loop in backends_for(cell)]


def use(cell, backend, loop, monkeypatch, like):
    """Set up the case's backend; for the C++ case, check that the C++ loop is what serves ``cell``."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", loop == "native")
    if backend == "triton":
        from seqtorch.ops.triton import alternating, persistent

        monkeypatch.setenv("TRITON_INTERPRET", "1")
        # the alternating loop serves above the persistent kernels' largest H: lowered, it serves every size
        monkeypatch.setattr(persistent, "MAX_HIDDEN", 0 if loop == "alternating" else persistent.MAX_HIDDEN)
        want = alternating.KERNEL if loop == "alternating" else persistent.KERNEL
        assert serving_kernel("triton", cell, like, H) is want
    if loop == "native":
        assert native.kernel(cell) is not None, native.failure()
        assert serving_kernel("cpu_fused", cell, like, H) is native.kernel(cell)


# The cells with a kernel of their own on every backend: C++ (cpu.h) and Triton (triton.py).
KERNEL_CELLS = ["rnn", "lstm", "gru", "gru_reset_before", "lstm_proj", "indrnn", "layernorm_lstm", "layernorm_gru"]


@pytest.mark.parametrize("cell", KERNEL_CELLS)
def test_cell_has_its_cpp_kernel(cell):
    assert native.load() is not None, native.failure()
    assert cell in native.cpp_cells()


@pytest.mark.parametrize("cell", KERNEL_CELLS)
def test_cell_has_its_triton_kernels(cell):
    pytest.importorskip("triton")
    from seqtorch.ops.triton import common

    assert common.has_cell(get_cell(cell))
    assert ("triton", "interpreter") in backends_for(cell)


@pytest.mark.parametrize("reverse, lengths, mask, bias", [(False, False, False, True), (True, True, True, True),
                                                          (False, True, False, False)],
                         ids=["plain", "rev-len-mask", "len-nobias"])
@pytest.mark.parametrize("recurrent_activation", ["sigmoid", "hard_sigmoid_keras2", "hardsigmoid"])
@pytest.mark.parametrize("cell, backend, loop", CASES)
def test_cell_matches_its_reference(cell, backend, loop, recurrent_activation, reverse, lengths, mask, bias,
                                    monkeypatch):
    gx, states, weights, L, M = make(cell, bias=bias, mask=mask, lengths=lengths)
    use(cell, backend, loop, monkeypatch, gx)
    options = dict(lengths=L, rec_mask=M, reverse=reverse, recurrent_activation=recurrent_activation,
                   cell_args=cell_args(cell))
    got = outputs_and_grads(lambda: scan(cell, gx, states, weights, backend=backend, **options), gx, states, weights)
    want = outputs_and_grads(lambda: scan_reference(cell, gx, states, weights, lengths=L, rec_mask=M, reverse=reverse,
                                                    acts=Acts.of("tanh", recurrent_activation),
                                                    cell_args=cell_args(cell)), gx, states, weights)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_has_a_reference_and_a_python_loop(cell):
    """The two parts without which a cell cannot run on every device."""
    spec = type(CELLS[cell])
    for method in ("step", "loop_forward", "loop_backward", "saved"):
        assert getattr(spec, method) is not getattr(Cell, method), method
    assert len(CELLS[cell].weights) == len(CELLS[cell].weight_shapes(H, H))


@pytest.mark.parametrize("kind", ["masks", "evaluation"])
@pytest.mark.parametrize("cell, backend, loop", CASES)
def test_cell_with_zoneout_matches_its_reference(cell, backend, loop, kind, monkeypatch):
    """Zoneout (written once per scan, for every cell): per-step 0/1 masks per state, or the evaluation's
    constant p, with lengths, the recurrent-dropout mask and reverse."""
    gx, states, weights, L, M = make(cell, mask=True, lengths=True, seed=3)
    use(cell, backend, loop, monkeypatch, gx)
    g = torch.Generator().manual_seed(4)
    if kind == "masks":
        keep = tuple(torch.bernoulli(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                     for s in states)
    else:
        keep = tuple(torch.full((1, 1, 1), 0.3, dtype=torch.float64).expand(T, B, s.shape[-1]) for s in states)
    options = dict(lengths=L, rec_mask=M, reverse=True, keep=keep, cell_args=cell_args(cell))
    got = outputs_and_grads(lambda: scan(cell, gx, states, weights, backend=backend, **options), gx, states, weights)
    want = outputs_and_grads(lambda: scan_reference(cell, gx, states, weights, lengths=L, rec_mask=M, reverse=True,
                                                    keep=keep, cell_args=cell_args(cell)), gx, states, weights)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


@pytest.mark.parametrize("recurrent_activation, reverse, bias", [("sigmoid", True, True), ("hardsigmoid", False, False)],
                         ids=["sigmoid-rev", "hardsigmoid-nobias"])
@pytest.mark.parametrize("cell, backend, loop", CASES)
def test_cell_in_float32_matches_the_float64_reference(cell, backend, loop, recurrent_activation, reverse, bias,
                                                       monkeypatch):
    """float32 kernels against the float64 reference on the same values: lengths, the recurrent-dropout mask,
    zoneout masks on every state, random upstream gradients for every output."""
    gx, states, weights, L, M = make(cell, bias=bias, mask=True, lengths=True, seed=5, dtype=torch.float32)
    use(cell, backend, loop, monkeypatch, gx)
    g = torch.Generator().manual_seed(6)
    keep = tuple(torch.bernoulli(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                 for s in states)
    options = dict(lengths=L, reverse=reverse, recurrent_activation=recurrent_activation, cell_args=cell_args(cell))
    got = outputs_and_grads(lambda: scan(cell, gx, states, weights, backend=backend, rec_mask=M,
                                         keep=tuple(k.float() for k in keep), **options), gx, states, weights)
    as64 = [None if t is None else t.detach().double().requires_grad_() for t in (gx, *states, *weights)]
    gx64, states64, weights64 = as64[0], tuple(as64[1:1 + len(states)]), tuple(as64[1 + len(states):])
    want = outputs_and_grads(lambda: scan_reference(cell, gx64, states64, weights64, lengths=L, rec_mask=M.double(),
                                                    reverse=reverse, acts=Acts.of("tanh", recurrent_activation),
                                                    keep=keep, cell_args=cell_args(cell)), gx64, states64, weights64)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert_close(a, b.float())


def row_chunk_case(cell, batch=19):
    """Inputs for a C++ scan in row chunks: lengths of 1 and of T in both chunks of 9 and 10 rows, the
    recurrent-dropout mask, zoneout masks on every state (float64)."""
    g = torch.Generator().manual_seed(7)
    spec = CELLS[cell]
    P = H - 1 if spec.projected else H

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    gx = rand(T, batch, spec.gates * H)
    states = tuple(rand(batch, w, scale=0.5) for w in spec.state_sizes(H, P))
    weights = tuple(rand(*shape, scale=0.5) for shape in spec.weight_shapes(H, P))
    L = torch.tensor([T, 1, 3, 2, T, 4, 1, T, 2] + [T, 1, 2, 3, T, 4, 1, 3, T, 2])
    M = torch.bernoulli(torch.full((batch, P), 0.7, dtype=torch.float64), generator=g) / 0.7
    keep = tuple(torch.bernoulli(torch.full((T, batch, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                 for s in states)
    return gx, states, weights, L, M, keep


def run_cpp_in_chunks(cell, dtype, threads):
    """Outputs and gradients of the C++ loop on :func:`row_chunk_case` with ``threads`` threads."""
    gx, states, weights, L, M, keep = row_chunk_case(cell)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert native.load().scan_row_chunks(gx.shape[1], 1.0) == threads
        leaves = [t.to(dtype).requires_grad_() for t in (gx, *states, *weights)]
        gx_c, states_c, weights_c = leaves[0], tuple(leaves[1:1 + len(states)]), tuple(leaves[1 + len(states):])
        return outputs_and_grads(lambda: scan(cell, gx_c, states_c, weights_c, backend="cpu_fused", lengths=L,
                                              rec_mask=M.to(dtype), keep=tuple(k.to(dtype) for k in keep),
                                              reverse=True, cell_args=cell_args(cell)), gx_c, states_c, weights_c)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("cell", sorted(native.cell_headers()))
def test_cpp_loop_in_row_chunks_matches_its_reference(cell, monkeypatch):
    """With two threads and small products the C++ loop splits the batch into row chunks, each running the
    whole time loop on its own thread (scan.cpp's row_chunks); float64 against the reference."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    got = run_cpp_in_chunks(cell, torch.float64, threads=2)
    gx, states, weights, L, M, keep = row_chunk_case(cell)
    leaves = [t.requires_grad_() for t in (gx, *states, *weights)]
    gx, states, weights = leaves[0], tuple(leaves[1:1 + len(states)]), tuple(leaves[1 + len(states):])
    want = outputs_and_grads(lambda: scan_reference(cell, gx, states, weights, lengths=L, rec_mask=M, keep=keep,
                                                    reverse=True, cell_args=cell_args(cell)), gx, states, weights)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


@pytest.mark.parametrize("cell", sorted(native.cell_headers()))
def test_cpp_loop_in_row_chunks_float32_matches_one_thread(cell, monkeypatch):
    """float32 in two row chunks against the same scan on one thread (whole rows)."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    for a, b in zip(run_cpp_in_chunks(cell, torch.float32, threads=2), run_cpp_in_chunks(cell, torch.float32, 1)):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert_close(a, b)
