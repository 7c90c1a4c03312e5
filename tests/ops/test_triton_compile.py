"""The Triton kernels compile for a real GPU (sm_90, Hopper), though no GPU is here.

Triton's interpreter (how tests/ops/test_ops_triton.py runs the kernels on CPU) executes the kernels as Python:
it accepts code that the compiler rejects (a non-constexpr global, a construct LLVM cannot lower) and it
never runs LLVM, whose SLP vectorizer has crashed on these kernels before (see ops/triton/persistent.py). So
every cell's forward and backward kernel is compiled here ahead of time, with Triton's bundled ptxas, for the
option sets the scans launch: W_hh on chip and re-read from L2, lengths, (T, B) masks with holes, resets (from
reset states of the scan's own and from the initial states) and recurrent-dropout masks on and off, each
recurrent activation, float32 and float64. Nothing runs; the compiled binaries are only checked to exist.
The default run compiles a cross of the grid (every cell, every option set); the whole grid is marked slow.
The cells written as equations compile in ``tests/ops/test_triton_equations.py``.
"""

import pytest
import torch

triton = pytest.importorskip("triton")

from seqtorch.ops.contract import ScanOptions  # noqa: E402
from seqtorch.ops.triton import alternating, persistent  # noqa: E402
from seqtorch.ops.triton.common import cell_names  # noqa: E402
from seqtorch.ops.triton.persistent_kernels import kernels  # noqa: E402
from seqtorch.ops.triton.step_kernels import step_kernels  # noqa: E402
from seqtorch.recurrent_cells import get_cell  # noqa: E402
from support.dispatching import built_in_triton_cells  # noqa: E402
from support.triton_aot import GPUTarget, Steps, compile_sm90, cross_of_grid  # noqa: E402

pytestmark = pytest.mark.skipif(GPUTarget is None, reason="this triton has no GPUTarget for ahead-of-time builds")


OPTION_SETS = [  # (id, hidden, dtype, per-step inputs, recurrent_activation, activation)
    ("H32-lengths-recmask-keras2", 32, torch.float32, Steps(lengths=True, rec_mask=True), "hard_sigmoid_keras2",
     "tanh"),
    ("H128-L2-sigmoid-relu", 128, torch.float32, Steps(), "sigmoid", "relu"),
    ("H64-lengths-hardsigmoid", 64, torch.float32, Steps(lengths=True), "hardsigmoid", "tanh"),
    ("H16-float64-lengths-recmask", 16, torch.float64, Steps(lengths=True, rec_mask=True), "sigmoid", "tanh"),
    ("H32-mask-restart-own-recmask", 32, torch.float32,
     Steps(step_mask=True, restart=True, own_resets=True, rec_mask=True), "sigmoid", "tanh"),
    ("H128-L2-float64-lengths-mask-restart", 128, torch.float64, Steps(lengths=True, step_mask=True, restart=True),
     "hardsigmoid", "tanh"),
]


def test_the_triton_cells_are_found():
    assert {"rnn", "lstm", "gru", "gru_reset_before", "indrnn", "lstm_proj", "layernorm_lstm",
            "layernorm_gru"} <= set(cell_names())


# The grid is 48 cold compiles, 5 minutes on 2 cores: cross_of_grid marks it slow but for every cell under the
# richest option set and rnn under every option set (the W_hh-from-L2 path and float64 among them).
@pytest.mark.parametrize("cell, hidden, dtype, steps, recurrent_activation, activation",
                         cross_of_grid(built_in_triton_cells(), OPTION_SETS,
                                       every_cell_under="H32-mask-restart-own-recmask", every_set_on="rnn"))
def test_kernels_compile_for_sm90(cell, hidden, dtype, steps, recurrent_activation, activation):
    """The persistent kernels, forward and backward; with lengths or a step mask each has exactly one branch
    that is not resolved at compile time (``scf.if``: a step no row of the block takes is skipped), without
    them none (every step runs straight through)."""
    opts = ScanOptions(cell, activation, recurrent_activation, cell_args=(1e-5,) * len(get_cell(cell).cell_args))
    two_states = len(get_cell(cell).states) == 2
    zoneout = (steps.rec_mask, steps.rec_mask and two_states)  # with the rec_mask sets: zoneout on every state
    flags = dict(lengths=steps.lengths, step_mask=steps.step_mask, restart=steps.restart, rec_mask=steps.rec_mask,
                 zoneout=zoneout)
    built = kernels()
    branches = 1 if steps.lengths or steps.step_mask else 0
    constexprs, warps = persistent.forward_constexprs(opts, hidden, dtype, bias=True, save=True, **flags)
    compiled = compile_sm90(built.fwd, constexprs, warps, dtype)
    assert compiled.asm["cubin"] and compiled.asm["ttir"].count("scf.if") == branches
    constexprs, warps = persistent.backward_constexprs(opts, hidden, dtype, own_resets=steps.own_resets, dh=True,
                                                       dc=two_states, **flags)
    compiled = compile_sm90(built.bwd, constexprs, warps, dtype)
    assert compiled.asm["cubin"] and compiled.asm["ttir"].count("scf.if") == branches


ALTERNATING_SETS = [  # (id, batch, hidden, dtype, per-step inputs, recurrent_activation, activation)
    ("B20-H650-lengths-recmask-keras2", 20, 650, torch.float32, Steps(lengths=True, rec_mask=True),
     "hard_sigmoid_keras2", "tanh"),
    ("B64-H1024-sigmoid-relu", 64, 1024, torch.float32, Steps(), "sigmoid", "relu"),
    ("B3-H256-float64-lengths-hardsigmoid", 3, 256, torch.float64, Steps(lengths=True), "hardsigmoid", "tanh"),
    ("B20-H650-lengths-mask-restart-recmask", 20, 650, torch.float32,
     Steps(lengths=True, step_mask=True, restart=True, rec_mask=True), "sigmoid", "tanh"),
]

ALTERNATING_CELLS = [c for c in built_in_triton_cells() if alternating.supports_cell(get_cell(c)) is None]


# The grid is 24 cold compiles of four kernels each, 2 minutes on 2 cores: cross_of_grid marks it slow but for
# every cell under the richest option set and rnn under every option set.
@pytest.mark.parametrize("cell, batch, hidden, dtype, steps, recurrent_activation, activation",
                         cross_of_grid(ALTERNATING_CELLS, ALTERNATING_SETS,
                                       every_cell_under="B20-H650-lengths-mask-restart-recmask", every_set_on="rnn"))
def test_step_kernels_compile_for_sm90(cell, batch, hidden, dtype, steps, recurrent_activation, activation):
    """The alternating loop's per-step kernels: the forward, and the backward as its first, middle and last
    launches (step only, finish + step, finish only)."""
    opts = ScanOptions(cell, activation, recurrent_activation, cell_args=(1e-5,) * len(get_cell(cell).cell_args))
    two_states = len(get_cell(cell).states) == 2
    zoneout = (steps.rec_mask, steps.rec_mask and two_states)
    flags = dict(lengths=steps.lengths, step_mask=steps.step_mask, restart=steps.restart, zoneout=zoneout)
    built = step_kernels()
    constexprs, warps = alternating.forward_constexprs(opts, batch, hidden, dtype, bias=True, save=True, **flags)
    assert compile_sm90(built.fwd, constexprs, warps, dtype).asm["cubin"]
    for finish, step in [(False, True), (True, True), (True, False)]:
        constexprs, warps = alternating.backward_constexprs(
            opts, batch, hidden, dtype, rec_mask=steps.rec_mask, dh=True, dc=two_states, finish=finish, step=step,
            **flags)
        assert compile_sm90(built.bwd, constexprs, warps, dtype).asm["cubin"]
