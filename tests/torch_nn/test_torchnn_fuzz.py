"""Differential test against torch.nn over random constructor arguments and inputs, valid and invalid.

Each case builds a torch.nn module and its seqtorch twin from the same arguments (a few of them odd:
ints for bools, strings, numpy scalars, sizes of 0 or below) and runs both on the same input (a few of
them wrong: rank, feature size, dtype, hx shape, rank, dtype or structure, numpy arrays, T=0, B=0).
Where torch.nn raises, seqtorch must raise an exception of the same type; where torch.nn succeeds,
seqtorch must succeed with the same repr (``extra_repr``), the same dropout warning, and, on every CPU
backend, the same outputs and gradients of the input, hx and every parameter (float64, weights
loaded from the torch.nn module, random upstream gradients on every output).

Hypothesis runs derandomized (the same cases on every run) with a fixed budget of examples. Its
``--hypothesis-show-statistics`` lists how the cases fell (events below).

Inputs not drawn, because torch.nn's behaviour there is an accident seqtorch does not reproduce:
* nn.LSTM given a PackedSequence skips its Python checks, so a wrong input or hx fails inside ATen
  with varying types (a dtype mismatch is a RuntimeError there, a ValueError on every other path; a
  rank-2 hx an IndexError; a wrong batch with an unsorted pack is accepted; a rank-4 hx crashes
  the process). seqtorch checks a packed LSTM input as torch checks packed RNN and GRU input.
* an LSTM or LSTMCell hx with three states and unbatched input: torch.nn uses the first two and
  ignores the third (with batched input it raises RuntimeError, as seqtorch does always); with one
  state and unbatched input the LSTMCell raises IndexError.
* with an unsorted PackedSequence, an hx of the wrong rank or with too large a batch: torch.nn
  reorders hx with ``index_select`` along dim 1 before any of its checks, which fails with
  index_select's own error for a wrong rank and drops the extra rows of too large a batch.
* a cell hx of rank 1 with batched input of batch size B == hidden_size (torch: IndexError from
  ATen; any other B: RuntimeError, as seqtorch always), and an LSTMCell hx that is one rank-1 Tensor.
* sizes that are bools: nn.RNN(3, True) fails in torch.empty while nn.LSTM(3, True) builds.
"""

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqtorch
from conftest import cpu_backends
from support.torchnn_parity import assert_same_run, fresh_inputs

DTYPE = torch.float64
BACKENDS = cpu_backends()
TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TORCH_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
# Through torch.nn's names, as a ported program reaches them.
OURS = {"rnn": seqtorch.RNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}
OURS_CELLS = {"rnn": seqtorch.RNNCell, "lstm": seqtorch.LSTMCell, "gru": seqtorch.GRUCell}



def _fuzz(examples):
    """Derandomized (the same cases on every run, no example database), no per-example deadline."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _pick(draw, valid, odd=(), percent_odd=3):
    """One of ``valid``, or (``percent_odd`` times in 100) one of ``odd``."""
    if odd and draw(st.integers(0, 99)) < percent_odd:
        return draw(st.sampled_from(list(odd)))
    return draw(st.sampled_from(list(valid)))


def _build(cls, args, kwargs):
    """(module, None, dropout-warned) or (None, exception, False)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = cls(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the type is what is compared
            return None, err, False
    return module, None, any("dropout" in str(w.message) for w in caught)


def _call(module, inputs):
    try:
        return module(*inputs), None
    except Exception as err:  # noqa: BLE001 - the type is what is compared
        return None, err


def _same_error(ours, theirs, where, stage):
    assert ours is not None, f"{where}: torch.nn raised {type(theirs).__name__}: {theirs}; seqtorch did not"
    assert isinstance(ours, type(theirs)), (f"{where}: torch.nn raised {type(theirs).__name__}: {theirs}\n"
                                            f"seqtorch raised {type(ours).__name__}: {ours}")
    event(f"{stage}: both raise {type(theirs).__name__}")


def _twins(theirs_cls, ours_cls, args, kwargs, where):
    """(ours, theirs) built from the same arguments, with theirs' weights, or None where torch.nn refuses
    the arguments (after checking that seqtorch refuses them with the same type)."""
    theirs, t_err, t_warned = _build(theirs_cls, args, kwargs)
    ours, o_err, o_warned = _build(ours_cls, args, kwargs)
    if t_err is not None:
        _same_error(o_err, t_err, f"constructor {where}", "constructor")
        return None
    assert o_err is None, f"constructor {where}: torch.nn builds it, seqtorch raised {o_err!r}"
    assert o_warned == t_warned, f"constructor {where}: dropout warning differs"
    assert ours.extra_repr() == theirs.extra_repr(), where
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def _forward_alike(ours, theirs, inputs, where, backends):
    """The same exception type as torch.nn, or the same outputs and gradients, on each backend."""
    _, t_err = _call(theirs, fresh_inputs(inputs))
    for backend in backends:
        label = f"forward {where}"
        if backend is not None:
            ours.backend, label = backend, f"{label} [{backend}]"
        if t_err is not None:
            _same_error(_call(ours, fresh_inputs(inputs))[1], t_err, label, "forward")
        else:
            assert_same_run(ours, theirs, inputs, msg=label)
    if t_err is None:
        event("forward: both succeed and agree")


# --- layers --------------------------------------------------------------------------------------

@st.composite
def layer_cases(draw):
    mode = draw(st.sampled_from(list(TORCH)))
    input_size = _pick(draw, [1, 2, 3], [0, -1, 2.0, "3", np.int64(2), None])
    hidden_size = _pick(draw, [1, 2, 3, 5], [0, -2, 3.0, np.int64(3)])
    kwargs = dict(
        num_layers=_pick(draw, [1, 2, 3], [0, -1, 2.0, "2", np.int64(2), True]),
        bias=_pick(draw, [True, False], [0, 1, None, "no", np.bool_(True)]),
        batch_first=_pick(draw, [False, True], [1, 0, "False", None]),
        dropout=_pick(draw, [0.0], [0.25, np.float32(0.25), Fraction(1, 4), 1.0, 1.5, -0.1, True, "0.1", "x",
                                    None, 1j], percent_odd=8),
        bidirectional=_pick(draw, [False, True], [1, 0, None, "no"]),
        dtype=DTYPE,
    )
    if mode == "rnn":
        kwargs["nonlinearity"] = _pick(draw, ["tanh", "relu"], ["sigmoid", None])
    proj = _pick(draw, [None], [0, -1, 5, 2.0, 1] if mode == "lstm" else [0, 1])
    if proj is not None:
        kwargs["proj_size"] = proj
    return mode, (input_size, hidden_size), kwargs


@st.composite
def layer_inputs(draw, theirs, mode):
    """(inputs, description) for a layer built as ``theirs``; at most one input and one hx fault."""
    I, H = theirs.input_size, theirs.hidden_size
    D = 2 if theirs.bidirectional else 1
    LD = theirs.num_layers * D
    form = draw(st.sampled_from(["batched", "batched", "unbatched", "packed"]))
    T = _pick(draw, [1, 2, 3, 4], [0] if form != "packed" else [])
    B = _pick(draw, [1, 2, 3], [0] if form != "packed" else [])
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    faults = ["none"] * 12 + ["features", "dtype", "int"] + ([] if form == "packed" else ["rank", "numpy"])
    if form == "packed" and mode == "lstm":
        faults = ["none"]  # torch.nn.LSTM's unchecked packed path (module docstring)
    x_fault = draw(st.sampled_from(faults))
    feat = I + 1 if x_fault == "features" else I
    if form == "unbatched":
        shape = (T, feat)
    else:
        shape = (B, T, feat) if theirs.batch_first and form == "batched" else (T, B, feat)
    x = torch.randn(shape, dtype=DTYPE, generator=gen)
    if x_fault == "rank":  # 1-D or 4-D: neither a batched nor an unbatched input
        x = x.reshape(-1) if draw(st.booleans()) else x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))
    elif x_fault == "dtype":
        x = x.float()
    elif x_fault == "int":
        x = x.long()
    packed_sorted = None
    if form == "packed":
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[draw(st.integers(0, B - 1))] = T
        packed_sorted = draw(st.booleans())
        if packed_sorted:
            lengths = lengths.sort(descending=True).values
        x = pack_padded_sequence(x, lengths, enforce_sorted=packed_sorted)
    elif x_fault == "numpy":
        x = x.numpy()

    hx_faults = ["none"] * 8 + ["shape", "rank", "dtype", "numpy", "structure"]
    hx_faults += ["c_shape"] if mode == "lstm" else []
    if mode == "lstm" and form == "packed":
        hx_faults = ["none"]
    elif form == "packed" and not packed_sorted:
        hx_faults.remove("rank")  # torch.nn reorders hx before its checks (module docstring)
    hx_fault = draw(st.sampled_from(hx_faults)) if draw(st.booleans()) else None
    if hx_fault is None:
        return [x], f"{form} T={T} B={B} x:{x_fault} no hx"
    state_shape = (LD, B, H) if form != "unbatched" else (LD, H)
    P = getattr(theirs, "proj_size", 0) or H  # an LSTM's h has proj_size units when it projects
    h = torch.randn(state_shape[:-1] + (P,), dtype=DTYPE, generator=gen)
    c = torch.randn(state_shape, dtype=DTYPE, generator=gen)
    if hx_fault == "shape":
        # An unsorted pack: torch.nn reorders hx along the batch before checking it (module docstring).
        axes = [0, 2] if form == "packed" and not packed_sorted else list(range(h.dim()))
        axis = draw(st.sampled_from(axes))
        bad = list(state_shape[:-1] + (P,))
        bad[axis] += 1
        h = torch.randn(bad, dtype=DTYPE, generator=gen)
    elif hx_fault == "c_shape":
        c = torch.randn(state_shape[:-1] + (H + 1,), dtype=DTYPE, generator=gen)
    elif hx_fault == "rank":
        h = h[None] if draw(st.booleans()) or form == "packed" else h[0]
    elif hx_fault == "dtype":
        h = h.float()
    elif hx_fault == "numpy":
        h = h.numpy()
    if mode == "lstm":
        hx = (h, c)
        if hx_fault == "structure":
            choices = ["tensor", "one"] + (["three"] if form != "unbatched" else [])
            hx = {"tensor": h, "one": (h,), "three": (h, c, c)}[draw(st.sampled_from(choices))]
    else:
        hx = (h, h) if hx_fault == "structure" else h
    return [x, hx], f"{form} T={T} B={B} x:{x_fault} hx:{hx_fault}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@_fuzz(600)
@given(case=layer_cases(), data=st.data())
def test_layers_behave_as_torch_nn(case, data):
    mode, args, kwargs = case
    where = f"{mode} {args} {kwargs}"
    twins = _twins(TORCH[mode], OURS[mode], args, kwargs, where)
    if twins is None:
        return
    ours, theirs = twins
    if theirs.dropout:  # dropout masks are random: compare the deterministic eval mode
        theirs.eval(), ours.eval()
    inputs, described = data.draw(layer_inputs(theirs, mode))
    _forward_alike(ours, theirs, inputs, f"{where} | {described}", BACKENDS)


# --- cells ---------------------------------------------------------------------------------------

@st.composite
def cell_cases(draw):
    mode = draw(st.sampled_from(list(TORCH_CELLS)))
    args = (_pick(draw, [0, 1, 2, 3], [-1, 2.0, "3", np.int64(2)]),
            _pick(draw, [0, 1, 2, 3], [-1, 2.5, np.int64(2)]))
    kwargs = dict(bias=_pick(draw, [True, False], [0, 1, None, "no"]), dtype=DTYPE)
    if mode == "rnn":
        kwargs["nonlinearity"] = _pick(draw, ["tanh", "relu"], ["sigmoid"])
    return mode, args, kwargs


@st.composite
def cell_inputs(draw, theirs, mode):
    I, H = theirs.input_size, theirs.hidden_size
    batched = draw(st.booleans())
    B = _pick(draw, [1, 2, 3], [0])
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    x_fault = draw(st.sampled_from(["none"] * 10 + ["rank", "features", "dtype", "numpy"]))
    shape = (B, I + (x_fault == "features")) if batched else (I + (x_fault == "features"),)
    x = torch.randn(shape, dtype=DTYPE, generator=gen)
    if x_fault == "rank":  # 3-D or 4-D: neither a batched nor an unbatched input
        x = x[None, None]
    elif x_fault == "dtype":
        x = x.float()
    elif x_fault == "numpy":
        x = x.numpy()
    hx_fault = draw(st.sampled_from(["none"] * 8 + ["shape", "rank", "other_rank", "dtype", "numpy", "structure"]))
    if not draw(st.booleans()):
        return [x], f"{'batched' if batched else 'unbatched'} B={B} x:{x_fault} no hx"
    state_shape = (B, H) if batched else (H,)
    if hx_fault == "shape":
        state_shape = tuple(s + (i == len(state_shape) - 1) for i, s in enumerate(state_shape))
    elif hx_fault == "other_rank":  # a batched state with unbatched input, or the reverse
        if batched and B == H:
            hx_fault, state_shape = "none", (B, H)  # torch: IndexError (module docstring)
        else:
            state_shape = (H,) if batched else (1, H)
    h = torch.randn(state_shape, dtype=DTYPE, generator=gen)
    c = torch.randn(state_shape, dtype=DTYPE, generator=gen)
    if hx_fault == "rank":
        h = h[None, None]
    elif hx_fault == "dtype":
        h = h.float()
    elif hx_fault == "numpy":
        h = h.numpy()
    if mode == "lstm":
        hx = (h, c)
        if hx_fault == "structure":
            choices = (["tensor", "one", "three"] if batched else []) + ["none"]
            hx = {"tensor": h, "one": (h,), "three": (h, c, c), "none": (h, None)}[draw(st.sampled_from(choices))]
    else:
        hx = (h, h) if hx_fault == "structure" else h
    return [x, hx], f"{'batched' if batched else 'unbatched'} B={B} x:{x_fault} hx:{hx_fault}"


@_fuzz(400)
@given(case=cell_cases(), data=st.data())
def test_cells_behave_as_torch_nn(case, data):
    mode, args, kwargs = case
    where = f"{mode} cell {args} {kwargs}"
    twins = _twins(TORCH_CELLS[mode], OURS_CELLS[mode], args, kwargs, where)
    if twins is None:
        return
    ours, theirs = twins
    inputs, described = data.draw(cell_inputs(theirs, mode))
    _forward_alike(ours, theirs, inputs, f"{where} | {described}", [None])  # cells have no backend
