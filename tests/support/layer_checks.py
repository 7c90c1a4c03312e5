"""The checks a layer of any cell passes as a whole Module, shared by the cell pages and the zoneout tests.

:func:`check_training_matches_reference`: every backend against ``backend="reference"`` with stacking,
directions, lengths and every dropout (and zoneout where the layer has it), values and every gradient.
:func:`check_cell_is_one_step_of_its_layer`: a cell Module given its layer's weights gives the layer's first
step, batched and unbatched. The scans under them are tested per cell by ``tests/cells/test_cell_registry.py``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from conftest import assert_close

T, B, I, H = 6, 3, 4, 5
LENGTHS = torch.tensor([6, 2, 4])


def inputs(seed=0, shape=(T, B, I)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def randomize(module, seed=1):
    """Random values for every parameter (gains away from 1), so no term can hide behind its init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def check_training_matches_reference(build: Callable[..., nn.Module], backend: str) -> None:
    """``build(**options)`` on ``backend`` against ``backend="reference"``, 2 layers, bidirectional, in training."""
    options = dict(num_layers=2, bidirectional=True, dropout=0.2, input_dropout=0.1, recurrent_dropout=0.3,
                   dtype=torch.float64)
    torch.manual_seed(0)
    fused = randomize(build(backend=backend, **options)).train()
    reference = build(backend="reference", **options).train()
    reference.load_state_dict(fused.state_dict())

    def run(layer):
        x = inputs().requires_grad_()
        torch.manual_seed(7)  # the same masks (dropouts and zoneout) for both
        out, state = layer(x, lengths=LENGTHS)
        states = state if isinstance(state, tuple) else (state,)
        loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in (out, *states))
        layer.zero_grad()
        loss.backward()
        return [out, *states, x.grad] + [p.grad for p in layer.parameters()]

    for a, b in zip(run(fused), run(reference)):
        assert torch.isfinite(a).all()
        assert_close(a, b)


def check_cell_is_one_step_of_its_layer(cell_cls: type[nn.Module], layer_cls: type[nn.Module]) -> None:
    """The cell with the layer's (random) weights gives the layer's output at t = 0, batched and unbatched."""
    layer = randomize(layer_cls(I, H, dtype=torch.float64))
    cell = cell_cls(I, H, dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = inputs()
    out, state = layer(x[:1])
    step = cell(x[0])
    step = step if isinstance(step, tuple) else (step,)
    assert_close(step[0], out[0])
    if isinstance(state, tuple):
        assert_close(step[1], state[1][0])
    unbatched = cell(x[0, 0])
    assert_close(unbatched if not isinstance(unbatched, tuple) else unbatched[0], out[0, 0])
