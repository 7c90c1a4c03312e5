"""The Keras importer's errors: what it does not translate, weights that do not fit, files it cannot read.
Each names what is wrong (layer, class, option and value; both shapes; the path)."""

import re
import sys
import zipfile

import numpy as np
import pytest
import torch

import seqtorch
import seqtorch.keras as sk
from support.keras_files import (FIXTURES, keras2_input, keras2_rnn, layer_config, rewrite_archive, rnn_weight_names,
                                 uniform, write_legacy_h5)
from seqtorch.models.imdb import RNNClassifier

LSTM_KERAS = FIXTURES / "imdb_lstm.keras"


def _edited(tmp_path, edit, source=LSTM_KERAS):
    return rewrite_archive(source, tmp_path / "edited.keras", edit)


def _set(class_name, key, value):
    def edit(config):
        layer_config(config, class_name)[key] = value
    return edit


# -- what the importer does not translate ---------------------------------------------------------------

def test_unknown_layer_class_is_named(tmp_path):
    def edit(config):
        config["config"]["layers"][2]["class_name"] = "Conv1D"
    with pytest.raises(sk.UnsupportedKerasError, match=r"layer 'lstm' \(Conv1D\): layer class 'Conv1D' is not supported"):
        sk.load_model(_edited(tmp_path, edit))


@pytest.mark.parametrize("class_name, key, value, message", [
    ("LSTM", "time_major", True, r"option time_major=True is not supported"),  # (stateful=True imports now)
    ("LSTM", "return_state", True, r"option return_state=True"),
    ("LSTM", "recurrent_activation", "softsign", r"option recurrent_activation='softsign' is not supported"),
    ("LSTM", "activation", "selu", r"option activation='selu'"),
    ("LSTM", "kernel_regularizer", {"class_name": "L2", "config": {"l2": 0.01}}, r"option kernel_regularizer="),
    ("LSTM", "dropout", 1.0, r"option dropout=1.0 is not supported \(expected a number in \[0.0, 1.0\)\)"),
    ("LSTM", "some_future_option", 3, r"unknown option some_future_option=3"),
    ("Embedding", "lora_rank", 4, r"layer 'embedding_1' \(Embedding\): option lora_rank=4"),  # (mask_zero imports)
    ("Dense", "activation", "gelu", r"layer 'dense_1' \(Dense\): option activation='gelu'"),
    ("Dense", "dtype", "mixed_float16", r"option dtype='mixed_float16' .*float32"),
])
def test_unsupported_option_names_layer_class_option_and_value(tmp_path, class_name, key, value, message):
    with pytest.raises(sk.UnsupportedKerasError, match=message):
        sk.load_model(_edited(tmp_path, _set(class_name, key, value)))


@pytest.mark.parametrize("class_name, key, value, expected", [
    ("LSTM", "units", "six", "an int"),
    ("LSTM", "return_sequences", "yes", "true or false"),
    ("LSTM", "dropout", [0.1], "a number"),
    ("LSTM", "activation", 3, "a name"),
    ("LSTM", "time_major", 0, "bool"),
])
def test_a_value_of_a_type_keras_never_writes_is_a_damaged_file(tmp_path, class_name, key, value, expected):
    with pytest.raises(sk.KerasFileError) as info:
        sk.load_model(_edited(tmp_path, _set(class_name, key, value)))
    assert not isinstance(info.value, sk.UnsupportedKerasError)
    assert f"option {key}={value!r} is not a value Keras writes there (expected {expected})" in str(info.value)
    assert str(tmp_path / "edited.keras") in str(info.value)


def test_every_importer_error_is_a_keras_file_error():
    assert issubclass(sk.UnsupportedKerasError, sk.KerasFileError)
    assert issubclass(sk.WeightMismatchError, sk.KerasFileError)
    assert issubclass(sk.KerasFileError, ValueError)


def test_bidirectional_merge_mode_none_only_as_last_layer(tmp_path):
    def edit(config):
        layer_config(config, "Bidirectional")["merge_mode"] = None
    with pytest.raises(sk.UnsupportedKerasError, match=r"'bidirectional' \(Bidirectional\): merge_mode=None .* last"):
        sk.load_model(_edited(tmp_path, edit, FIXTURES / "imdb_bilstm.keras"))


def test_bidirectional_with_a_backward_layer_that_is_not_a_mirror(tmp_path):
    def edit(config):
        layer_config(config, "Bidirectional")["backward_layer"]["config"]["activation"] = "relu"
    with pytest.raises(sk.UnsupportedKerasError, match=r"option backward_layer.activation='relu' .*mirror.*'tanh'"):
        sk.load_model(_edited(tmp_path, edit, FIXTURES / "imdb_bilstm.keras"))


def test_functional_model_is_refused_with_the_way_out(tmp_path):
    def edit(config):
        config["class_name"] = "Functional"
    with pytest.raises(sk.UnsupportedKerasError, match=r"'Functional' model; only Sequential .* load_weights"):
        sk.load_model(_edited(tmp_path, edit))


def test_hard_sigmoid_in_a_file_that_records_no_keras_version(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [uniform(rng, 5, 24), uniform(rng, 6, 24), uniform(rng, 24)]
    path = write_legacy_h5(tmp_path / "old.h5", [keras2_input("x", [None, None, 5]),
                                                 keras2_rnn("LSTM", "lstm", 6, recurrent_activation="hard_sigmoid")],
                           {"lstm": list(zip(rnn_weight_names("LSTM", "lstm"), arrays))}, keras_version=None)
    with pytest.raises(sk.UnsupportedKerasError, match=r"recurrent_activation='hard_sigmoid'.*0\.2 x \+ 0\.5.*x / 6"):
        sk.load_model(path)


def test_keras_1_file_is_refused(tmp_path):
    path = write_legacy_h5(tmp_path / "k1.h5", [keras2_input("x", [None, None, 5])], {}, keras_version="1.2.2")
    with pytest.raises(sk.UnsupportedKerasError, match=r"Keras 1\.2\.2"):
        sk.load_model(path)


# -- weights that do not fit the module -----------------------------------------------------------------

def test_load_weights_shape_mismatch_names_both_sides():
    model = RNNClassifier("lstm", num_words=50, embed_dim=8, hidden=7)
    with pytest.raises(sk.WeightMismatchError, match=re.escape(
            "RNNClassifier.rnn (layer 0) [LSTM]: Keras kernel has shape (8, 24), but LSTM.weight_ih_l0 (28, 8) takes a kernel "
            "of shape (8, 28)")):
        sk.load_weights(model, FIXTURES / "imdb_lstm.weights.h5")


def test_failed_load_weights_leaves_the_module_as_it_was():
    model = RNNClassifier("lstm", num_words=50, embed_dim=8, hidden=7)  # the Embedding fits, the LSTM not
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sk.WeightMismatchError):
        sk.load_weights(model, FIXTURES / "imdb_lstm.keras")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_load_weights_embedding_mismatch():
    model = RNNClassifier("lstm", num_words=60, embed_dim=8, hidden=6)
    with pytest.raises(sk.WeightMismatchError, match=r"embeddings has shape \(50, 8\), but Embedding.weight \(60, 8\) "
                                                     r"takes embeddings of shape \(60, 8\)"):
        sk.load_weights(model, FIXTURES / "imdb_lstm.keras")


def test_load_weights_layer_kinds_and_counts():
    with pytest.raises(sk.WeightMismatchError, match=r"Keras layer LSTM meets RNNClassifier.rnn \(layer 0\) \[GRU\]"):
        sk.load_weights(RNNClassifier("gru", 50, 8, 6), LSTM_KERAS)
    with pytest.raises(sk.WeightMismatchError, match=r"the file has 3 layers with weights .* the module 2"):
        sk.load_weights(torch.nn.ModuleList([torch.nn.Embedding(50, 8), seqtorch.LSTM(8, 6)]), LSTM_KERAS)
    # A weights-only Keras 3 file: the module's classes decide the paths; one the file lacks is named.
    with pytest.raises(sk.WeightMismatchError, match=r"no weights for the GRU layer expected at layers/gru/cell/vars"):
        sk.load_weights(RNNClassifier("gru", 50, 8, 6), FIXTURES / "imdb_lstm.weights.h5")
    with pytest.raises(sk.WeightMismatchError, match=r"weights at \['layers/dense'\] that no layer of the model takes"):
        sk.load_weights(torch.nn.ModuleList([torch.nn.Embedding(50, 8), seqtorch.LSTM(8, 6)]),
                        FIXTURES / "imdb_lstm.weights.h5")


def test_load_weights_gru_flavour_and_options_are_checked_with_a_config():
    reset_before = FIXTURES / "jena_gru_reset_before.keras"
    module = torch.nn.ModuleList([seqtorch.GRU(14, 6), torch.nn.Linear(6, 1)])
    with pytest.raises(sk.WeightMismatchError, match=r"Keras has reset_after=False, .* has reset_after=True"):
        sk.load_weights(module, reset_before)
    hard = FIXTURES / "imdb_lstm_hard_sigmoid.keras"
    keras2_formula = RNNClassifier("lstm", 50, 8, 6)
    keras2_formula.rnn.recurrent_activation = "hard_sigmoid"
    with pytest.raises(sk.WeightMismatchError,
                       match=r"recurrent_activation='hardsigmoid', .* recurrent_activation='hard_sigmoid_keras2'"):
        sk.load_weights(keras2_formula, hard)


def test_load_weights_gru_bias_shape_hint_without_a_config(tmp_path):
    with zipfile.ZipFile(FIXTURES / "jena_gru.keras") as archive:  # reset_after=True: bias (2, 18)
        (tmp_path / "gru.weights.h5").write_bytes(archive.read("model.weights.h5"))
    module = torch.nn.ModuleList([seqtorch.GRU(14, 6, reset_after=False), torch.nn.Linear(6, 1)])
    with pytest.raises(sk.WeightMismatchError, match=r"bias has shape \(2, 18\).* takes a bias of shape \(18,\).*"
                                                     r"reset_after=True"):
        sk.load_weights(module, tmp_path / "gru.weights.h5")


def test_load_weights_use_bias_mismatch():
    with pytest.raises(sk.WeightMismatchError, match=r"Keras has use_bias=True, .* has bias=False"):
        sk.load_weights(torch.nn.ModuleList([torch.nn.Embedding(50, 8), seqtorch.LSTM(8, 6, bias=False),
                                             torch.nn.Linear(6, 1)]), LSTM_KERAS)


def test_model_input_is_checked():
    ids_model = sk.load_model(LSTM_KERAS)
    with pytest.raises(ValueError, match=r"reads integer word ids \(B, T\); got dtype torch.float32"):
        ids_model(torch.zeros(2, 7))
    series_model = sk.load_model(FIXTURES / "jena_gru.keras")
    with pytest.raises(ValueError, match=r"expected input of shape \(B, T, 14\), got \(2, 7, 13\)"):
        series_model(torch.zeros(2, 7, 13))


# -- files that cannot be read --------------------------------------------------------------------------

def _truncated(tmp_path, source, name, keep=0.5):
    data = source.read_bytes()
    target = tmp_path / name
    target.write_bytes(data[: int(len(data) * keep)])
    return target


@pytest.mark.parametrize("source", ["imdb_lstm.keras", "jena_gru_reset_before.h5", "imdb_lstm.weights.h5"])
def test_truncated_file_names_the_path(tmp_path, source):
    path = _truncated(tmp_path, FIXTURES / source, "cut_" + source)
    with pytest.raises(sk.KerasFileError, match=re.escape(str(path)) + r".*(truncated|corrupt)"):
        if source.endswith(".weights.h5"):
            sk.load_weights(RNNClassifier("lstm", 50, 8, 6), path)
        else:
            sk.load_model(path)


def test_corrupt_archive_member_names_the_path(tmp_path):
    data = bytearray(LSTM_KERAS.read_bytes())
    with zipfile.ZipFile(LSTM_KERAS) as archive:
        info = archive.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    data[start:start + 64] = bytes(64)  # zero bytes inside the stored weights: the CRC no longer matches
    path = tmp_path / "corrupt.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(sk.KerasFileError, match=re.escape(str(path)) + r".*corrupt"):
        sk.load_model(path)


def test_not_a_keras_file(tmp_path):
    for name, content in (("empty.h5", b""), ("text.keras", b"hello, not a model"), ("zip.keras", None)):
        path = tmp_path / name
        if content is None:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("readme.txt", "no config")
        else:
            path.write_bytes(content)
        with pytest.raises(sk.KerasFileError, match=re.escape(str(path))):
            sk.load_model(path)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        sk.load_model(tmp_path / "missing.keras")


def test_hdf5_in_no_keras_layout(tmp_path):
    import h5py

    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(sk.KerasFileError, match=re.escape(str(path)) + r": an HDF5 file in none of Keras' layouts"):
        sk.load_model(path)


def test_without_h5py_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'seqtorch\[keras\]'"):
        sk.load_model(LSTM_KERAS)
