"""single_bias: Keras' one trained bias per gate (``bias_hh_*`` a zero buffer), and why it matters."""

import pytest
import torch

import seqtorch
from conftest import assert_close, cpu_backends
from seqtorch.models.imdb import ImdbModelConfig, build_model
from seqtorch.models.jena import RECURRENT_MODELS, build_jena_model
from seqtorch.training.optim import KerasRMSprop

LAYERS = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}
CELLS = {"rnn": seqtorch.SimpleRNNCell, "lstm": seqtorch.LSTMCell, "gru": seqtorch.GRUCell}
TORCH_NN = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}


def _gru_kw(mode):
    return {"reset_after": False} if mode == "gru" else {}


@pytest.mark.parametrize("mode", list(LAYERS))
def test_bias_hh_is_an_untrained_zero_buffer_under_torch_nn_keys(mode):
    layer = LAYERS[mode](3, 4, num_layers=2, bidirectional=True, single_bias=True, **_gru_kw(mode))
    params = [n for n, _ in layer.named_parameters()]
    assert params and not [n for n in params if n.startswith("bias_hh")]
    assert sum(n.startswith("bias_ih") for n in params) == 4
    two_biases = LAYERS[mode](3, 4, num_layers=2, bidirectional=True, **_gru_kw(mode))
    state = layer.state_dict()
    assert sorted(state) == sorted(two_biases.state_dict())
    hh = [k for k in state if k.startswith("bias_hh")]
    assert len(hh) == 4 and all(torch.equal(state[k], torch.zeros_like(state[k])) for k in hh)
    two_biases.load_state_dict(state, strict=True)
    layer.load_state_dict(two_biases.state_dict(), strict=True)
    if mode in TORCH_NN:
        reference = TORCH_NN[mode](3, 4, num_layers=2, bidirectional=True)
        reference.load_state_dict(state, strict=True)
        layer.load_state_dict(reference.state_dict(), strict=True)
    layer.requires_grad_(True)  # a buffer cannot be switched back into training
    assert not [n for n, _ in layer.named_parameters() if n.startswith("bias_hh")]
    layer.double()
    assert layer.bias_hh_l1_reverse.dtype == torch.float64


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("mode", list(LAYERS))
def test_same_outputs_and_gradients_as_two_biases_with_bias_hh_at_zero(mode, backend):
    torch.manual_seed(0)
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64, backend=backend,
              **_gru_kw(mode))
    single = LAYERS[mode](3, 4, single_bias=True, **kw)
    double = LAYERS[mode](3, 4, **kw)
    double.load_state_dict(single.state_dict())
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    out_s, _ = single(x, lengths=lengths)
    out_d, _ = double(x, lengths=lengths)
    upstream = torch.randn_like(out_s)
    (out_s * upstream).sum().backward()
    (out_d * upstream).sum().backward()
    assert_close(out_s, out_d)
    doubles = dict(double.named_parameters())
    for name, p in single.named_parameters():
        assert_close(p.grad, doubles[name].grad, msg=name)
    # Why one is enough: the two biases of a layer always get the same gradient.
    assert_close(doubles["bias_hh_l1"].grad, doubles["bias_ih_l1"].grad)


@pytest.mark.parametrize("single_bias", [True, False])
def test_an_optimizer_step_moves_the_bias_once_as_keras_does(single_bias):
    """Keras' RMSprop moves its one bias by lr * g / sqrt((1 - rho) g^2 + eps) on the first step;
    with torch's two trainable biases their sum (all the layer ever uses) moves twice as far."""
    torch.manual_seed(0)
    layer = seqtorch.LSTM(2, 3, init="keras", single_bias=single_bias, dtype=torch.float64)
    lr, rho, eps = 1e-3, 0.9, 1e-7
    opt = KerasRMSprop(layer.parameters(), lr=lr, rho=rho, eps=eps)
    before = (layer.bias_ih_l0 + layer.bias_hh_l0).detach().clone()
    out, _ = layer(torch.randn(4, 5, 2, dtype=torch.float64))
    out.square().sum().backward()
    g = layer.bias_ih_l0.grad.clone()
    opt.step()
    moved = (layer.bias_ih_l0 + layer.bias_hh_l0).detach() - before
    keras_step = -lr * g / ((1 - rho) * g * g + eps).sqrt()
    assert_close(moved, keras_step if single_bias else 2 * keras_step)


@pytest.mark.parametrize("mode", list(CELLS))
def test_cells(mode):
    torch.manual_seed(0)
    single = CELLS[mode](3, 4, single_bias=True, dtype=torch.float64, **_gru_kw(mode))
    assert [n for n, _ in single.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih"]
    assert torch.equal(single.bias_hh, torch.zeros(single.bias_ih.shape, dtype=torch.float64))
    assert "single_bias=True" in repr(single)
    double = CELLS[mode](3, 4, dtype=torch.float64, **_gru_kw(mode))
    double.load_state_dict(single.state_dict(), strict=True)
    x = torch.randn(2, 3, dtype=torch.float64)
    out_s, out_d = single(x), double(x)
    assert_close(out_s[0] if mode == "lstm" else out_s, out_d[0] if mode == "lstm" else out_d)


@pytest.mark.parametrize("make", [
    lambda: seqtorch.LSTM(3, 4, bias=False, single_bias=True),
    lambda: seqtorch.GRU(3, 4, single_bias=True),
    lambda: seqtorch.LSTMCell(3, 4, bias=False, single_bias=True),
    lambda: seqtorch.GRUCell(3, 4, single_bias=True),
], ids=["layer-no-bias", "reset-after-gru", "cell-no-bias", "reset-after-gru-cell"])
def test_refused_where_there_is_no_single_bias(make):
    with pytest.raises(ValueError, match="single_bias=True needs"):
        make()


def test_refuses_a_non_bool():
    with pytest.raises(TypeError, match="single_bias must be a bool"):
        seqtorch.SimpleRNN(3, 4, single_bias="yes")


@pytest.mark.parametrize("kind, reset_after, expected", [
    ("simplernn", None, True), ("lstm", None, True), ("gru", None, True), ("gru", True, False),
])
def test_keras_faithful_imdb_models_use_one_bias_like_keras(kind, reset_after, expected):
    keras = build_model(ImdbModelConfig(kind=kind, keras_faithful=True, reset_after=reset_after))
    assert keras.rnn.single_bias is expected
    assert build_model(ImdbModelConfig(kind=kind)).rnn.single_bias is False


def test_torch_nn_twin_keeps_its_bias_hh_out_of_training_too():
    twin = build_model(ImdbModelConfig(kind="lstm", keras_faithful=True, torch_nn=True)).rnn.layer
    assert isinstance(twin, torch.nn.LSTM)
    assert not twin.bias_hh_l0.requires_grad and twin.bias_ih_l0.requires_grad
    assert torch.equal(twin.bias_hh_l0, torch.zeros_like(twin.bias_hh_l0))


@pytest.mark.parametrize("name", sorted(RECURRENT_MODELS))
def test_keras_faithful_jena_models_use_one_bias_like_keras(name):
    model = build_jena_model(name, keras_faithful=True)
    assert all(layer.single_bias for layer in model.recurrent)
    assert not any(layer.single_bias for layer in build_jena_model(name).recurrent)
