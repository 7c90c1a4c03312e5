"""Cells written as equations on the Triton kernels: the code generated from them (pointwise/triton_code.py).

Every cell page under ``tests/cells/`` runs its cell (the shipped ones, and ``Gated``, defined in its test
file) on the Triton kernels too, with the registry's generic checks (``tests/support/cell_checks.py``): the
persistent kernels and the alternating loop in the interpreter, float64 and float32 against the reference,
lengths of 1 and of T, a step mask with holes, resets, reverse, zoneout, NaN-poisoned buffers, and the check
that the Triton kernel served. Here, what is the Triton generator's own:

* ``EveryOp``, a cell of this file that uses every op of ``ir.OPS``, under the same checks on both Triton
  loops; its state is NaN where c is 0 (never, on a real unit), so a padding column the kernels compute with
  (c = 0 there) that reached a product would spread NaN into every column;
* what the kernels cannot take is refused by ``supports`` with the reason, and the dispatch says so: the
  sLSTM's four states, five gate blocks, four vectors (one more than the kernels' weight slots);
* the generated module is the cache's file, keyed by its source's hash, and a cell made after the kernels
  were built runs on its first launch;
* the kernels of the cells written as equations compile for sm_90 ahead of time (as
  ``tests/ops/test_triton_compile.py`` compiles the built-in cells'; a cross of the grid by default, all of it
  with the slow tests).
"""

import math

import pytest
import torch

triton = pytest.importorskip("triton")

import seqtorch  # noqa: E402
from seqtorch.equations import JANET, MGU, SLSTM, CoupledLSTM, PeepholeLSTM  # noqa: E402
from seqtorch.ops import dispatch, native_cells  # noqa: E402
from seqtorch.ops.contract import ScanInputs, ScanOptions  # noqa: E402
from seqtorch.ops.triton import alternating, common, persistent  # noqa: E402
from seqtorch.ops.triton.persistent_kernels import kernels  # noqa: E402
from seqtorch.ops.triton.step_kernels import step_kernels  # noqa: E402
from seqtorch.recurrent_cells import get_cell  # noqa: E402
from seqtorch.recurrent_cells.pointwise import ir  # noqa: E402
from support.cell_checks import (backends_for, check_float32, check_matches_reference,  # noqa: E402
                                 check_step_mask_and_resets, check_zoneout, make, poison)  # noqa: F401 (autouse)
from support.triton_aot import GPUTarget, Steps, compile_sm90, cross_of_grid  # noqa: E402


class EveryOp(seqtorch.PointwiseCell):
    """Every op the generators write (and a NaN constant on the padding, see the module docstring)."""

    gates = 4
    states = ("h", "c")
    vectors = ("scale",)

    def forward(self, z, h, c, scale):
        a, b, g, o = z.chunk(4, dim=-1)
        pos = torch.abs(a) + 0.5
        r = torch.sqrt(pos) + torch.rsqrt(pos) + torch.reciprocal(pos + 1) + pos ** -2
        u = torch.log(pos) + torch.log1p(torch.sigmoid(b)) - torch.expm1(-pos) + torch.exp(-pos)
        m = torch.maximum(torch.relu(g), torch.minimum(c, torch.erf(b))).clamp(-0.9, 0.9)
        keep = (a > 0) & ~(b <= 0.5) | (g == c) | (o != 0) & (o < 1) | (o >= 2)
        s = torch.sign(o) * keep.to(z.dtype)
        c_new = torch.where(keep, m, -u / r) + s * torch.tanh(h) * scale + torch.where(c == 0, math.nan, 0.0)
        return torch.sigmoid(o + scale) * torch.tanh(c_new), c_new


EVERY_OP = EveryOp()
TRITON_LOOPS = [("triton", "interpreter"), ("triton", "alternating")]


def test_every_op_is_in_the_cell_and_the_triton_backends_have_it():
    assert EVERY_OP.reference_only is None
    assert set(ir.OPS) == EVERY_OP._code.step.ops_used()
    assert set(TRITON_LOOPS) <= set(backends_for(EVERY_OP))
    # where the kernels' padding is (z, states and vectors 0), its state is NaN: see the module docstring
    zeros = torch.zeros(2, 4 * 16, dtype=torch.float64)
    assert EVERY_OP.forward(zeros, zeros[:, :16], zeros[:, :16], zeros[0, :16])[1].isnan().all()


# the interpreter's numpy says so when the cell's math meets the padding (log(0), 0/0): expected, and zeroed
@pytest.mark.filterwarnings("ignore:(divide by zero|invalid value) encountered:RuntimeWarning")
@pytest.mark.parametrize("backend, loop", TRITON_LOOPS, ids=["persistent", "alternating"])
def test_every_op_matches_the_reference(backend, loop, monkeypatch):
    """float64: plain; reverse with lengths and the recurrent-dropout mask; no bias; zoneout masks; a step mask
    with holes and resets; float32 against the float64 reference."""
    check_matches_reference(EVERY_OP, backend, loop, monkeypatch)
    check_matches_reference(EVERY_OP, backend, loop, monkeypatch, reverse=True, lengths=True, mask=True)
    check_matches_reference(EVERY_OP, backend, loop, monkeypatch, lengths=True, bias=False)
    check_zoneout(EVERY_OP, backend, loop, "masks", monkeypatch)
    check_step_mask_and_resets(EVERY_OP, backend, loop, monkeypatch, own_resets=True, reverse=False, lengths=True)
    check_float32(EVERY_OP, backend, loop, monkeypatch, reverse=True)


# ---- refusals -------------------------------------------------------------------------------------------

class FiveGates(seqtorch.PointwiseCell):
    gates = 5

    def forward(self, z, h):
        return torch.tanh(sum(z.chunk(5, dim=-1)) + h)


class FourVectors(seqtorch.PointwiseCell):
    vectors = ("a", "b", "c", "d")

    def forward(self, z, h, a, b, c, d):
        return torch.tanh(z * a + h * b + c * d)


@pytest.mark.parametrize("cls, reason", [
    (SLSTM, r"the Triton kernels take at most 2 states \(h, c\) and 4 gate blocks \(this cell has 4 and 4\)"),
    (FiveGates, r"at most 2 states \(h, c\) and 4 gate blocks \(this cell has 1 and 5\)"),
    (FourVectors, r"has 4 extra weights \(after weight_hh, bias_hh\) \(a, b, c, d\); the Triton kernels have 3 slots"),
], ids=["slstm-four-states", "five-gates", "four-vectors"])
def test_a_cell_beyond_the_kernels_is_refused_with_its_reason(cls, reason, monkeypatch):
    """``supports`` of both Triton implementations names the cell and the limit, so ``backend="triton"`` raises
    with it (``"auto"`` takes the next implementation, as for any input the kernels cannot take); the cell is no
    Triton cell, so the registry's checks leave the Triton cases out (its page runs the other backends)."""
    cell = cls()
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # so that the device is no reason: the cell is the only one
    gx, states, weights, _, _ = make(cell)
    inputs = ScanInputs(gx, states, weights)
    for supports in (persistent.supports, alternating.supports):
        assert cell.name in supports(ScanOptions(cell), inputs)
    with pytest.raises(RuntimeError, match=rf"{cell.name}.*{reason}.*\(triton persistent\).*{reason}.*"
                                           rf"\(triton alternating\)"):
        dispatch.choose("triton", ScanOptions(cell), inputs)
    assert not common.has_cell(cell) and cell.name not in common.cell_names()
    assert not any(backend == "triton" for backend, _ in backends_for(cell))


# ---- the generated module -------------------------------------------------------------------------------

def test_the_generated_module_is_the_caches_file_named_by_its_hash():
    cell = PeepholeLSTM()
    module = common.cell_module(cell)
    path = native_cells.cache_root() / "triton"
    assert module.__file__.startswith(str(path / f"{cell.name}_"))
    with open(module.__file__) as f:
        assert f.read() == cell.generated_triton()
    assert common.cell_module(cell) is module
    assert module.CELL is get_cell(cell.name) and callable(module.forward) and callable(module.backward)


def test_a_cell_made_after_the_kernels_were_built_runs_on_its_first_launch(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels().cells and step_kernels().cells  # built (and cached) before the cell exists

    class Late(seqtorch.PointwiseCell):
        gates = 2

        def forward(self, z, h):
            f, g = z.chunk(2, dim=-1)
            return torch.sigmoid(f) * h + torch.tanh(g)

    cell = Late()
    assert cell.name not in kernels().cells
    for backend, loop in TRITON_LOOPS:
        check_matches_reference(cell, backend, loop, monkeypatch, lengths=True)
    assert cell.name in kernels().cells and cell.name in step_kernels().cells


# ---- ahead-of-time compiles for sm_90 ---------------------------------------------------------------------

EQUATION_CELLS = [cls() for cls in (PeepholeLSTM, CoupledLSTM, MGU, JANET)] + [EVERY_OP]
COMPILE_SETS = [  # (id, hidden, dtype, per-step inputs): W_hh on chip, then re-read from L2
    ("H32-mask-restart-own-recmask", 32, torch.float32,
     Steps(step_mask=True, restart=True, own_resets=True, rec_mask=True)),
    ("H64-L2-float64-lengths", 64, torch.float64, Steps(lengths=True)),
]


@pytest.mark.skipif(GPUTarget is None, reason="this triton has no GPUTarget for ahead-of-time builds")
# The grid is 10 cold compiles, a minute on 2 cores: cross_of_grid marks it slow but for every cell under the first
# option set and CoupledLSTM under the second (its W_hh from L2 in both kernels, float64, lengths).
@pytest.mark.parametrize("cell, hidden, dtype, steps",
                         cross_of_grid(EQUATION_CELLS, COMPILE_SETS, every_cell_under="H32-mask-restart-own-recmask",
                                       every_set_on="CoupledLSTM", cell_id=lambda cell: type(cell).__name__))
def test_persistent_kernels_compile_for_sm90(cell, hidden, dtype, steps):
    opts = ScanOptions(cell)
    two_states = len(cell.states) == 2
    flags = dict(lengths=steps.lengths, step_mask=steps.step_mask, restart=steps.restart, rec_mask=steps.rec_mask,
                 zoneout=(steps.rec_mask, steps.rec_mask and two_states))
    branches = 1 if steps.lengths or steps.step_mask else 0  # a step no row of a block takes is skipped
    constexprs, warps = persistent.forward_constexprs(opts, hidden, dtype, bias=True, save=True, **flags)
    compiled = compile_sm90(kernels().fwd, constexprs, warps, dtype)
    assert compiled.asm["cubin"] and compiled.asm["ttir"].count("scf.if") == branches
    constexprs, warps = persistent.backward_constexprs(opts, hidden, dtype, own_resets=steps.own_resets, dh=True,
                                                       dc=two_states, **flags)
    compiled = compile_sm90(kernels().bwd, constexprs, warps, dtype)
    assert compiled.asm["cubin"] and compiled.asm["ttir"].count("scf.if") == branches


@pytest.mark.skipif(GPUTarget is None, reason="this triton has no GPUTarget for ahead-of-time builds")
# Slow: a cold compile of four kernels per cell, 20 s on 2 cores; by default EveryOp's, whose generated code has
# every op of the others (the built-in cells' step kernels compile by default in test_triton_compile.py).
@pytest.mark.parametrize("cell", [pytest.param(cell, id=type(cell).__name__,
                                               marks=() if cell is EVERY_OP else pytest.mark.slow)
                                  for cell in EQUATION_CELLS])
def test_step_kernels_compile_for_sm90(cell):
    """The alternating loop's kernels (H = 650, lengths, a step mask, restarts, recurrent dropout, zoneout): the
    forward, and the backward's first, middle and last launches."""
    opts = ScanOptions(cell)
    two_states = len(cell.states) == 2
    flags = dict(lengths=True, step_mask=True, restart=True, zoneout=(True, two_states))
    constexprs, warps = alternating.forward_constexprs(opts, 20, 650, torch.float32, bias=True, save=True, **flags)
    assert compile_sm90(step_kernels().fwd, constexprs, warps, torch.float32).asm["cubin"]
    for finish, step in [(False, True), (True, True), (True, False)]:
        constexprs, warps = alternating.backward_constexprs(opts, 20, 650, torch.float32, rec_mask=True, dh=True,
                                                            dc=two_states, finish=finish, step=step, **flags)
        assert compile_sm90(step_kernels().bwd, constexprs, warps, torch.float32).asm["cubin"]
