"""Keras' masking and stateful layers, imported: legacy HDF5 files written with h5py in Keras 2's layout,
against Keras' equations in numpy (tests/support/keras_numpy.py, which follows keras.src.backend's rnn for masks).

``Embedding(mask_zero=True)``: the ids 0 are padding, skipped by the recurrent layers after it (their state
carries over; a lone layer's output there repeats its last one, a Bidirectional's is zero), the mask passed on
through layers that return sequences, Dense and Dropout. ``stateful=True``: a layer's state carries from one
call to the next until ``reset_states()``.
"""

import numpy as np
import pytest
import torch

import seqtorch.keras as sk
from conftest import assert_close
from support import keras_numpy as kn
from support.keras_files import (keras2_bidirectional, keras2_dense, keras2_embedding, keras2_flatten, keras2_rnn,
                                 rnn_weight_names, uniform, write_legacy_h5)

B, T, F, V, H = 4, 8, 5, 20, 6
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
NUMPY = {"SimpleRNN": kn.simple_rnn, "LSTM": kn.lstm, "GRU": kn.gru}


def _arrays(rng, class_name, inputs, units):
    width = GATES[class_name] * units
    bias = uniform(rng, 2, width) if class_name == "GRU" else uniform(rng, width)
    return [uniform(rng, inputs, width), uniform(rng, units, width), bias]


def _ids(rng):
    """Word ids with Keras' pre-padding (zeros first, pad_sequences' default), a row with a zero in the middle,
    a row with none."""
    ids = rng.integers(1, V, size=(B, T))
    ids[0, :3] = 0
    ids[1, :5] = 0
    ids[2, 4] = 0
    return ids


def _load(path, ids):
    model = sk.load_model(path).double()
    with torch.no_grad():
        return model, model(torch.from_numpy(ids))


@pytest.mark.parametrize("class_name", ["SimpleRNN", "LSTM", "GRU"])
def test_mask_zero_before_a_recurrent_layer_skips_the_padding(tmp_path, class_name):
    rng = np.random.default_rng(0)
    table = uniform(rng, V, F)
    rnn = _arrays(rng, class_name, F, H)
    head = [uniform(rng, H, 1), uniform(rng, 1)]
    path = write_legacy_h5(tmp_path / "m.h5", [
        keras2_embedding("embedding", V, F, mask_zero=True), keras2_rnn(class_name, "rnn", H),
        keras2_dense("dense", 1, "sigmoid")],
        {"embedding": [("embedding/embeddings:0", table)], "rnn": list(zip(rnn_weight_names(class_name, "rnn"), rnn)),
         "dense": list(zip(["dense/kernel:0", "dense/bias:0"], head))})
    ids = _ids(rng)
    _, got = _load(path, ids)
    hidden = NUMPY[class_name](kn.embedding(ids, table), *rnn, mask=ids != 0)
    expected = kn.dense(hidden, *head, activation="sigmoid")
    assert_close(got, torch.from_numpy(expected))
    # and the left padding no longer reaches the layer: each review alone, unpadded, gives the same
    for b in range(B):
        alone = NUMPY[class_name](kn.embedding(ids[b:b + 1, ids[b] != 0], table), *rnn)
        assert_close(torch.from_numpy(kn.dense(alone, *head, activation="sigmoid")[0]), got[b])


def test_the_mask_passes_through_layers_that_return_sequences(tmp_path):
    """GRU(return_sequences) -> LSTM(return_sequences) -> Dense over time: the lone layers' masked outputs
    repeat their last output, as Keras gives them."""
    rng = np.random.default_rng(1)
    table = uniform(rng, V, F)
    gru, lstm = _arrays(rng, "GRU", F, H), _arrays(rng, "LSTM", H, H)
    head = [uniform(rng, H, 2), uniform(rng, 2)]
    path = write_legacy_h5(tmp_path / "m.h5", [
        keras2_embedding("embedding", V, F, mask_zero=True), keras2_rnn("GRU", "gru", H, return_sequences=True),
        keras2_rnn("LSTM", "lstm", H, return_sequences=True), keras2_dense("dense", 2)],
        {"embedding": [("embedding/embeddings:0", table)], "gru": list(zip(rnn_weight_names("GRU", "gru"), gru)),
         "lstm": list(zip(rnn_weight_names("LSTM", "lstm"), lstm)),
         "dense": list(zip(["dense/kernel:0", "dense/bias:0"], head))})
    ids = _ids(rng)
    _, got = _load(path, ids)
    mask = ids != 0
    hidden = kn.gru(kn.embedding(ids, table), *gru, return_sequences=True, mask=mask)
    hidden = kn.lstm(hidden, *lstm, return_sequences=True, mask=mask)
    assert_close(got, torch.from_numpy(kn.dense(hidden, *head)))


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
def test_masked_bidirectional_and_go_backwards(tmp_path, return_sequences, go_backwards):
    rng = np.random.default_rng(2)
    table = uniform(rng, V, F)
    forward, backward, single = (_arrays(rng, "LSTM", F, H) for _ in range(3))
    inner = keras2_rnn("LSTM", "lstm", H, return_sequences=return_sequences)
    lone = keras2_rnn("LSTM", "lone", H, return_sequences=return_sequences, go_backwards=go_backwards)
    names = rnn_weight_names("LSTM", "forward_lstm") + rnn_weight_names("LSTM", "backward_lstm")
    path = write_legacy_h5(tmp_path / "m.h5", [
        keras2_embedding("embedding", V, F, mask_zero=True), keras2_bidirectional("bidirectional", inner)],
        {"embedding": [("embedding/embeddings:0", table)],
         "bidirectional": [(f"bidirectional/{n}", a) for n, a in zip(names, forward + backward)]})
    lone_path = write_legacy_h5(tmp_path / "lone.h5", [keras2_embedding("embedding", V, F, mask_zero=True), lone],
                                {"embedding": [("embedding/embeddings:0", table)],
                                 "lone": list(zip(rnn_weight_names("LSTM", "lone"), single))})
    ids = _ids(rng)
    mask = ids != 0
    x = kn.embedding(ids, table)
    _, got = _load(path, ids)
    expected = kn.bidirectional(kn.lstm, x, forward, backward, return_sequences=return_sequences, mask=mask)
    assert_close(got, torch.from_numpy(np.ascontiguousarray(expected)))
    _, got = _load(lone_path, ids)
    expected = kn.lstm(x, *single, return_sequences=return_sequences, go_backwards=go_backwards, mask=mask)
    assert_close(got, torch.from_numpy(np.ascontiguousarray(expected)))


def test_a_flatten_after_a_mask_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    table = uniform(rng, V, F)
    rnn = _arrays(rng, "SimpleRNN", F, H)
    path = write_legacy_h5(tmp_path / "m.h5", [
        keras2_embedding("embedding", V, F, input_length=T, mask_zero=True),
        keras2_rnn("SimpleRNN", "rnn", H, return_sequences=True), keras2_flatten("flatten")],
        {"embedding": [("embedding/embeddings:0", table)],
         "rnn": list(zip(rnn_weight_names("SimpleRNN", "rnn"), rnn))})
    with pytest.raises(sk.UnsupportedKerasError, match="Flatten does not support masking"):
        sk.load_model(path)


def test_a_stateful_layer_carries_its_state_across_calls(tmp_path):
    rng = np.random.default_rng(4)
    rnn = _arrays(rng, "GRU", F, H)
    path = write_legacy_h5(tmp_path / "m.h5", [
        keras2_rnn("GRU", "gru", H, stateful=True, return_sequences=True, batch_input_shape=[B, None, F])],
        {"gru": list(zip(rnn_weight_names("GRU", "gru"), rnn))})
    x = rng.standard_normal((B, T, F))
    model = sk.load_model(path).double()
    assert model.layers[0].stateful
    with torch.no_grad():
        first = model(torch.from_numpy(x[:, :3]))
        second = model(torch.from_numpy(x[:, 3:]))
    expected = kn.gru(x, *rnn, return_sequences=True)
    assert_close(torch.cat([first, second], dim=1), torch.from_numpy(expected))
    model.layers[0].reset_states()
    with torch.no_grad():
        again = model(torch.from_numpy(x[:, 3:]))
    assert_close(again, torch.from_numpy(kn.gru(x[:, 3:], *rnn, return_sequences=True)))
