"""Real files written by Keras 3.15.1 (tests/fixtures/keras, a copy of the project's shared fixtures): each
loads and reproduces Keras' own ``predict`` output (expected.npz) within the float32 tolerance."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
import torch

import seqtorch
import seqtorch.keras as sk
from conftest import assert_close
from support.keras_files import FIXTURES, rewrite_archive
from seqtorch.models.imdb import RNNClassifier
from seqtorch.models.jena import RecurrentRegressor, RecurrentSpec

EXPECTED = np.load(FIXTURES / "expected.npz")
MODELS = json.loads((FIXTURES / "models.json").read_text())["layers"]
MODEL_FILES = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".keras", ".h5")
                     and not p.name.endswith(".weights.h5"))


def _model_name(file_name: str) -> str:
    return file_name.split(".")[0]


def _inputs(name: str) -> torch.Tensor:
    return torch.from_numpy(EXPECTED[f"{name}:x"])


def _keras_output(name: str) -> torch.Tensor:
    return torch.from_numpy(EXPECTED[f"{name}:y"])


def test_every_model_of_models_json_has_a_file_and_outputs():
    assert MODELS, "models.json lists no models"
    for name in MODELS:
        assert f"{name}.keras" in MODEL_FILES
        assert f"{name}:x" in EXPECTED and f"{name}:y" in EXPECTED


@pytest.mark.parametrize("file_name", MODEL_FILES)
def test_load_model_reproduces_keras_predict(file_name):
    name = _model_name(file_name)
    model = sk.load_model(FIXTURES / file_name)
    assert not model.training  # Keras' predict: dropout off
    with torch.no_grad():
        got = model(_inputs(name))
    assert_close(got, _keras_output(name), msg=file_name)


@pytest.mark.parametrize("file_name", MODEL_FILES)
def test_load_model_builds_the_layers_models_json_lists(file_name):
    name = _model_name(file_name)
    model = sk.load_model(FIXTURES / file_name)
    kinds = []
    for layer in model.layers:
        if isinstance(layer, sk.KerasRecurrent):
            kinds.append("Bidirectional" if layer.rnn.bidirectional else
                         {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}[layer.rnn.cell.family])
        else:
            kinds.append({torch.nn.Embedding: "Embedding", sk.Dense: "Dense"}[type(layer)])
    assert kinds == MODELS[name]


def test_keras3_hard_sigmoid_is_torch_hardsigmoid():
    model = sk.load_model(FIXTURES / "imdb_lstm_hard_sigmoid.keras")
    assert model.layers[1].rnn.recurrent_activation == "hardsigmoid"
    # The fixture tells the two formulas apart: Keras 2's would not reproduce Keras 3's output.
    model.layers[1].rnn.recurrent_activation = "hard_sigmoid_keras2"
    with torch.no_grad():
        wrong = model(_inputs("imdb_lstm_hard_sigmoid"))
    assert (wrong - _keras_output("imdb_lstm_hard_sigmoid")).abs().max() > 1e-4


@pytest.mark.parametrize("metadata, expected", [({}, "hardsigmoid"), ({"keras_version": "3.0.5"}, "hardsigmoid"),
                                                 ({"keras_version": "2.15.0"}, "hard_sigmoid_keras2")],
                         ids=["no-metadata", "keras-3", "tf-keras-2"])
def test_archive_hard_sigmoid_follows_the_recorded_version(tmp_path, metadata, expected):
    # tf.keras 2.12+ writes .keras archives too, and means Keras 2's formula; without metadata: Keras 3.
    path = rewrite_archive(FIXTURES / "imdb_lstm_hard_sigmoid.keras", tmp_path / "hs.keras", metadata=metadata)
    assert sk.load_model(path).layers[1].rnn.recurrent_activation == expected


def test_stacked_gru_keeps_keras_dropouts_for_fine_tuning():
    model = sk.load_model(FIXTURES / "jena_gru_stacked.keras")
    first, second = model.layers[0].rnn, model.layers[1].rnn
    assert (first.input_dropout, first.recurrent_dropout) == (0.1, 0.5)
    assert (second.input_dropout, second.recurrent_dropout, second.activation) == (0.1, 0.5, "relu")
    assert model.layers[0].return_sequences and not model.layers[1].return_sequences
    x = _inputs("jena_gru_stacked")
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        noisy = model(x)
    assert (noisy - _keras_output("jena_gru_stacked")).abs().max() > 1e-4  # the dropouts act in training


def test_reset_before_gru_is_single_bias_and_reset_after_gru_two_biases():
    before = sk.load_model(FIXTURES / "jena_gru_reset_before.keras").layers[0].rnn
    after = sk.load_model(FIXTURES / "jena_gru.keras").layers[0].rnn
    assert (before.reset_after, before.single_bias) == (False, True)
    assert (after.reset_after, after.single_bias) == (True, False)
    assert after.bias_hh_l0.abs().sum() > 0


def test_load_weights_into_the_books_imdb_lstm_from_weights_h5_and_keras():
    x, expected = _inputs("imdb_lstm"), _keras_output("imdb_lstm")
    for file_name in ("imdb_lstm.weights.h5", "imdb_lstm.keras"):
        model = RNNClassifier("lstm", num_words=50, embed_dim=8, hidden=6, keras_faithful=True).eval()
        assert sk.load_weights(model, FIXTURES / file_name) is model
        with torch.no_grad():
            got = torch.sigmoid(model(x)).unsqueeze(-1)  # the classifier returns logits, Keras a probability
        assert_close(got, expected, msg=file_name)


def test_load_weights_into_the_books_jena_models():
    cases = {"jena_gru_stacked": [RecurrentSpec("gru", 6, 0.1, 0.5), RecurrentSpec("gru", 8, 0.1, 0.5, "relu")],
             "jena_bigru": [RecurrentSpec("gru", 6, bidirectional=True)],
             "jena_lstm_stacked_seq": [RecurrentSpec("lstm", 6), RecurrentSpec("lstm", 6)]}
    for name, specs in cases.items():
        model = RecurrentRegressor(14, specs).eval()
        sk.load_weights(model, FIXTURES / f"{name}.keras")
        with torch.no_grad():
            got = model(_inputs(name)).unsqueeze(-1)
        assert_close(got, _keras_output(name), msg=name)


def test_load_weights_fills_a_two_layer_module_from_two_keras_layers():
    lstm = seqtorch.LSTM(14, 6, num_layers=2, batch_first=True)
    head = torch.nn.Linear(6, 1)
    sk.load_weights(torch.nn.ModuleList([lstm, head]), FIXTURES / "jena_lstm_stacked_seq.keras")
    with torch.no_grad():
        _, (h_n, _) = lstm(_inputs("jena_lstm_stacked_seq"))
        got = head(h_n[-1])
    assert_close(got, _keras_output("jena_lstm_stacked_seq"))


def test_load_weights_from_a_keras3_weights_file_with_a_bidirectional(tmp_path):
    with zipfile.ZipFile(FIXTURES / "imdb_bilstm.keras") as archive:
        (tmp_path / "bilstm.weights.h5").write_bytes(archive.read("model.weights.h5"))
    embedding = torch.nn.Embedding(50, 8)
    lstm = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)  # torch.nn's own layer takes them too
    head = torch.nn.Linear(12, 1)
    sk.load_weights(torch.nn.Sequential(embedding, lstm, head), tmp_path / "bilstm.weights.h5")
    with torch.no_grad():
        _, (h_n, _) = lstm(embedding(_inputs("imdb_bilstm").long()))
        got = torch.sigmoid(head(torch.cat([h_n[0], h_n[1]], dim=-1)))
    assert_close(got, _keras_output("imdb_bilstm"))


@pytest.mark.parametrize("backend", ["reference"] + [b for b in seqtorch.available_backends() if b == "cpu_fused"])
def test_every_cpu_backend_reproduces_keras(backend):
    for file_name in MODEL_FILES:
        name = _model_name(file_name)
        model = sk.load_model(FIXTURES / file_name, backend=backend if "hard_sigmoid" not in name else "auto")
        with torch.no_grad():
            got = model(_inputs(name))
        assert_close(got, _keras_output(name), msg=f"{file_name} on {backend}")


def test_gru_kernel_is_transposed_with_its_z_and_r_blocks_swapped(tmp_path):
    with zipfile.ZipFile(FIXTURES / "jena_gru.keras") as archive:
        raw = archive.read("model.weights.h5")
    (tmp_path / "gru.weights.h5").write_bytes(raw)
    with h5py.File(io.BytesIO(raw), "r") as f:
        kernel = f["layers/gru/cell/vars/0"][()]  # (14, 18): blocks z, r, h
    module = seqtorch.GRU(14, 6, batch_first=True)
    sk.load_weights(torch.nn.ModuleList([module, torch.nn.Linear(6, 1)]), tmp_path / "gru.weights.h5")
    z, r, h = np.split(kernel, 3, axis=1)
    assert np.array_equal(module.weight_ih_l0.detach().numpy(), np.concatenate([r, z, h], axis=1).T)
