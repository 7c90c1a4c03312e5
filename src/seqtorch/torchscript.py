"""TorchScript: what ``torch.jit.script`` and ``torch.jit.trace`` do with seqtorch's modules, and why.

``torch.jit.script`` refuses every seqtorch layer and cell with :class:`TorchScriptError`, naming the
routes that serve. Scripting would mean rewriting the layers in TorchScript's subset of Python (no
dataclasses, no cell registry, no backend dispatch), for a frontend that torch 2.13 deprecates; what
TorchScript was used for is served by ``torch.export`` (a graph, AOTInductor for C++),
``torch.compile`` (speed), ``torch.onnx.export(dynamo=True)`` (other runtimes) and, for an existing
TorchScript pipeline, ``to_torch_nn()`` (torch.nn's modules script).

``torch.jit.trace`` (and so the legacy exporter ``torch.onnx.export(dynamo=False)``, which traces):
the layers refuse it with the same error, because the tracer cannot record seqtorch's scan op (its
``Tensor?[]`` arguments are outside what TorchScript's tracer takes: "unsupported input list type"),
and a trace of the Python loops would freeze the traced sequence length. The cells hold no loop (one
step of plain tensor ops): they trace, and the trace runs at any batch size without seqtorch.
"""

from __future__ import annotations

ROUTES = ("torch.export.export (and AOTInductor for C++), torch.compile, "
          "torch.onnx.export(..., dynamo=True) (the default)")


class TorchScriptError(RuntimeError):
    """A seqtorch module was given to TorchScript (torch.jit.script, torch.jit.trace)."""


def refuse_script(module) -> None:
    """Called by torch.jit.script for every seqtorch module in the scripted model."""
    raise TorchScriptError(
        f"{type(module).__name__} does not support torch.jit.script (deprecated in torch 2.13). Supported "
        f"routes: {ROUTES}; for a TorchScript pipeline convert the layer with .to_torch_nn() first "
        f"(torch.nn's modules script)")


def refuse_trace(module) -> None:
    """Called when torch.jit.trace (or the legacy ONNX exporter) runs a seqtorch layer."""
    import torch

    if torch.onnx.is_in_onnx_export():
        raise TorchScriptError(
            f"{type(module).__name__} cannot be exported by the legacy TorchScript-based ONNX exporter "
            f"(torch.onnx.export(..., dynamo=False)): its tracer cannot record seqtorch's scan op. Use "
            f"torch.onnx.export(..., dynamo=True), the default, which writes ONNX's RNN/LSTM/GRU operators")
    raise TorchScriptError(
        f"{type(module).__name__} does not support torch.jit.trace: TorchScript's tracer cannot record "
        f"seqtorch's scan op. Supported routes: {ROUTES}; for a TorchScript pipeline convert the layer "
        f"with .to_torch_nn() first")
