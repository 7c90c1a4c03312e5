"""The Triton cell interface by name: a cell's ``triton.py`` reads its tuples at the slots its spec names.

Each cell asks :func:`~seqtorch.recurrent_cells.triton_math.slots` for the places of its saved buffers, its
gradient buffers, its extra weights and its numeric options, by the names its spec declares; the launchers
hand those over in the same order (:func:`seqtorch.ops.triton.common.cell_weights` by name, the buffers in
the op contract's order). A name the spec lacks must fail where it is written, not as a kernel reading
another buffer; more buffers than the kernels have slots for must fail at the launch, not silently.
"""

import importlib

import pytest
import torch

triton = pytest.importorskip("triton")

from seqtorch.ops.triton import common  # noqa: E402
from seqtorch.recurrent_cells import get_cell  # noqa: E402
from seqtorch.recurrent_cells.triton_math import extra_weights, slots  # noqa: E402
from support.dispatching import built_in_triton_cells  # noqa: E402


def test_slots_are_constexpr_places_in_the_spec_order():
    A, PRE, TC = slots(get_cell("lstm").saved_names(), "A", "PRE", "TC")
    assert all(isinstance(slot, triton.language.constexpr) for slot in (A, PRE, TC))
    assert (A.value, TC.value, PRE.value) == (0, 1, 2)
    (DLC,) = slots(get_cell("layernorm_lstm").grad_buffer_names(), "DLC")
    assert DLC.value == 1


def test_a_name_the_spec_lacks_raises():
    with pytest.raises(ValueError, match=r"no slot named 'PER'; the spec names \['A', 'TC', 'PRE'\]"):
        slots(get_cell("lstm").saved_names(), "A", "PER")


def test_extra_weights_reach_the_slots_their_names_say():
    """layernorm_lstm reads g_hh, g_c, b_c from ``extra`` by name: the launcher puts each weight there."""
    spec = get_cell("layernorm_lstm")
    assert extra_weights(spec) == ("ln_hh_weight", "ln_cell_weight", "ln_cell_bias")
    weights = [torch.full((1,), float(k)) for k in range(len(spec.weights))]
    extra, cargs = common.cell_weights(spec, weights, [1e-5])
    G_HH, G_C, B_C = slots(extra_weights(spec), "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")
    for slot, name in zip((G_HH, G_C, B_C), extra_weights(spec)):
        assert extra[slot.value].item() == spec.weights.index(name)
    assert cargs.tolist() == [pytest.approx(1e-5)]
    # a cell with fewer extra weights: the unused slots are None
    extra, _ = common.cell_weights(get_cell("lstm_proj"), [torch.zeros(1)] * 3, [])
    assert extra[1:] == [None, None] and len(extra) == common.MAX_EXTRA_WEIGHTS


def test_more_buffers_than_slots_raise():
    with pytest.raises(ValueError, match="7 per-step buffers, the Triton kernels have 6 slots"):
        common.slot_widths([torch.zeros(1, 1, 2)] * 7, common.MAX_SAVED)


@pytest.mark.parametrize("cell", built_in_triton_cells())
def test_every_triton_cell_resolves_its_names(cell):
    """Importing a cell's ``triton.py`` looks its slot names up in its spec (a typo raises there); the
    projected LSTM also checks that it saves what the LSTM's step it reuses reads."""
    module = common.cell_module(get_cell(cell))
    assert module is importlib.import_module(f"seqtorch.recurrent_cells.{cell}.triton")
    assert callable(module.forward) and callable(module.backward)
