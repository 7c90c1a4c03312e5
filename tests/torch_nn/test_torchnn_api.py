"""torch.nn's behaviour at the public API, case by case: the constructor arguments torch.nn takes or
refuses (and its exception types), errors in forward, empty sequences and batches, hidden_size=0
cells, non-Tensor states, repr, and torch.nn's class names. Each case runs torch.nn too, so the
table states what torch.nn does and checks seqtorch against it."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqtorch
from conftest import cpu_backends
from support.torchnn_parity import assert_same_run

TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU,
         "rnn_cell": nn.RNNCell, "lstm_cell": nn.LSTMCell, "gru_cell": nn.GRUCell}
OURS = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU,
        "rnn_cell": seqtorch.SimpleRNNCell, "lstm_cell": seqtorch.LSTMCell, "gru_cell": seqtorch.GRUCell}
LAYERS = ("rnn", "lstm", "gru")
CELLS = ("rnn_cell", "lstm_cell", "gru_cell")


def _outcome(fn):
    """What ``fn()`` did: ("ok", result) or ("raised", exception)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", fn()
        except Exception as err:  # noqa: BLE001 - the type is what is compared
            return "raised", err


def _assert_same_outcome(ours, theirs, expected, where):
    """torch.nn did ``expected`` (an exception type, or None for success) and seqtorch did the same."""
    t_kind, t_value = theirs
    o_kind, o_value = ours
    if expected is None:
        assert t_kind == "ok", f"{where}: this table says torch.nn accepts it, but it raised {t_value!r}"
        assert o_kind == "ok", f"{where}: torch.nn accepts it, seqtorch raised {o_value!r}"
    else:
        assert t_kind == "raised" and type(t_value) is expected, f"{where}: torch.nn gave {t_value!r}"
        assert o_kind == "raised", f"{where}: torch.nn raises {expected.__name__}, seqtorch accepted it"
        assert isinstance(o_value, expected), f"{where}: torch.nn raises {t_value!r}, seqtorch {o_value!r}"


# --- constructor arguments (issue 9) -------------------------------------------------------------
CONSTRUCTOR_CASES = [
    # bias and batch_first must be bools in torch.nn's layers
    *[(m, (3, 5), dict(bias=v), TypeError) for m in LAYERS for v in (0, 1, None, "no", np.bool_(True))],
    *[(m, (3, 5), dict(batch_first=v), TypeError) for m in LAYERS for v in (1, 0, "False", None)],
    # dropout: any real number in [0, 1]
    *[(m, (3, 5, 2), dict(dropout=v), None) for m in LAYERS for v in (np.float32(0.25), Fraction(1, 4), 1, 1.0)],
    *[(m, (3, 5, 2), dict(dropout=v), ValueError) for m in LAYERS for v in (True, "0.1", -0.1, 1.5, "x")],
    *[(m, (3, 5, 2), dict(dropout=v), TypeError) for m in LAYERS for v in (None, 1j)],
    # sizes: Python ints > 0 for layers
    *[(m, args, {}, TypeError) for m in LAYERS for args in ((3.0, 5), ("10", 5), (3, 5.0), (np.int64(3), 5))],
    *[(m, args, {}, ValueError) for m in LAYERS for args in ((0, 5), (-1, 5), (3, 0), (3, 5, 0), (3, 5, -1))],
    *[(m, (3, 5), dict(num_layers=v), TypeError) for m in LAYERS for v in (2.0, "2")],
    *[(m, (3, 5), dict(num_layers=np.int64(2)), None) for m in LAYERS],
    # torch.nn's order: dropout, bias, batch_first, input_size, hidden_size, num_layers
    *[(m, (0, 0), dict(bias=0, dropout=2), ValueError) for m in LAYERS],
    *[(m, (0, 0), dict(bias=0), TypeError) for m in LAYERS],
    *[(m, ("a", 0), dict(batch_first=1), TypeError) for m in LAYERS],
    ("rnn", (3, 5), dict(nonlinearity="sigmoid"), ValueError),
    ("rnn", (3, 5, 1, "relu"), {}, None),
    ("rnn", (3, 5), dict(nonlinearity="relu", proj_size=0), ValueError),
    ("gru", (3, 5), dict(proj_size=0), ValueError),
    ("lstm", (3, 5), dict(proj_size=0), None),
    ("lstm", (3, 5), dict(proj_size=-1), ValueError),
    ("lstm", (3, 5), dict(proj_size=5), ValueError),
    ("lstm", (3, 5), dict(proj_size=2.0), TypeError),
    # bidirectional is not checked when built (forward raises TypeError: test_forward_errors...)
    *[(m, (3, 5), dict(bidirectional=v), None) for m in LAYERS for v in (1, 0, None, "no")],
    # cells: torch.empty's rules (ints, numpy ints too; 0 is fine; negative RuntimeError)
    *[(m, args, {}, None) for m in CELLS for args in ((3, 0), (0, 3), (0, 0), (np.int64(3), 2))],
    *[(m, args, {}, RuntimeError) for m in CELLS for args in ((3, -1), (-1, 3))],
    *[(m, args, {}, TypeError) for m in CELLS for args in ((3, 2.5), (3.0, 2), ("3", 2))],
    *[(m, (3, 4), dict(bias=v), None) for m in CELLS for v in (0, 1, None, "no")],
    ("rnn_cell", (3, 4), dict(nonlinearity="sigmoid"), None),
]


@pytest.mark.parametrize("kind,args,kwargs,expected", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}-{case[2]}") for case in CONSTRUCTOR_CASES])
def test_constructor_arguments_as_torch_nn(kind, args, kwargs, expected):
    theirs = _outcome(lambda: TORCH[kind](*args, **kwargs, dtype=torch.float64))
    ours = _outcome(lambda: OURS[kind](*args, **kwargs, dtype=torch.float64))
    _assert_same_outcome(ours, theirs, expected, f"{kind}{args}{kwargs}")
    if expected is None:
        ours, theirs = ours[1], theirs[1]
        assert ours.extra_repr() == theirs.extra_repr()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        if kind in LAYERS:
            assert ours.dropout == theirs.dropout and ours.num_layers == theirs.num_layers


def test_dropout_accepts_numpy_and_fraction_and_runs_like_torch_nn():
    for value in (np.float32(0.25), Fraction(1, 4)):
        torch.manual_seed(0)
        theirs = nn.GRU(3, 4, 2, dropout=value, dtype=torch.float64).eval()
        ours = seqtorch.GRU(3, 4, 2, dropout=value, dtype=torch.float64).eval()
        ours.load_state_dict(theirs.state_dict())
        assert isinstance(ours.dropout, float) and ours.dropout == 0.25
        assert_same_run(ours, theirs, [torch.randn(5, 2, 3, dtype=torch.float64)], msg=str(value))


# --- forward errors (issue 8) ---------------------------------------------------------------------
def _layer_inputs(mode):
    """name -> (constructor kwargs, input builder) for the error cases torch.nn defines for layers."""
    z = torch.zeros
    pair = (lambda *s, **k: (z(*s, **k), z(*s, **k))) if mode == "lstm" else (lambda *s, **k: z(*s, **k))
    return {
        "input 1D": ({}, lambda: (z(3),)),
        "input 4D": ({}, lambda: (z(1, 5, 2, 3),)),
        "input 4D and float64": ({}, lambda: (z(1, 5, 2, 3, dtype=torch.float64),)),
        "input float64": ({}, lambda: (z(5, 2, 3, dtype=torch.float64),)),
        "input int64": ({}, lambda: (z(5, 2, 3, dtype=torch.int64),)),
        "input float64, hx rank 2": ({}, lambda: (z(5, 2, 3, dtype=torch.float64), pair(2, 4))),
        "input float64, features 7": ({}, lambda: (z(5, 2, 7, dtype=torch.float64),)),
        "features 7": ({}, lambda: (z(5, 2, 7),)),
        "features 7, hx shape": ({}, lambda: (z(5, 2, 7), pair(1, 2, 4))),
        "hx shape": ({}, lambda: (z(5, 2, 3), pair(1, 2, 4))),
        "hx rank 2, batched": ({}, lambda: (z(5, 2, 3), pair(2, 4))),
        "hx rank 3, unbatched": ({}, lambda: (z(5, 3), pair(2, 1, 4))),
        "hx float64": ({}, lambda: (z(5, 2, 3), pair(2, 2, 4, dtype=torch.float64))),
        "hx on meta": ({}, lambda: (z(5, 2, 3), pair(2, 2, 4, device="meta"))),
        "input on meta": ({}, lambda: (z(5, 2, 3, device="meta"),)),
        "T=0": ({}, lambda: (z(0, 2, 3),)),
        "T=0 batch_first": ({"batch_first": True}, lambda: (z(2, 0, 3),)),
        "T=0 unbatched": ({}, lambda: (z(0, 3),)),
        "T=0 B=0": ({}, lambda: (z(0, 0, 3),)),
        "T=0 and float64": ({}, lambda: (z(0, 2, 3, dtype=torch.float64),)),
        "input numpy": ({}, lambda: (np.zeros((5, 2, 3)),)),
        "input list": ({}, lambda: ([[[0.0] * 3] * 2] * 5,)),
        "hx numpy, batched": ({}, lambda: (z(5, 2, 3), _numpy_states(mode, (2, 2, 4)))),
        "hx numpy, unbatched": ({}, lambda: (z(5, 3), _numpy_states(mode, (2, 4)))),
        "packed, float64": ({}, lambda: (pack_padded_sequence(z(5, 2, 3, dtype=torch.float64), [5, 3]),)),
        "packed, features 7": ({}, lambda: (pack_padded_sequence(z(5, 2, 7), [5, 3]),)),
        "bidirectional=1": ({"bidirectional": 1}, lambda: (z(5, 2, 3),)),
        "bidirectional='no'": ({"bidirectional": "no"}, lambda: (z(5, 2, 3),)),
        "bidirectional=1, hx shape": ({"bidirectional": 1}, lambda: (z(5, 2, 3), pair(2, 3, 4))),
        "num_layers=True": ({"num_layers": True}, lambda: (z(5, 2, 3),)),
    }


def _numpy_states(mode, shape):
    return (np.zeros(shape),) * 2 if mode == "lstm" else np.zeros(shape)


LAYER_FORWARD_CASES = [(mode, name) for mode in LAYERS for name in _layer_inputs(mode)
                       if not (mode == "lstm" and name.startswith("packed"))]  # torch: test_torchnn_fuzz.py
LAYER_FORWARD_CASES += [
    ("lstm", "hx one Tensor"), ("lstm", "hx one state"), ("lstm", "hx three states"), ("lstm", "hx (h, None)"),
    ("rnn", "hx a tuple"), ("gru", "hx a tuple"), ("gru", "hx a list"),
]


def _state_structure_case(name):
    z = torch.zeros
    return {"hx one Tensor": z(2, 2, 4), "hx one state": (z(2, 2, 4),), "hx three states": (z(2, 2, 4),) * 3,
            "hx (h, None)": (z(2, 2, 4), None), "hx a tuple": (z(2, 2, 4), z(2, 2, 4)),
            "hx a list": [z(2, 2, 4)]}[name]


@pytest.mark.parametrize("backend", seqtorch.available_backends())
@pytest.mark.parametrize("mode,case", LAYER_FORWARD_CASES)
def test_layer_forward_errors_have_torch_nn_types(mode, case, backend):
    if case in _layer_inputs(mode):
        kwargs, inputs = _layer_inputs(mode)[case]
    else:
        kwargs, inputs = {}, lambda: (torch.zeros(5, 2, 3), _state_structure_case(case))
    kwargs = {"num_layers": 2, **kwargs}
    theirs = TORCH[mode](3, 4, **kwargs)
    ours = OURS[mode](3, 4, **kwargs, backend=backend)
    t_kind, t_err = _outcome(lambda: theirs(*inputs()))
    assert t_kind == "raised", f"torch.nn accepts {case}"
    o_kind, o_err = _outcome(lambda: ours(*inputs()))
    assert o_kind == "raised", f"{case}: torch.nn raises {t_err!r}, seqtorch did not"
    assert isinstance(o_err, type(t_err)), f"{case}: torch.nn raises {t_err!r}, seqtorch {o_err!r}"


def _cell_inputs(kind):
    z = torch.zeros
    pair = (lambda *s, **k: (z(*s, **k), z(*s, **k))) if kind == "lstm_cell" else (lambda *s, **k: z(*s, **k))
    return {
        "input 3D": lambda: (z(1, 2, 3),),
        "input 0D": lambda: (z(()),),
        "features 7": lambda: (z(2, 7),),
        "features 7 unbatched": lambda: (z(7),),
        "hx hidden size": lambda: (z(2, 3), pair(2, 5)),
        "hx batch": lambda: (z(2, 3), pair(3, 4)),
        "hx 3D": lambda: (z(2, 3), pair(1, 2, 4)),
        "hx 0D": lambda: (z(2, 3), pair(())),
        "unbatched input, hx 2D": lambda: (z(3), pair(1, 4)),
        "batched input, hx 1D": lambda: (z(2, 3), pair(4)),
        "input float64": lambda: (z(2, 3, dtype=torch.float64),),
        "hx float64": lambda: (z(2, 3), pair(2, 4, dtype=torch.float64)),
        "input int64": lambda: (z(2, 3, dtype=torch.int64),),
        "input on meta": lambda: (z(2, 3, device="meta"),),
        "hx on meta": lambda: (z(2, 3), pair(2, 4, device="meta")),
        "input numpy": lambda: (np.zeros((2, 3), dtype=np.float32),),
        "hx numpy": lambda: (z(2, 3), _numpy_states("lstm" if kind == "lstm_cell" else kind, (2, 4))),
        "hx numpy, unbatched": lambda: (z(3), _numpy_states("lstm" if kind == "lstm_cell" else kind, (4,))),
        "hx structure": lambda: (z(2, 3), z(2, 4) if kind == "lstm_cell" else (z(2, 4), z(2, 4))),
    }


@pytest.mark.parametrize("kind,case", [(k, c) for k in CELLS for c in _cell_inputs(k)]
                         + [("lstm_cell", "hx one state"), ("lstm_cell", "hx three states")])
def test_cell_forward_errors_have_torch_nn_types(kind, case):
    z = torch.zeros
    inputs = _cell_inputs(kind).get(case) or (
        lambda: (z(2, 3), (z(2, 4),) if case == "hx one state" else (z(2, 4),) * 3))
    theirs, ours = TORCH[kind](3, 4), OURS[kind](3, 4)
    t_kind, t_err = _outcome(lambda: theirs(*inputs()))
    assert t_kind == "raised", f"torch.nn accepts {case}"
    o_kind, o_err = _outcome(lambda: ours(*inputs()))
    assert o_kind == "raised", f"{case}: torch.nn raises {t_err!r}, seqtorch did not"
    assert isinstance(o_err, type(t_err)), f"{case}: torch.nn raises {t_err!r}, seqtorch {o_err!r}"


def test_rnn_cell_nonlinearity_is_checked_in_forward_as_torch_nn_does():
    cell = seqtorch.SimpleRNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(RuntimeError, match="Unknown nonlinearity 'sigmoid'"):
        cell(torch.zeros(2, 3))
    with pytest.raises(RuntimeError):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")(torch.zeros(2, 3))


@pytest.mark.parametrize("mode", LAYERS + CELLS)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_numpy_hx_is_refused_like_torch_nn(mode, batched):
    """torch.nn fails with AttributeError (it calls ``.dim()``); seqtorch's error is that type too, and
    a TypeError, and names the argument."""
    cell = mode in CELLS
    base = "lstm" if mode in ("lstm", "lstm_cell") else mode
    shape = ((2, 4) if batched else (4,)) if cell else ((1, 2, 4) if batched else (1, 4))
    x = torch.zeros(((2, 3) if batched else (3,)) if cell else ((5, 2, 3) if batched else (5, 3)))
    hx = _numpy_states(base, shape)
    with pytest.raises(AttributeError):
        TORCH[mode](3, 4)(x, hx)
    with pytest.raises(seqtorch.NotATensorError, match=r"expected hx(\[0\])? to be a Tensor, got ndarray") as info:
        OURS[mode](3, 4)(x, hx)
    assert isinstance(info.value, AttributeError) and isinstance(info.value, TypeError)


# --- empty sequences and batches (issue 10) --------------------------------------------------------
@pytest.mark.parametrize("backend", seqtorch.available_backends())
@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_empty_sequence_raises_runtime_error_on_every_backend(mode, layout, backend):
    """T=0 raises RuntimeError in torch.nn; seqtorch raises it at the Module, before any backend runs."""
    shape = {"time_major": (0, 2, 3), "batch_first": (2, 0, 3), "unbatched": (0, 3)}[layout]
    kwargs = dict(batch_first=layout == "batch_first", num_layers=2, bidirectional=True)
    with pytest.raises(RuntimeError):
        TORCH[mode](3, 4, **kwargs)(torch.zeros(shape))
    layer = OURS[mode](3, 4, **kwargs, backend=backend)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        layer(torch.zeros(shape))
    if layout != "unbatched":
        with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
            layer(torch.zeros(shape), lengths=[1, 1])


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("lengths", [None, "list", "tensor"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
def test_empty_batch_works_like_torch_nn(mode, lengths, with_hx, backend):
    """B=0: outputs of batch 0 and zero gradients, as torch.nn (which has no lengths=: the same call
    without them)."""
    torch.manual_seed(0)
    theirs = TORCH[mode](3, 4, 2, bidirectional=True, batch_first=True, dtype=torch.float64)
    ours = OURS[mode](3, 4, 2, bidirectional=True, batch_first=True, dtype=torch.float64, backend=backend)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(0, 5, 3, dtype=torch.float64)
    inputs = [x]
    if with_hx:
        h = torch.randn(4, 0, 4, dtype=torch.float64)
        inputs.append((h, h.clone()) if mode == "lstm" else h)
    assert_same_run(ours, theirs, inputs, msg="B=0")
    if lengths is not None:
        given = [] if lengths == "list" else torch.zeros(0, dtype=torch.int64)
        output, _ = ours(*inputs, lengths=given)
        assert output.shape == (0, 5, 8)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("sizes", [(3, 0), (0, 3), (0, 0)], ids=["H0", "I0", "I0-H0"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_zero_size_cells_work_like_torch_nn(kind, sizes, batched):
    torch.manual_seed(0)
    theirs = TORCH[kind](*sizes, dtype=torch.float64)
    ours = OURS[kind](*sizes, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn((2, sizes[0]) if batched else (sizes[0],), dtype=torch.float64)
    assert_same_run(ours, theirs, [x], msg=f"{kind}{sizes}")
    h = torch.randn((2, sizes[1]) if batched else (sizes[1],), dtype=torch.float64)
    assert_same_run(ours, theirs, [x, (h, h.clone()) if kind == "lstm_cell" else h], msg=f"{kind}{sizes} hx")


# --- repr (issue 11) --------------------------------------------------------------------------------
REPR_CASES = [
    ("rnn", (3, 4), {}), ("rnn", (3, 4), dict(nonlinearity="relu")), ("rnn", (3, 4, 2, "relu"), {}),
    ("rnn", (3, 4), dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)),
    ("lstm", (3, 4), dict(num_layers=np.int64(3), dropout=Fraction(1, 4))),
    ("lstm", (3, 4), dict(proj_size=0, bidirectional=1)),
    ("gru", (3, 4), dict(bidirectional="no")),
    ("rnn_cell", (3, 4), {}), ("rnn_cell", (3, 4), dict(nonlinearity="relu")),
    ("rnn_cell", (3, 4, False, "relu"), {}), ("rnn_cell", (3, 4), dict(bias=0)),
    ("lstm_cell", (3, 4), dict(bias=False)), ("gru_cell", (3, 0), dict(bias="no")),
]


@pytest.mark.parametrize("kind,args,kwargs", REPR_CASES, ids=[f"{k}-{a}-{kw}" for k, a, kw in REPR_CASES])
def test_repr_matches_torch_nn_for_torch_nn_options(kind, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, ours = TORCH[kind](*args, **kwargs), OURS[kind](*args, **kwargs)
    assert ours.extra_repr() == theirs.extra_repr()
    assert repr(ours) == repr(theirs).replace(type(theirs).__name__, type(ours).__name__, 1)


def test_repr_shows_seqtorch_options_when_not_default():
    assert repr(seqtorch.GRU(3, 4, reset_after=False, recurrent_dropout=0.25)) == \
        "GRU(3, 4, reset_after=False, recurrent_dropout=0.25)"
    assert repr(seqtorch.SimpleRNN(3, 4, 2, "relu", init="keras", backend="reference")) == \
        "SimpleRNN(3, 4, num_layers=2, init='keras', backend='reference')"
    assert repr(seqtorch.LSTMCell(3, 4, activation="relu", recurrent_activation="hard_sigmoid")) == \
        "LSTMCell(3, 4, activation='relu', recurrent_activation='hard_sigmoid')"
    assert repr(seqtorch.SimpleRNNCell(3, 4, nonlinearity="relu", single_bias=True)) == \
        "SimpleRNNCell(3, 4, nonlinearity=relu, single_bias=True)"


# --- torch.nn's class names (issue 15) --------------------------------------------------------------
TORCH_NN_RECURRENT_NAMES = sorted(name for name in dir(nn) if isinstance(getattr(nn, name), type)
                                  and issubclass(getattr(nn, name), (nn.RNNBase, nn.RNNCellBase)))


def test_every_torch_nn_recurrent_class_name_exists():
    assert TORCH_NN_RECURRENT_NAMES == ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell",
                                        "RNNCellBase"]
    assert seqtorch.RNN is seqtorch.SimpleRNN and seqtorch.RNNCell is seqtorch.SimpleRNNCell
    for name in TORCH_NN_RECURRENT_NAMES:
        ours = getattr(seqtorch, name)
        assert isinstance(ours, type) and issubclass(ours, nn.Module), name
        assert name in seqtorch.__all__
    for name in ("RNN", "LSTM", "GRU"):
        assert issubclass(getattr(seqtorch, name), seqtorch.RNNBase)
    for name in ("RNNCell", "LSTMCell", "GRUCell"):
        assert issubclass(getattr(seqtorch, name), seqtorch.RNNCellBase)


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_class_picked_by_torch_nn_name_as_a_ported_program_does(rnn_type):
    """pytorch/examples' word_language_model picks its layer by torch.nn name; with seqtorch in place
    of torch.nn the same code builds the twin layer, which loads torch.nn's weights."""
    def build(namespace):
        torch.manual_seed(0)
        if rnn_type in ("LSTM", "GRU"):
            return getattr(namespace, rnn_type)(5, 6, 2, dropout=0.5, dtype=torch.float64)
        nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
        return namespace.RNN(5, 6, 2, nonlinearity=nonlinearity, dropout=0.5, dtype=torch.float64)

    theirs, ours = build(nn).eval(), build(seqtorch).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_run(ours, theirs, [torch.randn(7, 3, 5, dtype=torch.float64)], msg=rnn_type)
