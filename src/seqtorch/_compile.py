"""torch.compile and seqtorch's layers: one graph, though they are instances of torch.nn.RNN/LSTM/GRU.

Dynamo graph-breaks on every instance of ``torch.nn.RNN``, ``GRU`` and ``LSTM`` while
``torch._dynamo.config.allow_rnn`` is off (the default): their forward calls ATen's fused RNN ops, which
it does not trace. seqtorch's layers are such instances, so that ``isinstance`` answers as for torch.nn's
(programs initialize and dispatch by it), but their forward is seqtorch's own, which Dynamo traces into one
graph (the scan is one op). So for seqtorch's layers only, and for nothing else, Dynamo wraps the module
with that check lifted: its module wrapper runs under ``allow_rnn=True`` when the module is one of ours,
unchanged for every other module, torch.nn's included. (The option has no other use in Dynamo.)

Dynamo is imported by ``torch.compile`` on first use, not by seqtorch (it takes seconds), so the wrapper
is installed when Dynamo's module builder is imported (:mod:`._import_hooks`). If a future torch moves the
wrapper, nothing is patched and seqtorch's layers graph-break as torch.nn's do (the tests check one graph).
"""

from __future__ import annotations

import sys

from ._import_hooks import after_import

_BUILDER = "torch._dynamo.variables.builder"
_OURS: list[type] = []


def trace_layers_as_one_graph(base: type) -> None:
    """Let Dynamo trace instances of ``base`` (seqtorch's layer base) like any other Module."""
    _OURS.append(base)
    after_import((_BUILDER,), _patch)


def _patch() -> None:
    builder = sys.modules.get(_BUILDER)
    cls = getattr(builder, "VariableBuilder", None)
    wrap = getattr(cls, "wrap_module", None)
    if wrap is None or getattr(wrap, "_seqtorch", False):
        return
    from torch._dynamo import config

    def wrap_module(self, value):
        if isinstance(value, tuple(_OURS)):
            with config.patch(allow_rnn=True):
                return wrap(self, value)
        return wrap(self, value)

    wrap_module._seqtorch = True
    cls.wrap_module = wrap_module
