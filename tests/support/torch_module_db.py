"""Writes PyTorch's own test inputs for its recurrent modules to a file:
``python tests/support/torch_module_db.py OUT``.

The samples and error inputs of the ModuleInfo entries for nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell,
nn.GRUCell and nn.LSTMCell in ``torch.testing._internal.common_modules`` (shipped in the torch
wheel). That module is imported in a process of its own because importing it changes global state
(``torch.backends.disable_global_flags()``, TorchScript call hooks) that the rest of a test session
must not see. It also imports ``expecttest``, a dependency of PyTorch's own test suite only for its
TestCase base class; where that is not installed a stand-in provides the base class, since the
inputs read here use nothing from it.

OUT holds a list of dicts: ``module`` (the torch.nn class name), ``dtype``, ``constructor`` and
``forward`` (``(args, kwargs)``), and for error inputs ``error_on`` ("construction" or "forward"),
``error_type`` (the exception class name) and ``error_regex``.
"""

import importlib.util
import sys
import types
import unittest

import torch

NAMES = ("RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell")
DTYPES = (torch.float64, torch.float32)


def _import_common_modules():
    if importlib.util.find_spec("expecttest") is None:
        sys.modules["expecttest"] = types.SimpleNamespace(TestCase=unittest.TestCase)
    from torch.testing._internal import common_modules

    return common_modules


def collect() -> list[dict]:
    common_modules = _import_common_modules()
    infos = [info for info in common_modules.module_db if info.module_cls.__name__ in NAMES
             and info.module_cls.__module__.startswith("torch.nn")]
    assert sorted(info.module_cls.__name__ for info in infos) == sorted(NAMES), "ModuleInfo entries moved"
    records = []
    for info in infos:
        name = info.module_cls.__name__
        for dtype in DTYPES:
            torch.manual_seed(0)
            options = dict(device="cpu", dtype=dtype, requires_grad=True, training=True)
            samples = list(info.module_inputs_func(info, **options))
            if name in ("RNN", "GRU"):  # their PackedSequence samples are behind a flag
                samples += [s for s in info.module_inputs_func(info, **options, with_packed_sequence=True)
                            if isinstance(s.forward_input.args[0], torch.nn.utils.rnn.PackedSequence)]
            for sample in samples:
                records.append(dict(module=name, dtype=dtype, kind="sample", **_io(sample)))
            for error in info.module_error_inputs_func(info, **options):
                records.append(dict(module=name, dtype=dtype, kind="error", **_io(error.module_error_input),
                                    error_on=error.error_on.name.split("_")[0].lower(),
                                    error_type=error.error_type.__name__, error_regex=error.error_regex))
    return records


def _io(module_input) -> dict:
    constructor, forward = module_input.constructor_input, module_input.forward_input
    return dict(constructor=(tuple(constructor.args), dict(constructor.kwargs)),
                forward=None if forward is None else (tuple(forward.args), dict(forward.kwargs)))


if __name__ == "__main__":
    torch.save(collect(), sys.argv[1])
