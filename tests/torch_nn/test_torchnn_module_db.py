"""PyTorch's own test inputs for nn.RNN/GRU/LSTM/RNNCell/GRUCell/LSTMCell, run on seqtorch's classes.

The ModuleInfo samples and error inputs of ``torch.testing._internal.common_modules`` (read by
``tests/support/torch_module_db.py`` in a process of its own). Samples: seqtorch's class of the same
torch.nn name, with the torch.nn module's weights, gives the same outputs and gradients (input, hx, every
parameter) on every CPU backend. Error inputs: torch.nn raises the declared type (with its regex), and seqtorch
raises that type too. The LSTM samples with ``proj_size > 0`` (half of them) are compared like the rest.
"""

import subprocess
import sys
from collections import Counter

import pytest
import torch

import seqtorch
from conftest import cpu_backends
from support import torch_module_db
from support.torchnn_parity import assert_same_run, fresh_inputs

NAMES = ("RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell")
LAYERS = ("RNN", "GRU", "LSTM")
# Samples per (module, dtype) in torch 2.13's common_modules: a smaller count means inputs went missing.
MIN_SAMPLES = {"RNN": 64, "GRU": 32, "LSTM": 32, "RNNCell": 3, "GRUCell": 2, "LSTMCell": 2}
MIN_ERRORS = {"RNN": 14, "GRU": 14, "LSTM": 14, "RNNCell": 6, "GRUCell": 6, "LSTMCell": 4}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("module_db") / "inputs.pt"
    # Run as a script, not called: the module it reads changes global state (see torch_module_db).
    subprocess.run([sys.executable, torch_module_db.__file__, str(out)], check=True, timeout=600)
    # Written just now by the script above (PackedSequences and exception names: not weights_only data).
    return torch.load(out, weights_only=False)


def _select(records, name, dtype, kind):
    return [r for r in records if r["module"] == name and r["dtype"] == dtype and r["kind"] == kind]


def _build(name, constructor, dtype, backend):
    args, kwargs = constructor
    torch.manual_seed(0)  # the same weights whatever ran before in the session
    extra = {"backend": backend} if name in LAYERS else {}
    theirs = getattr(torch.nn, name)(*args, **kwargs).to(dtype)
    ours = getattr(seqtorch, name)(*args, **kwargs, **extra).to(dtype)
    return ours, theirs


# Layers on every CPU backend; cells have no backend.
MODULES = [(name, backend) for name in LAYERS for backend in cpu_backends()] + \
    [(name, None) for name in NAMES if name not in LAYERS]


# float64 only: torch's samples are drawn from [-9, 9] (make_tensor), so gradients reach ~60 and float32
# rounding alone exceeds the table's absolute float32 bound (1e-5; float32 parity at unit scale is
# test_layers_parity's grid).
@pytest.mark.parametrize("dtype", [torch.float64], ids=["f64"])
@pytest.mark.parametrize("name,backend", MODULES)
def test_module_db_samples_match_torch_nn(records, name, dtype, backend):
    samples = _select(records, name, dtype, "sample")
    assert len(samples) >= MIN_SAMPLES[name]
    outcome = Counter()
    for i, sample in enumerate(samples):
        args, kwargs = sample["constructor"]
        outcome["projected"] += kwargs.get("proj_size", 0) > 0
        ours, theirs = _build(name, sample["constructor"], dtype, backend)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        f_args, f_kwargs = sample["forward"]
        assert not f_kwargs
        assert_same_run(ours, theirs, list(f_args), msg=f"{name} sample {i}: {args} {kwargs}")
        outcome["compared"] += 1
    assert outcome["compared"] > 0
    if name == "LSTM":
        assert outcome["projected"] == 16  # proj_size=2 in half of torch's LSTM samples


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,backend", MODULES)
def test_module_db_error_inputs_raise_torch_nn_types(records, name, dtype, backend):
    errors = _select(records, name, dtype, "error")
    assert len(errors) >= MIN_ERRORS[name]
    for error in errors:
        expected = {"ValueError": ValueError, "RuntimeError": RuntimeError, "TypeError": TypeError}[
            error["error_type"]]
        where = f"{name} {error['constructor']} {error['error_on']}"
        if error["error_on"] == "construction":
            with pytest.raises(expected, match=error["error_regex"]):
                _build_torch_only(name, error["constructor"])
            with pytest.raises(expected):
                _build(name, error["constructor"], dtype, backend)
            continue
        assert error["error_on"] == "forward", where
        ours, theirs = _build(name, error["constructor"], dtype, backend)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        f_args, _ = error["forward"]
        with pytest.raises(expected, match=error["error_regex"]):
            theirs(*fresh_inputs(f_args))
        try:
            ours(*fresh_inputs(f_args))
        except expected:
            pass
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{where}: torch.nn raises {expected.__name__}, seqtorch raised {err!r}")
        else:
            pytest.fail(f"{where}: torch.nn raises {expected.__name__}, seqtorch did not")


def _build_torch_only(name, constructor):
    args, kwargs = constructor
    return getattr(torch.nn, name)(*args, **kwargs)
