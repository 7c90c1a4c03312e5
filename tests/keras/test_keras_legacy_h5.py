"""Legacy HDF5 files in Keras 2's layout, written here with h5py, against Keras' equations in numpy.

Each file is built from random weights U(-0.5, 0.5); the expected output comes from tests/support/keras_numpy.py
(Keras' conventions, no torch), so the loader is never its own reference. The imported model runs in
float64 (``.double()``) on the float32 weights the file holds, and is held to the float64 tolerance.
"""

import numpy as np
import pytest
import torch

import seqtorch
import seqtorch.keras as sk
from conftest import assert_close
from support import keras_numpy as kn
from support.keras_files import (keras2_bidirectional, keras2_dense, keras2_dropout, keras2_embedding, keras2_flatten,
                                 keras2_input, keras2_rnn, rnn_weight_names, uniform, write_legacy_h5)

B, T, F, V = 3, 7, 5, 20
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
NUMPY = {"SimpleRNN": kn.simple_rnn, "LSTM": kn.lstm, "GRU": kn.gru}


def _rnn_arrays(rng, class_name, inputs, units, *, use_bias=True, reset_after=True):
    """kernel (I, G*H), recurrent_kernel (H, G*H) and the bias Keras has for these options."""
    width = GATES[class_name] * units
    arrays = [uniform(rng, inputs, width), uniform(rng, units, width)]
    if use_bias:
        arrays.append(uniform(rng, 2, width) if class_name == "GRU" and reset_after else uniform(rng, width))
    return arrays


def _run(path, x):
    """The imported model's output in float64 (a tuple stays a tuple)."""
    model = sk.load_model(path).double()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return model, out


def _close(got, expected, msg=""):
    assert_close(got, torch.from_numpy(np.ascontiguousarray(expected)), msg=msg)


def _features(rng):
    return rng.standard_normal((B, T, F))


def _ids(rng):
    return rng.integers(0, V, size=(B, T))


@pytest.mark.parametrize("keras_version, formula", [("2.13.1", "hard_sigmoid_keras2"), ("2.2.4", "hard_sigmoid_keras2"),
                                                    ("3.0.0", "hard_sigmoid_keras3")])
def test_lstm_hard_sigmoid_without_bias_follows_the_version_that_wrote_it(tmp_path, keras_version, formula):
    rng = np.random.default_rng(0)
    lstm = _rnn_arrays(rng, "LSTM", F, 6, use_bias=False)
    head = [uniform(rng, 6, 1), uniform(rng, 1)]
    path = write_legacy_h5(tmp_path / "lstm.h5", [
        keras2_input("x", [None, None, F]),
        keras2_rnn("LSTM", "lstm", 6, recurrent_activation="hard_sigmoid", use_bias=False),
        keras2_dense("dense", 1, "sigmoid")],
        {"lstm": list(zip(rnn_weight_names("LSTM", "lstm", use_bias=False), lstm)),
         "dense": list(zip(["dense/kernel:0", "dense/bias:0"], head))}, keras_version=keras_version)
    x = _features(rng) * 3  # large enough that the two hard sigmoids part
    model, got = _run(path, x)
    rnn = model.layers[0].rnn
    assert rnn.recurrent_activation == ("hard_sigmoid_keras2" if formula.endswith("keras2") else "hardsigmoid")
    assert not rnn.bias and not hasattr(rnn, "bias_ih_l0")
    expected = kn.dense(kn.lstm(x, *lstm, recurrent_activation=formula), *head, activation="sigmoid")
    _close(got, expected)
    other = "hard_sigmoid_keras3" if formula.endswith("keras2") else "hard_sigmoid_keras2"
    assert np.abs(kn.lstm(x, *lstm, recurrent_activation=other) - kn.lstm(x, *lstm, recurrent_activation=formula)).max() > 1e-3


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("class_name, reset_after", [("LSTM", True), ("GRU", False), ("GRU", True), ("SimpleRNN", True)])
def test_bidirectional_every_merge_mode(tmp_path, class_name, reset_after, merge_mode, return_sequences):
    rng = np.random.default_rng(1)
    table = uniform(rng, V, F)
    options = {"reset_after": reset_after} if class_name == "GRU" else {}
    forward = _rnn_arrays(rng, class_name, F, 4, reset_after=reset_after)
    backward = _rnn_arrays(rng, class_name, F, 4, reset_after=reset_after)
    inner = keras2_rnn(class_name, "rnn", 4, return_sequences=return_sequences, **options)
    layers = [keras2_embedding("embedding", V, F), keras2_bidirectional("bidirectional", inner, merge_mode)]
    cell = rnn_weight_names(class_name, "x")[0].split("/")[1]
    names = [f"bidirectional/{d}_rnn/{cell}/{n}:0" for d in ("forward", "backward")
             for n in ("kernel", "recurrent_kernel", "bias")]
    weights = {"embedding": [("embedding/embeddings:0", table)],
               "bidirectional": list(zip(names, forward + backward))}
    head = [uniform(rng, 8 if merge_mode == "concat" else 4, 2), uniform(rng, 2)]
    if merge_mode is not None:  # merge_mode None returns two tensors: only as the last layer
        layers.append(keras2_dense("dense", 2, "tanh"))
        weights["dense"] = list(zip(["dense/kernel:0", "dense/bias:0"], head))
    path = write_legacy_h5(tmp_path / "bi.h5", layers, weights)
    ids = _ids(rng)
    _, got = _run(path, ids)
    layer = NUMPY[class_name]
    expected = kn.bidirectional(layer, kn.embedding(ids, table), forward, backward, merge_mode=merge_mode,
                                return_sequences=return_sequences, **options)
    if merge_mode is None:
        assert isinstance(got, tuple) and len(got) == 2
        _close(got[0], expected[0], "forward")
        _close(got[1], expected[1], "backward")
    else:
        _close(got, kn.dense(expected, *head, activation="tanh"))


def test_bidirectional_file_listing_the_backward_weights_first(tmp_path):
    # The loader goes by the names' backward_ part, not by the order the file lists them in.
    rng = np.random.default_rng(2)
    forward, backward = _rnn_arrays(rng, "LSTM", F, 4), _rnn_arrays(rng, "LSTM", F, 4)
    names = [f"bidirectional/{d}_lstm/lstm_cell/{n}:0" for d in ("backward", "forward")
             for n in ("kernel", "recurrent_kernel", "bias")]
    path = write_legacy_h5(tmp_path / "bi.h5", [
        keras2_input("x", [None, None, F]), keras2_bidirectional("bidirectional", keras2_rnn("LSTM", "lstm", 4))],
        {"bidirectional": list(zip(names, backward + forward))})
    x = _features(rng)
    _, got = _run(path, x)
    _close(got, kn.bidirectional(kn.lstm, x, forward, backward))


def test_go_backwards_stacked_flatten_softmax(tmp_path):
    rng = np.random.default_rng(3)
    gru = _rnn_arrays(rng, "GRU", F, 6)
    rnn = _rnn_arrays(rng, "SimpleRNN", 6, 4)
    head = [uniform(rng, T * 4, 3), uniform(rng, 3)]
    path = write_legacy_h5(tmp_path / "backwards.h5", [
        keras2_input("x", [None, T, F]),
        keras2_rnn("GRU", "gru", 6, go_backwards=True, return_sequences=True),
        keras2_rnn("SimpleRNN", "simple_rnn", 4, activation="relu", go_backwards=True, return_sequences=True),
        keras2_flatten("flatten"), keras2_dense("dense", 3, "softmax")],
        {"gru": list(zip(rnn_weight_names("GRU", "gru"), gru)),
         "simple_rnn": list(zip(rnn_weight_names("SimpleRNN", "simple_rnn"), rnn)),
         "dense": list(zip(["dense/kernel:0", "dense/bias:0"], head))})
    x = _features(rng)
    _, got = _run(path, x)
    hidden = kn.gru(x, *gru, go_backwards=True, return_sequences=True)
    hidden = kn.simple_rnn(hidden, *rnn, activation="relu", go_backwards=True, return_sequences=True)
    _close(got, kn.dense(kn.flatten(hidden), *head, activation="softmax"))


def test_keras_2_2_layout_list_config_and_gru_before_reset_after_existed(tmp_path):
    # Keras <= 2.2.2 wrote the Sequential's config as the layer list, names like lstm_1/kernel:0, and a GRU
    # config without reset_after (older than the option: the reset-before GRU with one bias).
    rng = np.random.default_rng(4)
    table = uniform(rng, V, F)
    gru = _rnn_arrays(rng, "GRU", F, 6, reset_after=False)
    lstm = _rnn_arrays(rng, "LSTM", 6, 5)
    head = [uniform(rng, 5, 1), uniform(rng, 1)]
    gru_entry = keras2_rnn("GRU", "gru_1", 6, return_sequences=True)
    del gru_entry["config"]["reset_after"], gru_entry["config"]["time_major"]
    lstm_entry = keras2_rnn("LSTM", "lstm_1", 5)
    del lstm_entry["config"]["time_major"]
    path = write_legacy_h5(tmp_path / "old.h5", [
        keras2_embedding("embedding_1", V, F, input_length=T), gru_entry, keras2_dropout("dropout_1", 0.3),
        lstm_entry, keras2_dense("dense_1", 1, "sigmoid")],
        {"embedding_1": [("embedding_1/embeddings:0", table)],
         "gru_1": list(zip(["gru_1/kernel:0", "gru_1/recurrent_kernel:0", "gru_1/bias:0"], gru)),
         "lstm_1": list(zip(["lstm_1/kernel:0", "lstm_1/recurrent_kernel:0", "lstm_1/bias:0"], lstm)),
         "dense_1": list(zip(["dense_1/kernel:0", "dense_1/bias:0"], head))},
        keras_version="2.2.4", list_config=True)
    ids = _ids(rng)
    model, got = _run(path, ids)
    assert model.layers[1].rnn.reset_after is False and model.layers[1].rnn.single_bias
    assert isinstance(model.layers[2], torch.nn.Dropout) and model.layers[2].p == 0.3
    hidden = kn.gru(kn.embedding(ids, table), *gru, reset_after=False, return_sequences=True)
    _close(got, kn.dense(kn.lstm(hidden, *lstm), *head, activation="sigmoid"))


@pytest.mark.parametrize("class_name, reset_after", [("SimpleRNN", True), ("GRU", True), ("GRU", False)])
def test_use_bias_false(tmp_path, class_name, reset_after):
    rng = np.random.default_rng(5)
    options = {"reset_after": reset_after} if class_name == "GRU" else {}
    arrays = _rnn_arrays(rng, class_name, F, 6, use_bias=False)
    path = write_legacy_h5(tmp_path / "nobias.h5", [
        keras2_input("x", [None, None, F]), keras2_rnn(class_name, "rnn", 6, use_bias=False, **options)],
        {"rnn": list(zip(rnn_weight_names(class_name, "rnn", use_bias=False), arrays))})
    x = _features(rng)
    _, got = _run(path, x)
    _close(got, NUMPY[class_name](x, *arrays, **options))


@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu", "softmax"])
def test_dense_activations_and_a_dense_without_bias(tmp_path, activation):
    rng = np.random.default_rng(6)
    first = [uniform(rng, F, 4), uniform(rng, 4)]
    second = [uniform(rng, 4, 3)]
    path = write_legacy_h5(tmp_path / "dense.h5", [
        keras2_input("x", [None, F]), keras2_dense("dense", 4, activation),
        keras2_dense("dense_1", 3, "linear", use_bias=False)],
        {"dense": list(zip(["dense/kernel:0", "dense/bias:0"], first)), "dense_1": [("dense_1/kernel:0", second[0])]})
    x = rng.standard_normal((B, F))
    _, got = _run(path, x)
    _close(got, kn.dense(kn.dense(x, *first, activation=activation), *second))


def test_dropouts_become_seqtorch_options_and_trainable_false_freezes(tmp_path):
    rng = np.random.default_rng(7)
    gru = _rnn_arrays(rng, "GRU", F, 6)
    head = [uniform(rng, 6, 1), uniform(rng, 1)]
    dense = keras2_dense("dense", 1)
    dense["config"]["trainable"] = False
    path = write_legacy_h5(tmp_path / "dropout.h5", [
        keras2_input("x", [None, None, F]), keras2_rnn("GRU", "gru", 6, dropout=0.2, recurrent_dropout=0.3), dense],
        {"gru": list(zip(rnn_weight_names("GRU", "gru"), gru)),
         "dense": list(zip(["dense/kernel:0", "dense/bias:0"], head))})
    x = _features(rng)
    model, got = _run(path, x)
    rnn = model.layers[0].rnn
    assert (rnn.input_dropout, rnn.recurrent_dropout) == (0.2, 0.3)
    assert all(p.requires_grad for p in rnn.parameters())
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    _close(got, kn.dense(kn.gru(x, *gru), *head))  # eval mode: Keras' predict, no dropout


def test_weights_only_h5_fills_a_two_layer_seqtorch_gru_by_order(tmp_path):
    rng = np.random.default_rng(8)
    first = _rnn_arrays(rng, "GRU", F, 6, reset_after=False)
    second = _rnn_arrays(rng, "GRU", 6, 6, reset_after=False)
    path = write_legacy_h5(tmp_path / "weights.h5", [
        keras2_input("x", [None, None, F]), keras2_rnn("GRU", "gru", 6, reset_after=False, return_sequences=True),
        keras2_rnn("GRU", "gru_1", 6, reset_after=False)],
        {"gru": list(zip(rnn_weight_names("GRU", "gru"), first)),
         "gru_1": list(zip(rnn_weight_names("GRU", "gru_1"), second))}, weights_only=True)
    module = seqtorch.GRU(F, 6, num_layers=2, batch_first=True, reset_after=False, single_bias=True,
                          dtype=torch.float64)
    sk.load_weights(module, path)
    x = _features(rng)
    with torch.no_grad():
        output, _ = module(torch.from_numpy(x))
    expected = kn.gru(kn.gru(x, *first, reset_after=False, return_sequences=True), *second, reset_after=False,
                      return_sequences=True)
    _close(output, expected)


def test_load_weights_into_torch_nn_lstm(tmp_path):
    rng = np.random.default_rng(9)
    lstm = _rnn_arrays(rng, "LSTM", F, 6)
    path = write_legacy_h5(tmp_path / "lstm.h5", [keras2_input("x", [None, None, F]),
                                                  keras2_rnn("LSTM", "lstm", 6, return_sequences=True)],
                           {"lstm": list(zip(rnn_weight_names("LSTM", "lstm"), lstm))})
    module = torch.nn.LSTM(F, 6, batch_first=True, dtype=torch.float64)
    sk.load_weights(module, path)
    assert torch.equal(module.bias_hh_l0, torch.zeros_like(module.bias_hh_l0))
    x = _features(rng)
    with torch.no_grad():
        output, _ = module(torch.from_numpy(x))
    _close(output, kn.lstm(x, *lstm, return_sequences=True))
