"""seqtorch's layers and cells are instances of torch.nn's classes, and what torch.nn's bases give behaves.

Real programs initialize and dispatch by ``isinstance(m, nn.LSTM)`` / ``nn.RNNBase``: a program that swaps
only the constructor must reach seqtorch's modules there and compute what it computes with torch.nn's.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

import seqtorch
from conftest import assert_close

# seqtorch class -> the torch.nn class it is an instance of
TWINS = {seqtorch.SimpleRNN: nn.RNN, seqtorch.LSTM: nn.LSTM, seqtorch.GRU: nn.GRU,
         seqtorch.SimpleRNNCell: nn.RNNCell, seqtorch.LSTMCell: nn.LSTMCell, seqtorch.GRUCell: nn.GRUCell}
LAYERS = [seqtorch.SimpleRNN, seqtorch.LSTM, seqtorch.GRU, seqtorch.LayerNormLSTM, seqtorch.LayerNormGRU,
          seqtorch.IndRNN]
CELLS = [seqtorch.SimpleRNNCell, seqtorch.LSTMCell, seqtorch.GRUCell, seqtorch.LayerNormLSTMCell,
         seqtorch.LayerNormGRUCell, seqtorch.IndRNNCell]


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_every_layer_is_an_nn_rnnbase(cls):
    layer = cls(3, 4)
    assert isinstance(layer, nn.RNNBase) and isinstance(layer, seqtorch.RNNBase)
    twin = TWINS.get(cls)
    others = {nn.RNN, nn.LSTM, nn.GRU} - {twin}
    assert twin is None or isinstance(layer, twin)
    assert not any(isinstance(layer, other) for other in others)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_every_cell_is_an_nn_rnncellbase(cls):
    cell = cls(3, 4)
    assert isinstance(cell, nn.RNNCellBase) and isinstance(cell, seqtorch.RNNCellBase)
    twin = TWINS.get(cls)
    others = {nn.RNNCell, nn.LSTMCell, nn.GRUCell} - {twin}
    assert twin is None or isinstance(cell, twin)
    assert not any(isinstance(cell, other) for other in others)


def test_a_layer_over_any_cell_is_an_nn_rnnbase():
    layer = seqtorch.Recurrent(seqtorch.recurrent_cells.CELLS["lstm"], 3, 4)
    assert isinstance(layer, nn.RNNBase) and not isinstance(layer, nn.LSTM)


def _notebook_model(lstm_cls):
    """A sentiment notebook's model: embedding, 2-layer bidirectional LSTM, linear head."""
    torch.manual_seed(0)
    return nn.ModuleDict({"emb": nn.Embedding(20, 6), "rnn": lstm_cls(6, 5, 2, batch_first=True, bidirectional=True),
                          "fc": nn.Linear(10, 1)})


def _init_weights(model):
    """The notebook's init_weights, unchanged: it dispatches on torch.nn's classes."""
    for m in model.modules():
        if isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if "weight_ih" in name:
                    nn.init.xavier_uniform_(p)
                elif "weight_hh" in name:
                    nn.init.orthogonal_(p)
                elif "bias" in name:
                    nn.init.zeros_(p)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)


def test_program_style_init_weights_reaches_seqtorch_layers():
    theirs, ours = _notebook_model(nn.LSTM), _notebook_model(seqtorch.LSTM)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    torch.manual_seed(1)
    _init_weights(theirs)
    torch.manual_seed(1)
    _init_weights(ours)
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert not torch.equal(before["rnn.weight_hh_l0"], ours.state_dict()["rnn.weight_hh_l0"])
    assert (ours["rnn"].bias_ih_l1 == 0).all()


def _run(layer, x):
    out = layer(x)
    return out[0] if isinstance(out, tuple) else out


def test_flat_weights_follow_the_parameters_through_to():
    layer = seqtorch.LSTM(3, 4, 2, bidirectional=True)
    names = [name for name, _ in layer.named_parameters()]
    assert layer._flat_weights_names == names
    assert all(w is getattr(layer, n) for w, n in zip(layer._flat_weights, names))
    layer.double()
    assert all(w.dtype == torch.float64 and w is getattr(layer, n) for w, n in zip(layer._flat_weights, names))
    layer.flatten_parameters()  # torch.nn programs call it; nothing to compact here
    assert [[p.shape for p in ps] for ps in layer.all_weights] == \
        [[p.shape for p in ps] for ps in nn.LSTM(3, 4, 2, bidirectional=True).all_weights]


@pytest.mark.parametrize("cls", [seqtorch.LSTM, seqtorch.GRUCell], ids=lambda c: c.__name__)
def test_to_half_and_back_runs(cls):
    module = cls(3, 4)
    x = torch.randn(5, 2, 3) if cls is seqtorch.LSTM else torch.randn(2, 3)
    rounded = copy.deepcopy(module)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())  # the values a round trip through float16 leaves
    module.half()
    assert all(p.dtype == torch.float16 for p in module.parameters())
    module.float()
    assert_close(_run(module, x), _run(rounded, x))
    module.to(torch.float64)
    assert _run(module, x.double()).dtype == torch.float64


@pytest.mark.parametrize("cls", LAYERS + CELLS, ids=lambda c: c.__name__)
def test_deepcopy_and_pickle_keep_the_function(cls):
    module = cls(3, 4, recurrent_dropout=0.2) if cls in LAYERS else cls(3, 4, zoneout=0.1)
    module.eval()
    x = torch.randn(5, 2, 3) if cls in LAYERS else torch.randn(2, 3)
    want = _run(module, x)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    for copy_ in (copy.deepcopy(module), pickle.loads(pickle.dumps(module)), torch.load(buffer, weights_only=False)):
        assert type(copy_) is cls and copy_.cell is module.cell
        assert repr(copy_) == repr(module)
        assert_close(_run(copy_, x), want)


def test_state_dict_hooks_run():
    layer = seqtorch.GRU(3, 4)
    seen = []
    layer.register_state_dict_post_hook(lambda module, state_dict, prefix, local_metadata: seen.append(len(state_dict)))
    layer._register_load_state_dict_pre_hook(lambda *args: seen.append("load"))
    layer.load_state_dict(layer.state_dict())
    assert seen == [4, "load"]


def test_weight_norm_and_spectral_norm_parametrize_the_weights_seqtorch_reads():
    torch.manual_seed(0)
    layer = seqtorch.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    weight_norm(layer, "weight_hh_l0")
    spectral_norm(layer, "weight_ih_l0")
    assert isinstance(layer, nn.LSTM)
    out = _run(layer, x)
    reference = seqtorch.LSTM(3, 4)
    reference.load_state_dict({"weight_ih_l0": layer.weight_ih_l0, "weight_hh_l0": layer.weight_hh_l0,
                               "bias_ih_l0": layer.bias_ih_l0, "bias_hh_l0": layer.bias_hh_l0})
    assert_close(out, _run(reference, x))
    out.sum().backward()
    assert layer.parametrizations.weight_hh_l0.original0.grad is not None


def test_pruning_masks_the_weights_seqtorch_reads():
    layer = seqtorch.GRU(3, 4)
    prune.l1_unstructured(layer, "weight_hh_l0", amount=0.5)
    assert (layer.weight_hh_l0 == 0).sum() == layer.weight_hh_l0.numel() // 2
    x = torch.randn(5, 2, 3)
    dense = seqtorch.GRU(3, 4)
    dense.load_state_dict({"weight_ih_l0": layer.weight_ih_l0, "weight_hh_l0": layer.weight_hh_l0,
                           "bias_ih_l0": layer.bias_ih_l0, "bias_hh_l0": layer.bias_hh_l0})
    assert_close(_run(layer, x), _run(dense, x))
    prune.remove(layer, "weight_hh_l0")
    assert_close(_run(layer, x), _run(dense, x))


def test_torch_nn_mode_names_the_computation():
    assert seqtorch.LSTM(3, 4).mode == nn.LSTM(3, 4).mode == "LSTM"
    assert seqtorch.GRU(3, 4).mode == "GRU"
    assert seqtorch.SimpleRNN(3, 4, nonlinearity="relu").mode == nn.RNN(3, 4, nonlinearity="relu").mode
