"""The Triton kernels with masks with holes and resets, for every cell with a ``triton.py``, against the reference
(the cells written as equations: on their pages, tests/cells/, with the registry's generic checks).

Each cell runs on the persistent kernels and, where it takes the cell, on the alternating loop (the persistent
kernels' limit lowered to 0), with NaN-poisoned buffers (an element a kernel forgot to write fails). The cases:

* a (T, B) mask with holes: left padding, holes inside, a row masked to its end, a row never masked, and a step
  that no row of the first block of 16 rows takes (the persistent kernels skip it whole: no product, zeroed
  saved and gradient rows, the state and its gradient passed through), in a batch of two blocks;
* resets: from reset states of the scan's own (whose gradients are compared too) and from the initial states,
  at a row's first step, at a masked step and at the step no row takes;
* with the recurrent-dropout mask, zoneout on every state, ``lengths`` combined with the mask, reverse;
* float64 against the reference in float64, and float32 against the float64 reference.

Compared: the output, the final states and the gradient of gx, of every initial and reset state and of every
weight, under random upstream gradients for the output and every final state.
"""

import pytest
import torch

pytest.importorskip("triton")

from conftest import assert_close  # noqa: E402
from seqtorch.ops import dispatch  # noqa: E402
from seqtorch.ops.contract import ScanInputs, ScanOptions  # noqa: E402
from seqtorch.ops.reference import scan_reference  # noqa: E402
from seqtorch.ops.triton import alternating, common, persistent  # noqa: E402
from seqtorch.recurrent_cells import Acts, get_cell  # noqa: E402
from support.dispatching import built_in_triton_cells  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
T, H = 6, 3


@pytest.fixture(autouse=True)
def _triton(monkeypatch):
    """Triton's CPU interpreter when there is no GPU, and NaN in every buffer the launchers allocate."""
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(common, "POISON_NEW_BUFFERS", True)


def step_flags(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (T, B) mask with holes and (T, B) resets, as the module docstring lists them."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(T, batch, generator=g) > 0.25
    mask[:, :4] = True
    mask[:2, 0] = False               # left padding
    mask[1, 1] = mask[3, 1] = False   # holes
    mask[4:, 2] = False               # right padding; row 3 is never masked
    mask[2, :16] = False              # no row of the first block takes step 2
    mask[2, 16:] = True               # the second block (if any) takes it
    restart = torch.rand(T, batch, generator=g) > 0.8
    restart[:, :4] = False
    restart[0, 0] = True              # at the first step, a masked one
    restart[3, 1] = True              # at a hole
    restart[2, 2] = True              # at the step no row of the block takes
    restart[4, 3] = True
    return mask.to(DEVICE), restart.to(DEVICE)


def make_case(cell: str, batch: int, *, own_resets: bool, lengths: bool, zoneout: bool, seed: int):
    """Options and float64 leaves of one scan: gx, the states, the reset states (if own), the weights."""
    spec = get_cell(cell)
    P = H - 1 if spec.projected else H
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(DEVICE)

    widths = spec.state_sizes(H, P)
    leaves = dict(gx=rand(T, batch, spec.gates * H), states=tuple(rand(batch, w, scale=0.5) for w in widths),
                  resets=tuple(rand(batch, w, scale=0.5) for w in widths) if own_resets else (),
                  weights=tuple(rand(*shape, scale=0.5) for shape in spec.weight_shapes(H, P)))
    mask, restart = step_flags(batch, seed)
    steps = dict(mask=mask, restart=restart,
                 rec_mask=(torch.bernoulli(torch.full((batch, P), 0.7, dtype=torch.float64), generator=g) / 0.7)
                 .to(DEVICE))
    if lengths:
        steps["lengths"] = torch.tensor(([T, 1, 4, T] * batch)[:batch], device=DEVICE)
    if zoneout:
        steps["keep"] = tuple(torch.bernoulli(torch.full((T, batch, w), 0.3, dtype=torch.float64), generator=g)
                                 .to(DEVICE) for w in widths)
    return leaves, steps


def outputs_and_grads(run, leaves: dict):
    """The output, the final states and the gradients of sum(result * random) w.r.t. every leaf."""
    out, finals = run(leaves)
    g = torch.Generator().manual_seed(99)
    loss = sum((r * torch.randn(r.shape, generator=g, dtype=torch.float64).to(r)).sum() for r in (out, *finals))
    flat = [leaves["gx"], *leaves["states"], *leaves["resets"], *leaves["weights"]]
    return [out, *finals, *torch.autograd.grad(loss, flat)]


def with_grad(leaves: dict, dtype: torch.dtype) -> dict:
    """Fresh leaves in ``dtype`` that require a gradient."""
    fresh = lambda x: x.detach().to(dtype).requires_grad_()  # noqa: E731
    return {k: fresh(v) if isinstance(v, torch.Tensor) else tuple(fresh(x) for x in v) for k, v in leaves.items()}


def triton_scan(opts: ScanOptions, steps: dict, dtype: torch.dtype, implementation: str):
    def run(leaves):
        cast = {k: (v.to(dtype) if v.is_floating_point() else v) if isinstance(v, torch.Tensor)
                else tuple(x.to(dtype) for x in v) for k, v in steps.items()}
        inputs = ScanInputs(leaves["gx"], leaves["states"], leaves["weights"], reset_states=leaves["resets"], **cast)
        assert dispatch.choose("triton", opts, inputs).name == implementation
        return dispatch.scan(opts, inputs, backend="triton")
    return run


def reference_scan(opts: ScanOptions, steps: dict):
    def run(leaves):
        return scan_reference(opts.cell, leaves["gx"], leaves["states"], leaves["weights"], reverse=opts.reverse,
                              acts=opts.acts, cell_args=opts.cell_args, reset_states=leaves["resets"], **steps)
    return run


def loops():
    """(cell, implementation) for every Triton cell: the persistent kernels, and the alternating loop if it
    takes the cell."""
    cases = []
    for cell in built_in_triton_cells():
        cases.append(pytest.param(cell, "triton persistent", id=f"{cell}-persistent"))
        if alternating.supports_cell(get_cell(cell)) is None:
            cases.append(pytest.param(cell, "triton alternating", id=f"{cell}-alternating"))
    return cases


CASES = [  # (id, batch, options of make_case, reverse, recurrent_activation, kernels' dtype)
    pytest.param(17, dict(own_resets=True, lengths=False, zoneout=False), False, "sigmoid", torch.float64,
                 id="two-blocks-own-resets"),
    pytest.param(4, dict(own_resets=False, lengths=True, zoneout=True), True, "hard_sigmoid_keras2", torch.float64,
                 id="reverse-lengths-zoneout-initial-resets"),
    pytest.param(4, dict(own_resets=True, lengths=False, zoneout=True), False, "hardsigmoid", torch.float32,
                 id="float32-own-resets-zoneout"),
]


@pytest.mark.parametrize("batch, options, reverse, recurrent_activation, dtype", CASES)
@pytest.mark.parametrize("cell, implementation", loops())
def test_masks_and_resets_match_the_reference(cell, implementation, batch, options, reverse, recurrent_activation,
                                              dtype, monkeypatch):
    if implementation == "triton alternating":
        monkeypatch.setattr(persistent, "MAX_HIDDEN", 0)
    spec = get_cell(cell)
    opts = ScanOptions(spec, "tanh", recurrent_activation, reverse, (1e-5,) * len(spec.cell_args))
    leaves, steps = make_case(cell, batch, seed=0, **options)
    got = outputs_and_grads(triton_scan(opts, steps, dtype, implementation), with_grad(leaves, dtype))
    want = outputs_and_grads(reference_scan(opts, steps), with_grad(leaves, torch.float64))
    assert len(got) == len(want) == 1 + len(leaves["states"]) * (3 if options["own_resets"] else 2) + 1 + \
        len(leaves["weights"])
    for a, b in zip(got, want):
        assert a.dtype == dtype and torch.isfinite(a).all()
        assert_close(a, b.to(dtype))

