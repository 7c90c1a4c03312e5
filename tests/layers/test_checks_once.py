"""A layer or cell call whose signature passed the input checks skips them (``PassedChecks``): a later call
that differs in anything the checks read is checked again, and fails as a first call would.

Each case calls the Module well first (its signature is then kept), changes one thing the checks read (the
Module's dtype, an attribute, the parameters through ``torch.func.functional_call``, the argument's dtype,
structure or shape) and expects torch.nn's error for it.
"""

import pytest
import torch

import seqtorch
from seqtorch import layers
from seqtorch._validation import PassedChecks

T, B, I, H = 5, 2, 4, 6


def _call(layer, x=None, hx=None):
    return layer(torch.zeros(T, B, I) if x is None else x, hx)


def test_a_kept_signature_skips_the_checks(monkeypatch):
    # the kept signatures are the process's (any LSTM(I, H) called earlier in the session kept its own):
    # start from none
    monkeypatch.setattr(layers, "_CHECKED", PassedChecks())
    layer = seqtorch.LSTM(I, H)
    _call(layer)
    calls = []
    monkeypatch.setattr(layers, "check_layer_input", lambda *a, **k: calls.append(a))
    _call(layer)
    assert calls == []
    _call(layer, torch.zeros(T, B + 1, I))  # a new shape: checked
    assert len(calls) == 1


def test_module_cast_after_a_call_is_checked():
    layer = seqtorch.LSTM(I, H)
    _call(layer)
    layer.double()
    with pytest.raises(ValueError, match=r"input dtype \(torch.float32\) does not match .* \(torch.float64\)"):
        _call(layer)


def test_state_dtype_after_a_call_is_checked():
    layer = seqtorch.LSTM(I, H)
    h = torch.zeros(1, B, H)
    _call(layer, hx=(h, h))
    with pytest.raises(RuntimeError, match=r"hx\[1\] dtype torch.float64 does not match"):
        _call(layer, hx=(h, h.double()))


@pytest.mark.parametrize("cls, attribute, value, error, match", [
    (seqtorch.GRU, "bidirectional", 1, TypeError, "runs only with a bool bidirectional"),  # 1 == True, one hash
    (seqtorch.GRU, "bidirectional", [True], TypeError, "runs only with a bool bidirectional"),  # no hash at all
    (seqtorch.GRU, "bidirectional", "yes", TypeError, "runs only with a bool bidirectional"),
    (seqtorch.SimpleRNN, "num_layers", True, TypeError, "an int num_layers"),
    (seqtorch.LSTM, "input_size", I + 1, RuntimeError, rf"Expected {I + 1}, got {I}"),
], ids=["bidirectional-int", "bidirectional-list", "bidirectional-str", "num_layers-true", "input_size"])
def test_attribute_set_after_a_call_is_checked(cls, attribute, value, error, match):
    """The signature holds the attributes the checks read, with the types of those that must be a bool or an
    int; an attribute that cannot be hashed makes no signature."""
    layer = cls(I, H)
    _call(layer)
    setattr(layer, attribute, value)
    with pytest.raises(error, match=match):
        _call(layer)


def test_functional_call_parameters_are_checked():
    layer = seqtorch.LSTM(I, H)
    _call(layer)
    doubled = {name: p.double() for name, p in layer.named_parameters()}
    with pytest.raises(ValueError, match=r"does not match the parameters' dtype \(torch.float64\)"):
        torch.func.functional_call(layer, doubled, (torch.zeros(T, B, I),))


def test_hx_structure_after_a_call_is_checked():
    layer = seqtorch.LSTM(I, H)
    h = torch.zeros(1, B, H)
    _call(layer, hx=(h, h))
    with pytest.raises(RuntimeError, match="got 3"):
        _call(layer, hx=(h, h, h))
    with pytest.raises(RuntimeError, match="one Tensor of shape"):
        _call(layer, hx=h)


def test_cell_cast_after_a_call_is_checked():
    cell = seqtorch.LSTMCell(I, H)
    x, h = torch.zeros(B, I), torch.zeros(B, H)
    cell(x, (h, h))
    cell.double()
    with pytest.raises(RuntimeError, match="input dtype torch.float32 does not match"):
        cell(x, (h.double(), h.double()))


def test_passed_checks_keeps_hashable_signatures_up_to_its_limit():
    passed = PassedChecks(limit=2)
    passed.add(("a",))
    passed.add(([1],))  # unhashable: never kept, never an error
    assert ("a",) in passed and ([1],) not in passed and None not in passed
    passed.add(("b",))
    passed.add(("c",))  # full: cleared first
    assert ("c",) in passed and ("a",) not in passed


def test_compiled_layer_keeps_one_graph_while_eager_calls_add_signatures():
    """Under torch.compile no signature is made or looked up: a guard on the kept set would recompile the
    layer each time an eager call adds one."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: count this test's graphs only
    layer = seqtorch.LSTM(I, H)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(T, B, I)
    for extra in range(3):
        compiled(x)
        layer(torch.randn(T + extra + 1, B, I))  # eager: a new signature is kept
    want = layer(x)[0]
    torch.testing.assert_close(compiled(x)[0], want)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
