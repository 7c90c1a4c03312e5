"""Measure how far each backend is from torch.nn over the parity grid of tests/torch_nn/test_layers_parity.py.

The tests assert the bounds of tests/conftest.py; this prints the largest errors actually seen
(outputs, and gradients of input, hx and every parameter), per backend and dtype:

    python benchmarks/parity_errors.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "torch_nn")]  # the import roots of conftest/support and of the grid
import test_layers_parity as grid  # noqa: E402  (the grid and input builders the tests use)
from support.torchnn_parity import run_with_grads, twin_modules  # noqa: E402


def main() -> None:
    worst: dict[tuple[str, str], list[float]] = {}
    count = 0
    for backend in grid.BACKENDS:
        for dtype in (torch.float64, torch.float32):
            for sizes in grid.SIZES.values():
                for mode, layers, bidir, batch_first, bias, with_hx, batched in itertools.product(
                        grid.MODES, [1, 2, 3], [False, True], [False, True], [True, False], [False, True],
                        [True, False]):
                    ours, theirs = twin_modules(mode, sizes[2], sizes[3], layers, bias=bias, batch_first=batch_first,
                                                bidirectional=bidir, dtype=dtype, backend=backend)
                    gen = torch.Generator().manual_seed(1)
                    x, hx = grid._inputs(mode, layers, bidir, batch_first, with_hx, batched, sizes, dtype, gen)
                    inputs = (x,) if hx is None else (x, hx)
                    with torch.no_grad():
                        result = theirs(*inputs)
                        upstream = grid._upstream([result[0]] + list(grid._flat_states(result[1])), gen)
                    out_t, grads_t = run_with_grads(theirs, inputs, upstream)
                    out_o, grads_o = run_with_grads(ours, inputs, upstream)
                    entry = worst.setdefault((backend, str(dtype).replace("torch.", "")), [0.0, 0.0])
                    entry[0] = max(entry[0], *((a - b).abs().max().item() for a, b in zip(out_o, out_t)))
                    entry[1] = max(entry[1], *((a - b).abs().max().item() for a, b in zip(grads_o, grads_t)))
                    count += 1
    print(f"{count} configurations (the parity grid)")
    print("| backend | dtype | max abs error, outputs | max abs error, gradients |")
    print("|---|---|---|---|")
    for (backend, dtype), (out, grad) in worst.items():
        print(f"| {backend} | {dtype} | {out:.2e} | {grad:.2e} |")


if __name__ == "__main__":
    main()
