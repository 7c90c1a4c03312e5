"""ONNX export (seqtorch.onnx): every cell with its options exports as ONNX's RNN/LSTM/GRU operators and
onnxruntime reproduces PyTorch at other batch sizes and sequence lengths than the example's."""

import os
import subprocess
import sys
import warnings

import onnxruntime as ort  # the dev extra installs onnx, onnxscript and onnxruntime
import pytest
import torch
from torch import nn

import seqtorch
import seqtorch.onnx as sonnx
from seqtorch.ops import dispatch, native
from conftest import assert_close

ONNX_OPS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
EXAMPLE = dict(T=7, B=3)
RUNS = [dict(T=11, B=5), dict(T=1, B=2)]   # other than the example's, and the awkward T=1
I, H = 4, 5


class Model(nn.Module):
    """A recurrent layer inside a model, called with the given extras (lengths=, initial states)."""

    def __init__(self, layer: nn.Module, use_lengths: bool, use_hx: bool) -> None:
        super().__init__()
        self.rnn, self.use_lengths, self.use_hx = layer, use_lengths, use_hx

    def forward(self, x, *extra):
        extra = list(extra)
        lengths = extra.pop(0) if self.use_lengths else None
        hx = None
        if self.use_hx:
            hx = tuple(extra) if self.rnn.cell.family == "lstm" else extra[0]
        output, state = self.rnn(x, hx, lengths=lengths)
        return (output, *state) if isinstance(state, tuple) else (output, state)


def make_inputs(layer, T: int, B: int, use_lengths: bool, use_hx: bool, gen) -> tuple:
    x = torch.randn((B, T, I) if layer.batch_first else (T, B, I), generator=gen)
    inputs = [x]
    if use_lengths:
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = T          # lengths of 1 and of T in the same batch
        lengths[-1] = 1
        inputs.append(lengths)
    if use_hx:
        shape = (layer.num_layers * layer.num_directions, B, H)
        inputs += [torch.randn(shape, generator=gen) for _ in range(2 if layer.cell.family == "lstm" else 1)]
    return tuple(inputs)


def dynamic_shapes(layer, inputs) -> tuple:
    x_dims = {0: "B", 1: "T"} if layer.batch_first else {0: "T", 1: "B"}
    extras = tuple({0: "B"} if extra.dim() == 1 else {1: "B"} for extra in inputs[1:])
    return (x_dims, extras) if extras else (x_dims,)  # forward(x, *extra): the extras are one argument


def export_and_compare(layer, *, use_lengths=False, use_hx=False, grad=True):
    """Export, check the graph, run onnxruntime at RUNS; return the ONNX program and the max errors."""
    gen = torch.Generator().manual_seed(1)
    model = Model(layer.eval(), use_lengths, use_hx)
    example = make_inputs(layer, **EXAMPLE, use_lengths=use_lengths, use_hx=use_hx, gen=gen)
    model(*example)  # loads the C++ library before tracing
    with warnings.catch_warnings(), torch.set_grad_enabled(grad):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, dynamo=True, dynamic_shapes=dynamic_shapes(layer, example),
                                    verbose=False)
    ops = [node.op_type for node in program.model.graph]
    expected_op = ONNX_OPS[layer.cell.family]
    assert ops.count(expected_op) == layer.num_layers * layer.num_directions, ops
    assert not {"Loop", "Scan", "If"} & set(ops), ops   # no unrolled or looped fallback
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    errors = []
    for run in RUNS:
        inputs = make_inputs(layer, **run, use_lengths=use_lengths, use_hx=use_hx, gen=gen)
        feeds = {arg.name: value.numpy() for arg, value in zip(session.get_inputs(), inputs)}
        got = session.run(None, feeds)
        with torch.no_grad():
            want = model(*inputs)
        assert len(got) == len(want)
        for name, g, w in zip(("output", "h_n", "c_n"), got, want):
            g = torch.from_numpy(g)
            assert g.shape == w.shape, (name, run)
            assert_close(g, w, msg=f"{name} at {run}")
            errors.append((g - w).abs().max().item())
    return program, max(errors)


CASES = {
    "rnn_tanh": (seqtorch.SimpleRNN, dict(), {}),
    "rnn_relu": (seqtorch.SimpleRNN, dict(nonlinearity="relu"), {}),
    "rnn_relu_bi_stacked_lengths": (seqtorch.SimpleRNN, dict(nonlinearity="relu", num_layers=2,
                                                            bidirectional=True), dict(use_lengths=True)),
    "rnn_single_bias_batch_first": (seqtorch.SimpleRNN, dict(single_bias=True, batch_first=True), {}),
    "lstm": (seqtorch.LSTM, dict(), {}),
    "lstm_bi_stacked_batch_first": (seqtorch.LSTM, dict(num_layers=2, bidirectional=True, batch_first=True), {}),
    "lstm_bi_lengths": (seqtorch.LSTM, dict(bidirectional=True), dict(use_lengths=True)),
    "lstm_hard_sigmoid_keras2": (seqtorch.LSTM, dict(recurrent_activation="hard_sigmoid"), {}),
    "lstm_hardsigmoid_torch_bi": (seqtorch.LSTM, dict(recurrent_activation="hardsigmoid", bidirectional=True), {}),
    "lstm_relu": (seqtorch.LSTM, dict(activation="relu"), {}),
    "lstm_no_bias_hx": (seqtorch.LSTM, dict(bias=False), dict(use_hx=True)),
    "lstm_single_bias_keras_init": (seqtorch.LSTM, dict(single_bias=True, init="keras"), {}),
    "lstm_stacked_lengths_hx": (seqtorch.LSTM, dict(num_layers=2), dict(use_lengths=True, use_hx=True)),
    "gru": (seqtorch.GRU, dict(), {}),
    "gru_bi_stacked_lengths": (seqtorch.GRU, dict(num_layers=2, bidirectional=True), dict(use_lengths=True)),
    "gru_relu_no_bias": (seqtorch.GRU, dict(activation="relu", bias=False), {}),
    "gru_hx_batch_first": (seqtorch.GRU, dict(batch_first=True), dict(use_hx=True)),
    "gru_reset_before": (seqtorch.GRU, dict(reset_after=False), {}),
    "gru_reset_before_hard_sigmoid_bi_lengths": (seqtorch.GRU, dict(reset_after=False, bidirectional=True,
                                                                    recurrent_activation="hard_sigmoid"),
                                                 dict(use_lengths=True)),
    "gru_reset_before_single_bias_hardsigmoid": (seqtorch.GRU, dict(reset_after=False, single_bias=True,
                                                                    recurrent_activation="hardsigmoid"), {}),
}


def build(case: str):
    cls, kwargs, call = CASES[case]
    torch.manual_seed(0)
    layer = cls(I, H, **kwargs)
    with torch.no_grad():  # biases away from torch's small init, so that a misplaced one cannot pass
        for name, p in layer.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-0.5, 0.5)
    return layer, call


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_matches_pytorch(case):
    layer, call = build(case)
    _, error = export_and_compare(layer, **call)
    print(f"{case}: max abs error {error:.3g}")


@pytest.mark.parametrize("case", ["lstm_bi_lengths", "gru_reset_before_hard_sigmoid_bi_lengths",
                                  "rnn_relu_bi_stacked_lengths"])
def test_export_without_grad(case):
    """Under no_grad the graph holds the inference form of the op (save=False: fewer outputs)."""
    layer, call = build(case)
    export_and_compare(layer, **call, grad=False)


@pytest.mark.parametrize("case", ["lstm_bi_lengths", "gru_reset_before_single_bias_hardsigmoid", "rnn_relu"])
def test_export_python_loop_implementation(case, monkeypatch):
    """The Python loop's op (what serves without a C++ compiler) translates the same way."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", False)
    layer, call = build(case)
    program, _ = export_and_compare(layer, **call)
    targets = {str(node.target) for node in program.exported_program.graph.nodes}
    assert "seqtorch.scan_forward_loop.default" in targets


def test_projection_is_folded_into_the_onnx_op():
    """The input projection feeds ONNX's W: no MatMul is left in a graph holding one layer."""
    layer, call = build("lstm_bi_stacked_batch_first")
    program, _ = export_and_compare(layer, **call)
    ops = [node.op_type for node in program.model.graph]
    assert "MatMul" not in ops and "Gemm" not in ops, ops


@pytest.mark.parametrize("case", ["lstm_bi_lengths", "gru_bi_stacked_lengths", "gru_reset_before", "rnn_tanh"])
def test_export_with_gx_as_input(case, monkeypatch):
    """Where gx is not the plain projection, it is ONNX's X with a permutation as W: same numbers."""
    monkeypatch.setattr(sonnx, "_projection", lambda gx: None)
    layer, call = build(case)
    program, _ = export_and_compare(layer, **call)
    ops = [node.op_type for node in program.model.graph]
    assert "MatMul" in ops or "Gemm" in ops  # the projection stays in the graph


def test_training_recurrent_dropout_is_refused():
    layer = seqtorch.LSTM(I, H, recurrent_dropout=0.3)
    model = Model(layer, False, False).train()
    x = torch.randn(7, 3, I)
    model(x)
    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    chain, error = [], info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    refusals = [e for e in chain if isinstance(e, sonnx.OnnxExportError)]
    assert refusals and "recurrent_dropout" in str(refusals[0]) and "eval" in str(refusals[0])


@pytest.mark.parametrize("kwargs, words", [
    (dict(cell="layernorm_lstm"), ["layernorm_lstm", "no ONNX operator"]),
    (dict(cell_args=[1e-5]), ["cell_args", "[1e-05]"]),
    (dict(keep=[object(), None]), ["zoneout"]),
    (dict(activation="softsign"), ["activation='softsign'"]),
    (dict(mask=object()), ["mask=", "lengths="]),
    (dict(restart=object()), ["resets="]),
])
def test_options_onnx_lacks_are_named(kwargs, words):
    args = dict(cell="lstm", activation="tanh", recurrent_activation="sigmoid", cell_args=[], rec_mask=None,
                keep=[None, None])
    args.update(kwargs)
    with pytest.raises(sonnx.OnnxExportError) as info:
        sonnx.check_exportable(**args)
    for word in words:
        assert word in str(info.value)


def test_every_registered_cell_is_mapped_or_refused_by_name():
    from seqtorch.recurrent_cells import CELLS

    assert set(sonnx.ONNX_CELLS) <= set(CELLS)
    assert {"rnn", "lstm", "gru", "gru_reset_before"} <= set(sonnx.ONNX_CELLS)
    for name in [name for name in CELLS if sonnx.onnx_cell(name) is None]:
        with pytest.raises(sonnx.OnnxExportError, match=name):
            sonnx.check_exportable(name, "tanh", "sigmoid", [], None, [None])


@pytest.mark.parametrize("cpp", [True, False], ids=["cpp", "python-loop"])
def test_peephole_lstm_exports_as_onnx_lstm_with_its_p_input(cpp, monkeypatch):
    """The shipped peephole LSTM (a cell written as equations, its scan its own library's op or the Python
    loop's) is ONNX's LSTM with P = (w_ci, w_co, w_cf): onnxruntime gives its numbers."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", cpp)
    torch.manual_seed(0)
    layer = seqtorch.Recurrent(seqtorch.equations.PeepholeLSTM(), I, H, bidirectional=True)
    with torch.no_grad():  # peepholes and biases away from their small init: a misplaced one cannot pass
        for name, p in layer.named_parameters():
            if not name.startswith("weight"):
                p.uniform_(-0.8, 0.8)
    program, _ = export_and_compare(layer, use_lengths=True, use_hx=True)
    lstm = [node for node in program.model.graph if node.op_type == "LSTM"]
    assert len(lstm) == 2 and all(len(node.inputs) == 8 and node.inputs[7] is not None for node in lstm)
    targets = {str(node.target) for node in program.exported_program.graph.nodes if "scan_forward" in str(node.target)}
    assert targets == {str(dispatch.cpp_kernel(layer.cell.name).forward) if cpp else "seqtorch.scan_forward_loop.default"}


def test_a_cell_written_as_equations_without_onnx_operator_is_refused_by_name():
    layer = seqtorch.Recurrent(seqtorch.equations.MGU(), I, H).eval()
    x = torch.randn(7, 3, I)
    layer(x)
    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Model(layer, False, False), (x,), dynamo=True, verbose=False)
    chain, error = [], info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    refusals = [e for e in chain if isinstance(e, sonnx.OnnxExportError)]
    assert refusals and "MGU" in str(refusals[0]) and layer.cell.name in str(refusals[0])


def test_every_loaded_scan_op_is_registered():
    """Each defined seqtorch::scan_forward_* op is one of the names the exporter hook registers."""
    seqtorch.LSTM(I, H)(torch.randn(2, 1, I))
    defined = {name for name in dir(torch.ops.seqtorch) if name.startswith("scan_forward_")}
    assert defined and defined <= {f"scan_forward_{impl}" for impl in sonnx.IMPLEMENTATIONS}
    table = sonnx.translation_table()
    generated = {f"{namespace}::scan_forward_cpp" for namespace in sonnx.native_cells.loaded()}
    assert {op.name() for op in table} == {f"seqtorch::{name}" for name in defined} | generated


def test_custom_translation_table_route():
    """The public route (custom_translation_table=) gives the same graph kind."""
    layer, _ = build("gru")
    model = Model(layer.eval(), False, False)
    x = torch.randn(7, 3, I)
    model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False,
                                    custom_translation_table=sonnx.translation_table())
    assert [node.op_type for node in program.model.graph].count("GRU") == 1


def test_plain_export_after_import_in_a_fresh_process(tmp_path):
    """What a user runs: import seqtorch, then torch.onnx.export with nothing else passed."""
    script = tmp_path / "export.py"
    script.write_text(
        "import torch, seqtorch, onnx\n"
        "m = seqtorch.LSTM(4, 5, bidirectional=True).eval()\n"
        "x = torch.randn(6, 2, 4); m(x)\n"
        "p = torch.onnx.export(m, (x,), dynamo=True, verbose=False, dynamic_shapes=({0: 'T', 1: 'B'},))\n"
        "print(sorted({n.op_type for n in p.model.graph if n.op_type == 'LSTM'}))\n"
        "print(sorted({str(n.target) for n in p.exported_program.graph.nodes if 'seqtorch' in str(n.target)}))\n")
    # The Python loop's op (SEQTORCH_NATIVE=0): what is tested is the registration, not the C++ build
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), SEQTORCH_NATIVE="0")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-2:] == ["['LSTM']", "['seqtorch.scan_forward_loop.default']"]
