"""The generic checks every cell passes, against its own reference step (float64), on every backend that has it.

Used by ``tests/cells/test_cell_registry.py`` (every registered built-in cell) and by each cell's page under
``tests/cells/`` (:class:`CellChecks`: the cells written as equations, shipped or defined in a test file).
Random upstream gradients for every output and final state, NaN-poisoned buffers (:func:`poison`), lengths of
1 and of T in one batch, the recurrent-dropout mask, reverse, zoneout, a (T, B) step mask with holes and resets;
in float64 and, against the float64 reference, in float32; the C++ loop in row chunks. Each case first checks that the implementation it means
to test is the one that serves the cell (:func:`use`), so a fallback cannot pass for it.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import pytest
import torch

from conftest import assert_close
from seqtorch.functional import scan
from seqtorch.ops import buffers, dispatch, native
from seqtorch.ops.contract import ScanInputs, ScanOptions
from seqtorch.ops.reference import scan_reference
from seqtorch.recurrent_cells import Acts, Cell, get_cell
from support.dispatching import serving_kernel

T, B, H = 5, 4, 3

#: Cells whose states need other starting values than N(0, 0.25), by registered name: a function of the
#: random states (sLSTM's normalizer must be positive).
INITIAL_STATES: dict[str, Callable] = {}


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    """Every buffer the loops and the Triton launchers allocate starts as NaN: an element a kernel forgot to
    write fails the comparison (the Triton launchers have a switch of their own)."""
    buffers.set_poison(True)
    if importlib.util.find_spec("triton") is not None:
        from seqtorch.ops.triton import common

        monkeypatch.setattr(common, "POISON_NEW_BUFFERS", True)
    yield
    buffers.set_poison(False)


def spec_of(cell: Cell | str) -> Cell:
    return get_cell(cell) if isinstance(cell, str) else cell


def make(cell, *, bias=True, mask=False, lengths=False, seed=0, dtype=torch.float64, batch=B):
    """Random inputs of one scan of ``cell``: gx, states, weights (None for an absent bias), lengths, mask."""
    g = torch.Generator().manual_seed(seed)
    spec = spec_of(cell)
    P = H - 1 if spec.projected else H

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()

    gx = rand(T, batch, spec.gates * H)
    states = tuple(rand(batch, w, scale=0.5) for w in spec.state_sizes(H, P))
    if spec.name in INITIAL_STATES:
        states = tuple(s.detach().requires_grad_() for s in INITIAL_STATES[spec.name](states))
    weights = tuple(None if (name.startswith("bias") and not bias) else rand(*shape, scale=0.5)
                    for name, shape in zip(spec.weights, spec.weight_shapes(H, P)))
    L = torch.tensor(([T, 1] + [3] * (batch - 2))[:batch]) if lengths else None
    M = (torch.bernoulli(torch.full((batch, P), 0.7, dtype=torch.float64), generator=g) / 0.7).to(dtype) if mask \
        else None
    return gx, states, weights, L, M


def cell_args(cell):
    return (1e-5,) * len(spec_of(cell).cell_args)  # LayerNorm's eps


def outputs_and_grads(run, gx, states, weights):
    out, finals = run()
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)).sum() for t in (out, *finals))
    leaves = [t for t in (gx, *states, *weights) if t is not None]
    return [out, *finals, *torch.autograd.grad(loss, leaves)]


def has_cpp(cell) -> bool:
    """Whether the C++ loop has code for ``cell``: a ``cpu.h`` in its folder, or C++ generated from its equations."""
    spec = spec_of(cell)
    return spec.name in native.cell_headers() or spec.generated_cpp() is not None


def backends_for(cell):
    """The fused backends that have ``cell``: the C++ loop (a cell with C++ code) and the Python loop, the
    Triton kernels (a cell with a ``triton.py``, or whose equations' generated code fits them: common.has_cell):
    the persistent ones and, for a cell it takes, the alternating loop (GEMM + launch per step)."""
    spec = spec_of(cell)
    cases = [("cpu_fused", "native")] if has_cpp(spec) else []
    cases += [("cpu_fused", "python")]
    if "triton" in dispatch.available_backends():
        from seqtorch.ops.triton import alternating, common, persistent

        if common.has_cell(spec):
            cases.append(("triton", "interpreter"))
            cases += [("triton", "alternating")] if alternating.supports_cell(spec) is None else []
    return cases


def use(cell, backend, loop, monkeypatch, like):
    """Set up the case's backend and check that the implementation meant is the one that serves ``cell``."""
    name = spec_of(cell).name
    monkeypatch.setattr(dispatch, "USE_NATIVE", loop == "native")
    if backend == "triton":
        from seqtorch.ops.triton import alternating, common, persistent

        monkeypatch.setenv("TRITON_INTERPRET", "1")
        # the alternating loop serves above the persistent kernels' largest H: lowered, it serves every size
        monkeypatch.setattr(persistent, "MAX_HIDDEN", 0 if loop == "alternating" else persistent.MAX_HIDDEN)
        want = alternating.KERNEL if loop == "alternating" else persistent.KERNEL
        assert serving_kernel("triton", name, like, H) is want
    if loop == "native":
        assert dispatch.cpp_kernel(name) is not None, dispatch.cpp_failure(get_cell(name))
        assert serving_kernel("cpu_fused", name, like, H) is dispatch.cpp_kernel(name)
    if loop == "python":
        from seqtorch.ops.dispatch import PYTHON_LOOP

        assert serving_kernel("cpu_fused", name, like, H) is PYTHON_LOOP


def check_matches_reference(cell, backend, loop, monkeypatch, *, recurrent_activation="sigmoid", reverse=False,
                            lengths=False, mask=False, bias=True):
    """float64: outputs, final states and every gradient against the reference scan."""
    name = spec_of(cell).name
    gx, states, weights, L, M = make(name, bias=bias, mask=mask, lengths=lengths)
    use(name, backend, loop, monkeypatch, gx)
    options = dict(lengths=L, rec_mask=M, reverse=reverse, recurrent_activation=recurrent_activation,
                   cell_args=cell_args(name))
    got = outputs_and_grads(lambda: scan(name, gx, states, weights, backend=backend, **options), gx, states, weights)
    want = outputs_and_grads(lambda: scan_reference(name, gx, states, weights, lengths=L, rec_mask=M, reverse=reverse,
                                                    acts=Acts.of("tanh", recurrent_activation),
                                                    cell_args=cell_args(name)), gx, states, weights)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


def check_zoneout(cell, backend, loop, kind, monkeypatch):
    """Zoneout (written once per scan, for every cell): per-step 0/1 masks per state, or the evaluation's
    constant p, with lengths, the recurrent-dropout mask and reverse."""
    name = spec_of(cell).name
    gx, states, weights, L, M = make(name, mask=True, lengths=True, seed=3)
    use(name, backend, loop, monkeypatch, gx)
    g = torch.Generator().manual_seed(4)
    if kind == "masks":
        keep = tuple(torch.bernoulli(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                     for s in states)
    else:
        keep = tuple(torch.full((1, 1, 1), 0.3, dtype=torch.float64).expand(T, B, s.shape[-1]) for s in states)
    options = dict(lengths=L, rec_mask=M, reverse=True, keep=keep, cell_args=cell_args(name))
    got = outputs_and_grads(lambda: scan(name, gx, states, weights, backend=backend, **options), gx, states, weights)
    want = outputs_and_grads(lambda: scan_reference(name, gx, states, weights, lengths=L, rec_mask=M, reverse=True,
                                                    keep=keep, cell_args=cell_args(name)), gx, states, weights)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


def step_flags(batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    """A (T, B) step mask with holes and (T, B) restarts: row 0 padded on the left, row 1 with holes, row 2
    padded on the right, step 2 taken by no row (the persistent kernels skip it whole); restarts at a masked
    step, at a hole, at the step no row takes and at a valid step."""
    mask = torch.ones(T, batch, dtype=torch.bool)
    mask[:2, 0] = False
    mask[1, 1] = mask[3, 1] = False
    mask[3:, 2] = False
    mask[2] = False
    restart = torch.zeros(T, batch, dtype=torch.bool)
    restart[0, 0] = restart[3, 1] = restart[2, 2] = restart[4, 3] = True
    return mask, restart


def check_step_mask_and_resets(cell, backend, loop, monkeypatch, *, own_resets, reverse, lengths):
    """float64, against the reference: :func:`step_flags`' mask and restarts, with the recurrent-dropout mask,
    from reset states of the scan's own (whose gradients are compared too) or from the initial states."""
    name = spec_of(cell).name
    gx, states, weights, L, M = make(name, mask=True, lengths=lengths, seed=9)
    resets = ()
    if own_resets:
        g = torch.Generator().manual_seed(10)
        resets = tuple(torch.randn(s.shape, generator=g, dtype=s.dtype) * 0.5 for s in states)
        resets = tuple(r.requires_grad_() for r in INITIAL_STATES.get(name, lambda states: states)(resets))
    use(name, backend, loop, monkeypatch, gx)
    mask, restart = step_flags()
    opts = ScanOptions(spec_of(cell), reverse=reverse, cell_args=cell_args(name))
    inputs = ScanInputs(gx, states, weights, lengths=L, mask=mask, restart=restart, reset_states=resets, rec_mask=M)
    # the reset states are leaves too: their gradients are outputs of the scan
    got = outputs_and_grads(lambda: dispatch.scan(opts, inputs, backend=backend), gx, (*states, *resets), weights)
    want = outputs_and_grads(lambda: scan_reference(name, gx, states, weights, lengths=L, rec_mask=M, reverse=reverse,
                                                    cell_args=cell_args(name), mask=mask, restart=restart,
                                                    reset_states=resets), gx, (*states, *resets), weights)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


def check_float32(cell, backend, loop, monkeypatch, *, recurrent_activation="sigmoid", reverse=False, bias=True):
    """float32 kernels against the float64 reference on the same values: lengths, the recurrent-dropout mask,
    zoneout masks on every state, random upstream gradients for every output."""
    name = spec_of(cell).name
    gx, states, weights, L, M = make(name, bias=bias, mask=True, lengths=True, seed=5, dtype=torch.float32)
    use(name, backend, loop, monkeypatch, gx)
    g = torch.Generator().manual_seed(6)
    keep = tuple(torch.bernoulli(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                 for s in states)
    options = dict(lengths=L, reverse=reverse, recurrent_activation=recurrent_activation, cell_args=cell_args(name))
    got = outputs_and_grads(lambda: scan(name, gx, states, weights, backend=backend, rec_mask=M,
                                         keep=tuple(k.float() for k in keep), **options), gx, states, weights)
    as64 = [None if t is None else t.detach().double().requires_grad_() for t in (gx, *states, *weights)]
    gx64, states64, weights64 = as64[0], tuple(as64[1:1 + len(states)]), tuple(as64[1 + len(states):])
    want = outputs_and_grads(lambda: scan_reference(name, gx64, states64, weights64, lengths=L, rec_mask=M.double(),
                                                    reverse=reverse, acts=Acts.of("tanh", recurrent_activation),
                                                    keep=keep, cell_args=cell_args(name)),
                             gx64, states64, weights64)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert_close(a, b.float())


def row_chunk_case(cell, batch=19):
    """Inputs for a C++ scan in row chunks: lengths of 1 and of T in both chunks of 9 and 10 rows, the
    recurrent-dropout mask, zoneout masks on every state (float64)."""
    gx, states, weights, _, M = make(cell, mask=True, seed=7, batch=batch)
    g = torch.Generator().manual_seed(8)
    L = torch.tensor([T, 1, 3, 2, T, 4, 1, T, 2] + [T, 1, 2, 3, T, 4, 1, 3, T, 2])
    keep = tuple(torch.bernoulli(torch.full((T, batch, s.shape[-1]), 0.3, dtype=torch.float64), generator=g)
                 for s in states)
    detach = lambda ts: tuple(None if t is None else t.detach() for t in ts)  # noqa: E731
    return gx.detach(), detach(states), detach(weights), L, M, keep


def run_cpp_in_chunks(cell, dtype, threads):
    """Outputs and gradients of the C++ loop on :func:`row_chunk_case` with ``threads`` threads."""
    name = spec_of(cell).name
    gx, states, weights, L, M, keep = row_chunk_case(name)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert native.load().scan_row_chunks(gx.shape[1], 1.0, 1.0) == threads
        leaves = [t.to(dtype).requires_grad_() for t in (gx, *states, *weights)]
        gx_c, states_c, weights_c = leaves[0], tuple(leaves[1:1 + len(states)]), tuple(leaves[1 + len(states):])
        return outputs_and_grads(lambda: scan(name, gx_c, states_c, weights_c, backend="cpu_fused", lengths=L,
                                              rec_mask=M.to(dtype), keep=tuple(k.to(dtype) for k in keep),
                                              reverse=True, cell_args=cell_args(name)), gx_c, states_c, weights_c)
    finally:
        torch.set_num_threads(old)


def check_row_chunks_reference(cell, monkeypatch):
    """With two threads and small products the C++ loop splits the batch into row chunks, each running the
    whole time loop on its own thread (scan.cpp's row_chunks); float64 against the reference."""
    name = spec_of(cell).name
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    got = run_cpp_in_chunks(name, torch.float64, threads=2)
    gx, states, weights, L, M, keep = row_chunk_case(name)
    leaves = [t.requires_grad_() for t in (gx, *states, *weights)]
    gx, states, weights = leaves[0], tuple(leaves[1:1 + len(states)]), tuple(leaves[1 + len(states):])
    want = outputs_and_grads(lambda: scan_reference(name, gx, states, weights, lengths=L, rec_mask=M, keep=keep,
                                                    reverse=True, cell_args=cell_args(name)), gx, states, weights)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        assert_close(a, b)


def check_row_chunks_float32(cell, monkeypatch):
    """float32 in two row chunks against the same scan on one thread (whole rows)."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    for a, b in zip(run_cpp_in_chunks(cell, torch.float32, threads=2), run_cpp_in_chunks(cell, torch.float32, 1)):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert_close(a, b)


class CellChecks:
    """The generic checks as a test class, each on every backend that has the cell: a cell's page subclasses
    it with ``cell = TheCell()`` (made at import, so that the cells of one module build into one C++ library)
    and ``triton = False`` for a cell beyond the Triton kernels (its page then checks the refusal's reason)."""

    cell: Cell
    triton: bool = True

    def test_has_its_generated_code(self):
        assert self.cell.reference_only is None
        assert self.cell.generated_python() and self.cell.generated_cpp()
        assert ("cpu_fused", "native") in backends_for(self.cell)
        if "triton" in dispatch.available_backends():
            assert (("triton", "interpreter") in backends_for(self.cell)) is self.triton
            assert (self.cell.generated_triton() is not None) is self.triton

    @pytest.mark.parametrize("own_resets, reverse, lengths", [(True, False, False), (False, True, True)],
                             ids=["own-resets", "initial-resets-rev-len"])
    def test_with_a_step_mask_and_resets_matches_its_reference(self, own_resets, reverse, lengths, monkeypatch):
        for backend, loop in backends_for(self.cell):
            check_step_mask_and_resets(self.cell, backend, loop, monkeypatch, own_resets=own_resets, reverse=reverse,
                                       lengths=lengths)

    @pytest.mark.parametrize("reverse, lengths, mask, bias", [(False, False, False, True), (True, True, True, True),
                                                              (False, True, False, False)],
                             ids=["plain", "rev-len-mask", "len-nobias"])
    def test_matches_its_reference(self, reverse, lengths, mask, bias, monkeypatch):
        for backend, loop in backends_for(self.cell):
            check_matches_reference(self.cell, backend, loop, monkeypatch, reverse=reverse, lengths=lengths,
                                    mask=mask, bias=bias)

    @pytest.mark.parametrize("kind", ["masks", "evaluation"])
    def test_with_zoneout_matches_its_reference(self, kind, monkeypatch):
        for backend, loop in backends_for(self.cell):
            check_zoneout(self.cell, backend, loop, kind, monkeypatch)

    @pytest.mark.parametrize("reverse, bias", [(True, True), (False, False)], ids=["rev", "nobias"])
    def test_in_float32_matches_the_float64_reference(self, reverse, bias, monkeypatch):
        for backend, loop in backends_for(self.cell):
            check_float32(self.cell, backend, loop, monkeypatch, reverse=reverse, bias=bias)

    def test_cpp_loop_in_row_chunks(self, monkeypatch):
        check_row_chunks_reference(self.cell, monkeypatch)
        check_row_chunks_float32(self.cell, monkeypatch)
