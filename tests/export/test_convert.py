"""seqtorch <-> torch.nn conversion (seqtorch.convert): the same weights give the same outputs both ways;
the options torch.nn lacks are refused by name."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqtorch
from conftest import assert_close

I, H = 4, 6

LAYERS = {
    "rnn": dict(cls=seqtorch.SimpleRNN),
    "rnn_relu_stacked_bi": dict(cls=seqtorch.SimpleRNN, nonlinearity="relu", num_layers=2, bidirectional=True),
    "lstm": dict(cls=seqtorch.LSTM),
    "lstm_stacked_bi_batch_first": dict(cls=seqtorch.LSTM, num_layers=2, bidirectional=True, batch_first=True),
    "lstm_no_bias_dropout": dict(cls=seqtorch.LSTM, num_layers=2, bias=False, dropout=0.3),
    "gru": dict(cls=seqtorch.GRU),
    "gru_stacked_bi": dict(cls=seqtorch.GRU, num_layers=2, bidirectional=True),
}


def make_layer(case: str, **extra):
    spec = dict(LAYERS[case])
    cls = spec.pop("cls")
    torch.manual_seed(0)
    return cls(I, H, **spec, **extra)


def inputs(layer, T=5, B=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, I) if layer.batch_first else (T, B, I), generator=gen)
    shape = (layer.num_layers * (2 if layer.bidirectional else 1), B, H)
    hx = torch.randn(shape, generator=gen)
    hx = (hx, torch.randn(shape, generator=gen)) if layer.cell.family == "lstm" else hx
    return x, hx


def flat(result):
    output, state = result
    return [output, *(state if isinstance(state, tuple) else (state,))]


def assert_same_function(a, b, *args, **kwargs):
    for got, want in zip(flat(a(*args, **kwargs)), flat(b(*args, **kwargs))):
        assert_close(got, want)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_to_torch_nn(case):
    layer = make_layer(case).eval()
    converted = layer.to_torch_nn()
    assert type(converted) is {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[layer.cell.family]
    assert not converted.training
    for (name, p), (name_nn, q) in zip(layer.state_dict().items(), converted.state_dict().items()):
        assert name == name_nn and torch.equal(p, q)
    x, hx = inputs(layer)
    assert_same_function(layer, converted, x, hx)
    assert_same_function(layer, converted, x)


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_from_torch_nn(case):
    spec = dict(LAYERS[case])
    cls = spec.pop("cls")
    nn_class = {seqtorch.SimpleRNN: nn.RNN, seqtorch.LSTM: nn.LSTM, seqtorch.GRU: nn.GRU}[cls]
    torch.manual_seed(3)
    module = nn_class(I, H, **spec).eval()
    layer = cls.from_torch_nn(module)
    assert type(layer) is cls and not layer.training
    assert layer.num_layers == module.num_layers and layer.bidirectional == module.bidirectional
    x, hx = inputs(layer)
    assert_same_function(layer, module, x, hx)
    # the round trip gives torch.nn's weights back, bit for bit
    back = layer.to_torch_nn()
    for p, q in zip(module.state_dict().values(), back.state_dict().values()):
        assert torch.equal(p, q)


def test_from_torch_nn_on_a_base_class_follows_the_module():
    assert type(seqtorch.RNNBase.from_torch_nn(nn.GRU(I, H))) is seqtorch.GRU
    assert type(seqtorch.RNNCellBase.from_torch_nn(nn.LSTMCell(I, H))) is seqtorch.LSTMCell


def test_from_torch_nn_keeps_the_backend_asked_for():
    layer = seqtorch.LSTM.from_torch_nn(nn.LSTM(I, H), backend="reference")
    assert layer.backend == "reference"


def test_gradients_match_after_conversion():
    layer = make_layer("lstm_stacked_bi_batch_first")
    converted = layer.to_torch_nn()
    x, _ = inputs(layer)
    for module in (layer, converted):
        output, (h_n, c_n) = module(x)
        (output.square().sum() + h_n.sum() + c_n.sum()).backward()
    for (name, p), q in zip(layer.named_parameters(), converted.parameters()):
        assert_close(q.grad, p.grad, msg=name)


@pytest.mark.parametrize("case", ["lstm_stacked_bi_batch_first", "gru_stacked_bi", "rnn_relu_stacked_bi"])
def test_lengths_become_a_packed_sequence(case):
    """seqtorch's lengths= and torch.nn's PackedSequence give the same outputs and final states."""
    layer = make_layer(case).eval()
    converted = layer.to_torch_nn()
    x, _ = inputs(layer, T=6, B=4)
    lengths = torch.tensor([6, 1, 4, 3])
    output, state = layer(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=layer.batch_first, enforce_sorted=False)
    packed_out, state_nn = converted(packed)
    output_nn, _ = pad_packed_sequence(packed_out, batch_first=layer.batch_first, total_length=6)
    assert_close(output, output_nn)
    for got, want in zip(state if isinstance(state, tuple) else (state,),
                         state_nn if isinstance(state_nn, tuple) else (state_nn,)):
        assert_close(got, want)


@pytest.mark.parametrize("cls, kwargs", [(seqtorch.LSTM, {}), (seqtorch.SimpleRNN, {}),
                                         (seqtorch.GRU, dict(reset_after=False))])
def test_single_bias_converts_to_a_zero_bias_hh(cls, kwargs):
    layer = cls(I, H, single_bias=True, init="keras", **kwargs)
    with torch.no_grad():
        layer.bias_ih_l0.uniform_(-0.5, 0.5)
    if kwargs:  # torch.nn has no reset-before GRU: refused, naming that option only
        with pytest.raises(ValueError, match=r"reset_after=False") as info:
            layer.to_torch_nn()
        assert "single_bias" not in str(info.value)
        return
    converted = layer.to_torch_nn()
    assert isinstance(converted.bias_hh_l0, nn.Parameter) and not converted.bias_hh_l0.any()
    x, _ = inputs(layer)
    assert_same_function(layer, converted, x)


def test_requires_grad_and_training_flag_are_kept():
    layer = seqtorch.GRU(I, H, num_layers=2)
    layer.weight_hh_l1.requires_grad_(False)
    converted = layer.train().to_torch_nn()
    assert converted.training and not converted.weight_hh_l1.requires_grad and converted.weight_ih_l1.requires_grad


def test_dtype_and_device_are_kept():
    layer = seqtorch.LSTM(I, H, dtype=torch.float64)
    converted = layer.to_torch_nn()
    assert converted.weight_ih_l0.dtype == torch.float64
    x, _ = inputs(layer)
    x = x.double()
    assert_same_function(layer, converted, x)


@pytest.mark.parametrize("cls, kwargs, named", [
    (seqtorch.LSTM, dict(recurrent_dropout=0.2), "recurrent_dropout=0.2"),
    (seqtorch.GRU, dict(input_dropout=0.1), "input_dropout=0.1"),
    (seqtorch.GRU, dict(reset_after=False), "reset_after=False"),
    (seqtorch.LSTM, dict(recurrent_activation="hard_sigmoid"), "recurrent_activation='hard_sigmoid'"),
    (seqtorch.GRU, dict(recurrent_activation="hardsigmoid"), "recurrent_activation='hardsigmoid'"),
    (seqtorch.LSTM, dict(activation="relu"), "activation='relu'"),
    (seqtorch.GRU, dict(activation="relu"), "activation='relu'"),
    (seqtorch.SimpleRNN, dict(recurrent_dropout=0.5), "recurrent_dropout=0.5"),
])
def test_options_torch_nn_lacks_are_refused(cls, kwargs, named):
    layer = cls(I, H, **kwargs)
    with pytest.raises(ValueError, match=f"torch.nn.{cls.__name__.replace('Simple', '')}") as info:
        layer.to_torch_nn()
    assert named in str(info.value)


def test_several_options_are_named_at_once():
    layer = seqtorch.GRU(I, H, reset_after=False, recurrent_activation="hard_sigmoid", recurrent_dropout=0.1)
    with pytest.raises(ValueError) as info:
        layer.to_torch_nn()
    for named in ("recurrent_dropout=0.1", "reset_after=False", "recurrent_activation='hard_sigmoid'"):
        assert named in str(info.value)


def test_from_torch_nn_refuses_another_class():
    with pytest.raises(TypeError, match=r"expects torch.nn.LSTM, got torch.nn.modules.rnn.GRU"):
        seqtorch.LSTM.from_torch_nn(nn.GRU(I, H))
    with pytest.raises(TypeError, match=r"expects torch.nn.GRUCell, got"):
        seqtorch.GRUCell.from_torch_nn(nn.GRU(I, H))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_proj_size_converts_both_ways(bidirectional):
    torch.manual_seed(0)
    theirs = nn.LSTM(I, H, num_layers=2, proj_size=3, bidirectional=bidirectional, dtype=torch.float64)
    ours = seqtorch.LSTM.from_torch_nn(theirs)
    assert ours.proj_size == 3
    back = ours.to_torch_nn()
    x = torch.randn(5, 2, I, dtype=torch.float64)
    for module in (ours, back):
        out, (h, c) = module(x)
        want_out, (want_h, want_c) = theirs(x)
        assert_close(out, want_out)
        assert_close(h, want_h)
        assert_close(c, want_c)


def test_cells_torch_nn_lacks_have_no_counterpart():
    for module in (seqtorch.LayerNormLSTM(I, H), seqtorch.IndRNNCell(I, H), seqtorch.LayerNormGRUCell(I, H)):
        with pytest.raises(TypeError, match="has no torch.nn counterpart"):
            module.to_torch_nn()
    with pytest.raises(ValueError, match="zoneout=0.1"):
        seqtorch.LSTM(I, H, zoneout=0.1).to_torch_nn()


CELLS = [(seqtorch.SimpleRNNCell, nn.RNNCell, {}), (seqtorch.SimpleRNNCell, nn.RNNCell, dict(nonlinearity="relu")),
         (seqtorch.LSTMCell, nn.LSTMCell, {}), (seqtorch.GRUCell, nn.GRUCell, {}),
         (seqtorch.LSTMCell, nn.LSTMCell, dict(bias=False))]


@pytest.mark.parametrize("cls, nn_class, kwargs", CELLS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_cells_both_ways(cls, nn_class, kwargs):
    torch.manual_seed(0)
    cell = cls(I, H, **kwargs)
    converted = cell.to_torch_nn()
    assert type(converted) is nn_class
    x = torch.randn(3, I)
    h = torch.randn(3, H)
    hx = (h, torch.randn(3, H)) if nn_class is nn.LSTMCell else h

    def same(a, b):
        for got, want in zip(*(r if isinstance(r, tuple) else (r,) for r in (a(x, hx), b(x, hx)))):
            assert_close(got, want)

    same(cell, converted)
    torch.manual_seed(5)
    module = nn_class(I, H, **kwargs)
    back = cls.from_torch_nn(module)
    assert type(back) is cls
    same(back, module)


def test_cell_options_torch_nn_lacks_are_refused():
    with pytest.raises(ValueError, match=r"torch.nn.GRUCell: torch.nn has no reset_after=False"):
        seqtorch.GRUCell(I, H, reset_after=False).to_torch_nn()
    with pytest.raises(ValueError, match=r"recurrent_activation='hard_sigmoid'"):
        seqtorch.LSTMCell(I, H, recurrent_activation="hard_sigmoid").to_torch_nn()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's deprecation notes
def test_quantize_dynamic_through_to_torch_nn():
    """quantize_dynamic leaves a seqtorch layer in float; its torch.nn conversion is quantized."""

    class Classifier(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn, self.head = rnn, nn.Linear(H, 1)

        def forward(self, x):
            output, _ = self.rnn(x)
            return self.head(output[-1])

    torch.manual_seed(0)
    model = Classifier(seqtorch.LSTM(I, H)).eval()
    spec = {nn.LSTM, nn.Linear}
    untouched = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    assert type(untouched.rnn) is seqtorch.LSTM
    model.rnn = model.rnn.to_torch_nn()
    x = torch.randn(9, 2, I)
    reference = model(x)
    quantized = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    assert type(quantized.rnn) is torch.ao.nn.quantized.dynamic.LSTM
    result = quantized(x)
    assert result.shape == reference.shape and not torch.equal(result, reference)  # int8 weights: other numbers
