"""Reading a Keras file, whichever of its formats, into one record: config, Keras version, weights.

Formats, told apart by content (not by the file name):

* ``.keras`` (Keras 3, and tf.keras >= 2.12): a zip of ``config.json`` (the model), ``metadata.json``
  (``keras_version``) and ``model.weights.h5`` (Keras 3's weights layout, :mod:`.keras3_layout`).
* ``.weights.h5`` (Keras 3 ``save_weights``): that weights file alone, no config, no version.
* legacy ``.h5`` (Keras 2 ``model.save``, or Keras 3 asked for ``.h5``): HDF5 with the attributes
  ``model_config`` (JSON) and ``keras_version`` and the group ``model_weights`` (:mod:`.legacy_layout`).
* legacy weights ``.h5`` (Keras 2 ``save_weights``): the layers' groups at the root, ``layer_names``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass

from .errors import KerasFileError, UnsupportedKerasError
from .hdf5 import attr_text, open_hdf5
from .keras3_layout import Keras3Weights
from .legacy_layout import LegacyWeights

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class KerasFile:
    """What a Keras file holds.

    Attributes:
        path: the file, as given.
        format: "keras", "weights.h5", "legacy h5" or "legacy weights h5" (the module docstring).
        keras_version: the version that wrote it ("3.15.1"), None where the file does not record it.
        config: the model's config (``{"class_name": "Sequential", "config": {...}}``), None for weights alone.
        weights: the arrays, in the file's layout.
    """

    path: str
    format: str
    keras_version: str | None
    config: dict | None
    weights: Keras3Weights | LegacyWeights


def read_keras_file(path: str | os.PathLike) -> KerasFile:
    """Read ``path`` (any of the formats above). Missing: FileNotFoundError; unreadable, truncated or in
    no Keras layout: :class:`KerasFileError`, naming the path."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras file at {path!r}")
    with open(path, "rb") as handle:
        head = handle.read(len(_HDF5_SIGNATURE))
    if head.startswith(b"PK"):
        return _read_archive(path)
    if head == _HDF5_SIGNATURE:
        return _read_hdf5(path)
    raise KerasFileError(f"{path}: neither a .keras archive (zip) nor an HDF5 file (.h5, .weights.h5); "
                         f"it starts with {head!r}")


def _read_archive(path: str) -> KerasFile:
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            if "config.json" not in members:
                raise KerasFileError(f"{path}: a zip archive without config.json, so not a .keras model "
                                     f"(members: {sorted(members)})")
            if "model.weights.h5" not in members:
                other = sorted(m for m in members if m.startswith("model.weights"))
                if other:
                    raise UnsupportedKerasError(f"{path}: weights stored as {other}; only model.weights.h5 "
                                                f"(Keras' default) is read")
                raise KerasFileError(f"{path}: the archive has no model.weights.h5 (members: {sorted(members)})")
            config = _json(archive.read("config.json"), path, "config.json")
            metadata = _json(archive.read("metadata.json"), path, "metadata.json") \
                if "metadata.json" in members else {}
            weights_bytes = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise KerasFileError(f"{path}: not a readable .keras archive (truncated or corrupt zip?): {err}") from None
    with open_hdf5(io.BytesIO(weights_bytes), f"{path} (model.weights.h5)") as root:
        weights = Keras3Weights.read(root, path)
    return KerasFile(path, "keras", metadata.get("keras_version"), config, weights)


def _read_hdf5(path: str) -> KerasFile:
    with open_hdf5(path, path) as root:
        text = attr_text(root, "model_config")
        if text is not None:
            if "model_weights" not in root:
                raise KerasFileError(f"{path}: a legacy .h5 model without a model_weights group "
                                     f"(saved without weights?)")
            group = root["model_weights"]
            version = attr_text(root, "keras_version") or attr_text(group, "keras_version")
            return KerasFile(path, "legacy h5", version, _json(text, path, "model_config"),
                             LegacyWeights.read(group, path))
        if "layer_names" in root.attrs or "layer_names0" in root.attrs:
            return KerasFile(path, "legacy weights h5", attr_text(root, "keras_version"), None,
                             LegacyWeights.read(root, path))
        if "layers" in root or "vars" in root:
            return KerasFile(path, "weights.h5", None, None, Keras3Weights.read(root, path))
    raise KerasFileError(f"{path}: an HDF5 file in none of Keras' layouts (no model_config or layer_names "
                         f"attribute, no layers group)")


def _json(raw: bytes | str, path: str, what: str) -> dict:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KerasFileError(f"{path}: {what} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise KerasFileError(f"{path}: {what} should hold a JSON object, got {type(value).__name__}")
    return value
