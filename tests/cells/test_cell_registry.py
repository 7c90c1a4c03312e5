"""Every built-in cell of the registry, on every backend that has it, against its own reference step (float64).

This runs whatever folder cell is in ``seqtorch.recurrent_cells.CELLS``, from the shapes its spec declares: a
new cell is tested here as soon as it has its registry line. Random upstream gradients for every output and
final state, NaN-poisoned buffers, lengths of 1 and of T in one batch, the recurrent-dropout mask, reverse;
in float64 and, against the float64 reference, in float32. The C++ case runs only for a cell with a
``cpu.h`` and checks that the C++ loop (not the Python one) served it. The checks are those of
``tests/support/cell_checks.py``, which the cells written as equations (registered when made) run on their
own pages under ``tests/cells/``.
"""

import pytest
import torch

from seqtorch.ops import native
from seqtorch.recurrent_cells import CELLS, Cell, PointwiseCell, get_cell
from support.cell_checks import (H, backends_for, check_float32, check_matches_reference, check_row_chunks_float32,
                                 check_row_chunks_reference, check_zoneout, poison)  # noqa: F401 (poison: autouse)

BUILT_IN = [name for name, cell in CELLS.items() if not isinstance(cell, PointwiseCell)]
CASES = [pytest.param(cell, backend, loop, id=f"{cell}-{backend}-{loop}")
         for cell in BUILT_IN for backend, loop in backends_for(cell)]


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


VARIANTS = {"plain": (False, False, False, True), "rev-len-mask": (True, True, True, True),
            "len-nobias": (False, True, False, False)}  # id: reverse, lengths, mask, bias
ACTIVATIONS = ["sigmoid", "hard_sigmoid_keras2", "hardsigmoid"]


# Slow: on the Triton kernels (in the interpreter, 0.3 to 1 s a case), the other activations with the other variants;
# by default each activation runs there plain, and each variant with the sigmoid (every case on the other backends).
@pytest.mark.parametrize("cell, backend, loop, recurrent_activation, reverse, lengths, mask, bias", [
    pytest.param(*case.values, activation, *options, id=f"{case.id}-{activation}-{variant}",
                 marks=pytest.mark.slow if case.values[1] == "triton" and activation != "sigmoid" and variant != "plain"
                 else ())
    for case in CASES for activation in ACTIVATIONS for variant, options in VARIANTS.items()])
def test_cell_matches_its_reference(cell, backend, loop, recurrent_activation, reverse, lengths, mask, bias,
                                    monkeypatch):
    check_matches_reference(cell, backend, loop, monkeypatch, recurrent_activation=recurrent_activation,
                            reverse=reverse, lengths=lengths, mask=mask, bias=bias)


@pytest.mark.parametrize("cell", BUILT_IN)
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
    check_zoneout(cell, backend, loop, kind, monkeypatch)


@pytest.mark.parametrize("recurrent_activation, reverse, bias", [("sigmoid", True, True), ("hardsigmoid", False, False)],
                         ids=["sigmoid-rev", "hardsigmoid-nobias"])
@pytest.mark.parametrize("cell, backend, loop", CASES)
def test_cell_in_float32_matches_the_float64_reference(cell, backend, loop, recurrent_activation, reverse, bias,
                                                       monkeypatch):
    """float32 kernels against the float64 reference on the same values: lengths, the recurrent-dropout mask,
    zoneout masks on every state, random upstream gradients for every output."""
    check_float32(cell, backend, loop, monkeypatch, recurrent_activation=recurrent_activation, reverse=reverse,
                  bias=bias)


@pytest.mark.parametrize("cell", sorted(native.cell_headers()))
def test_cpp_loop_in_row_chunks_matches_its_reference(cell, monkeypatch):
    """With two threads and small products the C++ loop splits the batch into row chunks, each running the
    whole time loop on its own thread (scan.cpp's row_chunks); float64 against the reference."""
    check_row_chunks_reference(cell, monkeypatch)


def test_row_chunks_rule():
    """scan.cpp's row_chunks on two threads: chunks of 8 rows or more; large products keep their rows whole
    (split by columns) unless their weights fit a core's cache (768 KB), in the backward up to 3 MiB."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chunks = native.load().scan_row_chunks
        for backward in (False, True):
            assert chunks(20, 1e5, 1e9, backward) == 2  # small products: a chunk per thread whatever the weights
            assert chunks(15, 1e5, 1e3, backward) == 1  # too few rows for two chunks of 8
            assert chunks(20, 6.4e6, 640 * 1024, backward) == 2  # the small language model's W_hh (640 KB)
            assert chunks(20, 1.35e8, 6.8e6, backward) == 1  # the medium one's (6.8 MB): split by columns
        assert chunks(16, 8.4e6, 1024 * 1024) == 1  # the small batch's (1 MB): forward split by columns,
        assert chunks(16, 8.4e6, 1024 * 1024, True) == 2  # backward in chunks
        assert chunks(16, 8.4e6, 3 * 1024 * 1024 + 1, True) == 1
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("cell", sorted(native.cell_headers()))
def test_cpp_loop_in_row_chunks_float32_matches_one_thread(cell, monkeypatch):
    """float32 in two row chunks against the same scan on one thread (whole rows)."""
    check_row_chunks_float32(cell, monkeypatch)
