"""Keras files for the import tests, written with h5py/zipfile in Keras' own on-disk layouts.

* ``write_legacy_h5``: Keras 2's ``model.save("x.h5")`` (attributes ``model_config``, ``keras_version``,
  group ``model_weights`` with ``layer_names``; one group per layer with ``weight_names`` such as
  ``lstm/lstm_cell/kernel:0``) or, with ``weights_only``, its ``save_weights("x.h5")`` (the same groups
  at the root).
* ``keras2_*``: layer entries of a Keras 2 (tf.keras 2.13) model config, every option Keras 2 writes.
* ``rewrite_archive``: a copy of a real .keras archive with its config edited (for the error cases).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
_CELLS = {"SimpleRNN": "simple_rnn_cell", "LSTM": "lstm_cell", "GRU": "gru_cell"}
_INIT = {"class_name": "GlorotUniform", "config": {"seed": None}}


def keras2_rnn(class_name: str, name: str, units: int, **options) -> dict:
    config = {"name": name, "trainable": True, "dtype": "float32", "return_sequences": False,
              "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
              "time_major": False, "units": units, "activation": "tanh", "use_bias": True,
              "kernel_initializer": _INIT, "recurrent_initializer": {"class_name": "Orthogonal",
                                                                     "config": {"gain": 1.0, "seed": None}},
              "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
              "recurrent_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
              "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None,
              "dropout": 0.0, "recurrent_dropout": 0.0}
    if class_name != "SimpleRNN":
        config.update(recurrent_activation="sigmoid", implementation=2)
    if class_name == "LSTM":
        config["unit_forget_bias"] = True
    if class_name == "GRU":
        config["reset_after"] = True
    config.update(options)
    return {"class_name": class_name, "config": config}


def keras2_bidirectional(name: str, layer: dict, merge_mode: str | None = "concat") -> dict:
    return {"class_name": "Bidirectional", "config": {"name": name, "trainable": True, "dtype": "float32",
                                                      "layer": layer, "merge_mode": merge_mode}}


def keras2_dense(name: str, units: int, activation: str = "linear", use_bias: bool = True) -> dict:
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units, "activation": activation,
        "use_bias": use_bias, "kernel_initializer": _INIT, "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": None, "bias_constraint": None}}


def keras2_embedding(name: str, input_dim: int, output_dim: int, input_length: int | None = None,
                     mask_zero: bool = False) -> dict:
    return {"class_name": "Embedding", "config": {
        "name": name, "trainable": True, "batch_input_shape": [None, input_length], "dtype": "float32",
        "input_dim": input_dim, "output_dim": output_dim,
        "embeddings_initializer": {"class_name": "RandomUniform", "config": {"minval": -0.05, "maxval": 0.05}},
        "embeddings_regularizer": None, "activity_regularizer": None, "embeddings_constraint": None,
        "mask_zero": mask_zero, "input_length": input_length}}


def keras2_dropout(name: str, rate: float) -> dict:
    return {"class_name": "Dropout", "config": {"name": name, "trainable": True, "dtype": "float32",
                                                "rate": rate, "noise_shape": None, "seed": None}}


def keras2_flatten(name: str) -> dict:
    return {"class_name": "Flatten", "config": {"name": name, "trainable": True, "dtype": "float32",
                                                "data_format": "channels_last"}}


def keras2_input(name: str, shape: list, dtype: str = "float32") -> dict:
    return {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "dtype": dtype, "sparse": False,
                                                   "ragged": False, "name": name}}


def rnn_weight_names(class_name: str, prefix: str, use_bias: bool = True) -> list[str]:
    """tf.keras 2's variable names of a recurrent layer: ``<prefix>/lstm_cell/kernel:0``, ..."""
    names = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    return [f"{prefix}/{_CELLS[class_name]}/{n}:0" for n in names]


def write_legacy_h5(path, layers: list[dict], weights: dict[str, list[tuple[str, np.ndarray]]], *,
                    keras_version: str | None = "2.13.1", weights_only: bool = False,
                    list_config: bool = False) -> Path:
    """A Keras 2 HDF5 file. ``layers``: the Sequential's layer entries (an InputLayer first or not);
    ``weights``: per layer name, its ``(weight_name, array)`` in the layer's weight order.
    ``list_config``: Keras <= 2.2.2's config, the layer list itself."""
    body = layers if list_config else {"name": "sequential", "layers": layers}
    config = {"class_name": "Sequential", "config": body, "backend": "tensorflow"}
    names = [entry["config"]["name"] for entry in layers if entry["class_name"] != "InputLayer"]
    with h5py.File(path, "w") as f:
        if weights_only:
            group = f
        else:
            f.attrs["model_config"] = json.dumps(config).encode("utf8")
            group = f.create_group("model_weights")
        if keras_version is not None:
            for node in {id(f): f, id(group): group}.values():
                node.attrs["keras_version"] = keras_version.encode("utf8")
                node.attrs["backend"] = b"tensorflow"
        group.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
        for name in names:
            layer_group = group.create_group(name)
            pairs = weights.get(name, [])
            layer_group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in pairs])
            for weight_name, array in pairs:
                layer_group.create_dataset(weight_name, data=array)
    return Path(path)


def rewrite_archive(source: Path, target: Path, edit=None, *, metadata: dict | None = None) -> Path:
    """A copy of the .keras archive ``source`` whose config.json is ``edit(config)`` (edit works in place)
    and whose metadata.json is ``metadata`` (``{}``: no metadata.json at all; None: unchanged)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if edit is not None:
        config = json.loads(members["config.json"])
        edit(config)
        members["config.json"] = json.dumps(config).encode("utf8")
    if metadata == {}:
        del members["metadata.json"]
    elif metadata is not None:
        members["metadata.json"] = json.dumps(metadata).encode("utf8")
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def layer_config(config: dict, class_name: str) -> dict:
    """The config dict of the first layer of ``class_name`` in a .keras model config (to edit)."""
    return next(e for e in config["config"]["layers"] if e["class_name"] == class_name)["config"]


def uniform(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Weights as the fixtures draw them: U(-0.5, 0.5), float32."""
    return rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
