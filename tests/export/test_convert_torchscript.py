"""TorchScript (seqtorch.torchscript): torch.jit.script and torch.jit.trace refuse the layers with an error
naming the supported routes; the torch.nn conversion scripts; the cells trace."""

import io
import warnings

import pytest
import torch
from torch import nn

import seqtorch
from seqtorch.torchscript import TorchScriptError
from conftest import assert_close

I, H = 4, 5
# torch 2.13's notes that TorchScript is deprecated, and the tracer's note on the cells' shape check
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")


class Model(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(H, 2)

    def forward(self, x):
        output, _ = self.rnn(x)
        return self.head(output)


LAYERS = [seqtorch.SimpleRNN, seqtorch.LSTM, seqtorch.GRU]
CELLS = [seqtorch.SimpleRNNCell, seqtorch.LSTMCell, seqtorch.GRUCell]


@pytest.mark.parametrize("cls", LAYERS + CELLS, ids=lambda c: c.__name__)
def test_script_names_the_supported_routes(cls):
    module = cls(I, H)
    for target in (module, Model(module) if cls in LAYERS else module):
        with pytest.raises(TorchScriptError) as info:
            torch.jit.script(target)
        message = str(info.value)
        for route in ("torch.export", "torch.compile", "dynamo=True", "to_torch_nn()"):
            assert route in message, message


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_trace_of_a_layer_is_refused(cls):
    model = Model(cls(I, H, bidirectional=False))
    with pytest.raises(TorchScriptError, match="torch.jit.trace") as info:
        torch.jit.trace(model, (torch.randn(6, 2, I),))
    assert "torch.export" in str(info.value)


def test_legacy_onnx_exporter_points_at_dynamo():
    model = Model(seqtorch.LSTM(I, H)).eval()
    with pytest.raises(TorchScriptError, match=r"dynamo=True"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(6, 2, I),), io.BytesIO(), dynamo=False)


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_converted_layer_scripts(cls):
    torch.manual_seed(0)
    model = Model(cls(I, H, num_layers=2)).eval()
    x = torch.randn(7, 3, I)
    want = model(x)
    model.rnn = model.rnn.to_torch_nn()
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    assert_close(torch.jit.load(buffer)(x), want)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_cells_trace_and_run_at_another_batch_size(cls):
    """A cell is one step of plain tensor ops: its trace holds no seqtorch op and no frozen loop."""
    torch.manual_seed(0)
    cell = cls(I, H)
    traced = torch.jit.trace(cell, (torch.randn(3, I),))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    assert not [n for n in loaded.graph.nodes() if n.kind().startswith("seqtorch::")]
    x = torch.randn(6, I)
    got, want = loaded(x), cell(x)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert_close(g, w)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_cells_export_with_the_legacy_onnx_exporter(cls):
    """The cells trace, so the TorchScript-based exporter serves them (dynamic batch)."""
    import onnxruntime

    torch.manual_seed(0)
    cell = cls(I, H)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(cell, (torch.randn(3, I),), buffer, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "B"}})
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(6, I)
    want = cell(x)
    for g, w in zip(session.run(None, {"x": x.numpy()}), want if isinstance(want, tuple) else (want,)):
        assert_close(torch.from_numpy(g), w.detach())
