"""Whole-model checkpoints: ``torch.save(model)`` then ``torch.load(f, weights_only=True)`` with
``seqtorch.safe_globals()`` allowed, for every layer and cell and the extras, after a training step."""

import importlib
import io
import pkgutil

import pytest
import torch
from torch import nn

import seqtorch
from seqtorch.models.imdb import RNNClassifier
from seqtorch.models.jena import RecurrentRegressor, RecurrentSpec

I, H, B, T = 3, 5, 4, 6

LAYER_VARIANTS = {
    "rnn": (seqtorch.SimpleRNN, {}),
    "rnn-relu-extras": (seqtorch.RNN, dict(nonlinearity="relu", num_layers=2, bidirectional=True, dropout=0.3,
                                           input_dropout=0.2, recurrent_dropout=0.25, init="keras")),
    "lstm": (seqtorch.LSTM, dict(batch_first=True)),
    "lstm-extras": (seqtorch.LSTM, dict(num_layers=2, single_bias=True, recurrent_activation="hard_sigmoid",
                                        activation="relu", recurrent_dropout=0.2, init="keras")),
    "lstm-hardsigmoid-nobias": (seqtorch.LSTM, dict(bias=False, recurrent_activation="hardsigmoid")),
    "gru": (seqtorch.GRU, dict(bidirectional=True)),
    "gru-keras": (seqtorch.GRU, dict(reset_after=False, single_bias=True, init="keras",
                                     recurrent_activation="hard_sigmoid", input_dropout=0.1)),
    "gru-reference": (seqtorch.GRU, dict(backend="reference", num_layers=2, dropout=0.5)),
}
CELL_VARIANTS = {
    "rnn-cell": (seqtorch.RNNCell, dict(nonlinearity="relu")),
    "lstm-cell": (seqtorch.LSTMCell, dict(single_bias=True, recurrent_activation="hard_sigmoid")),
    "gru-cell": (seqtorch.GRUCell, dict(reset_after=False, init="keras", bias=True)),
    "gru-cell-nobias": (seqtorch.GRUCell, dict(bias=False)),
}


def _round_trip(model, extra_globals=()):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals([*seqtorch.safe_globals(), *extra_globals]):
        return torch.load(buffer, weights_only=True)


def _train_step(model, loss_fn):
    """One RMSprop step, so the saved weights are not the initial ones."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01)
    model.train()
    optimizer.zero_grad()
    loss_fn(model).backward()
    optimizer.step()
    model.eval()


def _assert_same_module(loaded, model):
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for (name, a), (_, b) in zip(loaded.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [n for n, _ in loaded.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]


def _state_sum(result):
    if isinstance(result, torch.Tensor):
        return result.sum()
    return sum(_state_sum(r) for r in result)


@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_layer_round_trips_with_weights_only(variant):
    cls, kwargs = LAYER_VARIANTS[variant]
    torch.manual_seed(0)
    model = cls(I, H, **kwargs)
    x = torch.randn((B, T, I) if model.batch_first else (T, B, I))
    lengths = torch.tensor([6, 2, 5, 1])
    _train_step(model, lambda m: _state_sum(m(x, lengths=lengths)))
    loaded = _round_trip(model)
    _assert_same_module(loaded, model)
    for kw in ({}, {"lengths": lengths}):
        for a, b in zip(_flat(loaded(x, **kw)), _flat(model(x, **kw))):
            assert torch.equal(a, b)
    # The loaded layer trains on: its parameters are leaves that take gradients.
    _state_sum(loaded(x)).backward()
    assert all(p.grad is not None for p in loaded.parameters())


@pytest.mark.parametrize("variant", list(CELL_VARIANTS))
def test_cell_round_trips_with_weights_only(variant):
    cls, kwargs = CELL_VARIANTS[variant]
    torch.manual_seed(0)
    model = cls(I, H, **kwargs)
    x = torch.randn(B, I)
    _train_step(model, lambda m: _state_sum(m(x)))
    loaded = _round_trip(model)
    _assert_same_module(loaded, model)
    for a, b in zip(_flat(loaded(x)), _flat(model(x))):
        assert torch.equal(a, b)


def _flat(result):
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for item in result for t in _flat(item)]


class _WordModel(nn.Module):
    """pytorch/examples' word_language_model shape: Embedding, a recurrent layer picked by torch.nn
    name from a namespace (torch.nn or seqtorch), Dropout, Linear decoder."""

    def __init__(self, namespace, rnn_type, ntoken=20, ninp=6, nhid=7, nlayers=2):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(namespace, rnn_type)(ninp, nhid, nlayers, dropout=0.2)
        else:
            self.rnn = namespace.RNN(ninp, nhid, nlayers, nonlinearity="relu", dropout=0.2)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens):
        output, _ = self.rnn(self.drop(self.encoder(tokens)))
        return self.decoder(self.drop(output))


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_RELU"])
def test_ported_program_checkpoint_loads_with_safe_globals(rnn_type):
    torch.manual_seed(0)
    model = _WordModel(seqtorch, rnn_type)
    tokens = torch.randint(0, 20, (8, 3))
    _train_step(model, lambda m: nn.functional.cross_entropy(m(tokens).flatten(0, 1), tokens.flatten()))
    torch_nn_classes = [_WordModel, nn.Dropout, nn.Embedding, nn.Linear]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match="seqtorch.layers"):  # what a user sees without the seqtorch list
        with torch.serialization.safe_globals(torch_nn_classes):
            torch.load(buffer, weights_only=True)
    loaded = _round_trip(model, torch_nn_classes)
    _assert_same_module(loaded, model)
    assert torch.equal(loaded(tokens), model(tokens))


def test_add_safe_globals_works_too():
    torch.manual_seed(0)
    model = seqtorch.GRU(I, H, reset_after=False, single_bias=True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    saved = torch.serialization.get_safe_globals()
    try:
        torch.serialization.add_safe_globals(seqtorch.safe_globals())
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
    finally:  # the allow-list is process-wide: leave it as it was
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    _assert_same_module(loaded, model)


@pytest.mark.parametrize("build", ["imdb-lstm-keras", "imdb-gru-lengths", "imdb-torch-nn-twin", "jena"])
def test_seqtorch_models_round_trip(build):
    torch.manual_seed(0)
    torch_nn_classes = [nn.Embedding, nn.Linear, nn.ModuleList, nn.LSTM, nn.GRU]
    if build.startswith("imdb"):
        kind = "lstm" if "lstm" in build else "gru"
        model = RNNClassifier(kind, num_words=50, embed_dim=4, hidden=5, keras_faithful="keras" in build,
                              use_lengths="lengths" in build, torch_nn="twin" in build)
        inputs = (torch.randint(1, 50, (3, 7)), torch.tensor([7, 3, 5]))
        target = torch.ones(3)
    else:
        specs = [RecurrentSpec("gru", 5, 0.1, 0.2), RecurrentSpec("lstm", 3, bidirectional=True)]
        model = RecurrentRegressor(4, specs, keras_faithful=True)
        inputs, target = (torch.randn(3, 6, 4),), torch.zeros(3)
    _train_step(model, lambda m: ((m(*inputs) - target) ** 2).mean())
    loaded = _round_trip(model, torch_nn_classes)
    _assert_same_module(loaded, model)
    assert torch.equal(loaded(*inputs), model(*inputs))


def test_safe_globals_lists_every_module_class_of_seqtorch():
    """A new nn.Module in the package cannot be forgotten in the list."""
    found = set()
    for info in pkgutil.walk_packages(seqtorch.__path__, "seqtorch."):
        if info.name.startswith("seqtorch.ops"):
            continue  # kernels: no Modules, and importing them may build or probe native code
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == info.name:
                found.add(value)
    assert found and found == set(seqtorch.safe_globals())
