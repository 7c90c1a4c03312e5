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

import json
import os
import zipfile
import zlib
from dataclasses import dataclass

from .config import show as _show
from .errors import KerasFileError, UnsupportedKerasError
from .hdf5 import attr_text, read_hdf5
from .keras3_layout import Keras3Weights
from .legacy_layout import LegacyWeights

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_JSON_LIMIT = 64 << 20  # bytes: a model config is kilobytes; more is a damaged size


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
    members = _archive_members(path)
    config = _json(members["config.json"], path, "config.json")
    metadata = _json(members["metadata.json"], path, "metadata.json") if "metadata.json" in members else {}
    version = metadata.get("keras_version")
    if version is not None and not isinstance(version, str):
        raise KerasFileError(f"{path}: metadata.json's keras_version is {_show(version)}, not a version string")
    weights = Keras3Weights.read(read_hdf5(members["model.weights.h5"], f"{path} (model.weights.h5)"), path)
    return KerasFile(path, "keras", version, config, weights)


def _archive_members(path: str) -> dict[str, bytes]:
    """The bytes of config.json, metadata.json (when there) and model.weights.h5 of a .keras archive.

    A member's declared size is checked before it is read: a damaged header could otherwise claim
    gigabytes (no real member is more than 1032 times larger than stored, deflate's limit).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            if "config.json" not in infos:
                raise KerasFileError(f"{path}: a zip archive without config.json, so not a .keras model "
                                     f"(members: {sorted(infos)})")
            if "model.weights.h5" not in infos:
                other = sorted(m for m in infos if m.startswith("model.weights"))
                if other:
                    raise UnsupportedKerasError(f"{path}: weights stored as {other}; only model.weights.h5 "
                                                f"(Keras' default) is read")
                raise KerasFileError(f"{path}: the archive has no model.weights.h5 (members: {sorted(infos)})")
            wanted = [name for name in ("config.json", "metadata.json", "model.weights.h5") if name in infos]
            for name in wanted:
                info = infos[name]
                limit = 1032 * info.compress_size + 1024 if info.compress_type != zipfile.ZIP_STORED else \
                    info.compress_size
                if info.file_size > limit or (name.endswith(".json") and info.file_size > _JSON_LIMIT):
                    raise KerasFileError(f"{path}: member {name} declares {info.file_size:,} bytes, stored in "
                                         f"{info.compress_size:,}: the archive is damaged")
            return {name: archive.read(name) for name in wanted}
    except KerasFileError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError, RuntimeError) as err:
        # A damaged archive: a bad CRC or header (BadZipFile), offsets past its end (OSError,
        # EOFError), a compression method or encryption flag flipped on (NotImplementedError,
        # RuntimeError), a garbled deflate stream (zlib.error).
        raise KerasFileError(f"{path}: not a readable .keras archive (truncated or corrupt zip?): "
                             f"{type(err).__name__}: {err}") from None


def _read_hdf5(path: str) -> KerasFile:
    root = read_hdf5(path, path)
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
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, numbers too long, nested too deep
        raise KerasFileError(f"{path}: {what} is not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(value, dict):
        raise KerasFileError(f"{path}: {what} should hold a JSON object, got {type(value).__name__}")
    return value
