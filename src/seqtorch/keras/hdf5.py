"""h5py at arm's length: the one place that imports it (an optional extra), opens files, decodes attributes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import IO, Iterator

import numpy as np

from .errors import KerasFileError


def require_h5py():
    """The h5py module, or an ImportError that says how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras' HDF5 files (.keras, .h5) needs h5py: pip install 'seqtorch[keras]' "
                          "(or pip install h5py)") from None
    return h5py


@contextmanager
def open_hdf5(source: str | IO[bytes], path: str) -> Iterator:
    """An open, read-only ``h5py.File`` on ``source`` (a file name or a binary file object).

    HDF5 reads lazily, so a truncated file can fail on open or on any later read: every OSError raised
    inside the block becomes a :class:`KerasFileError` naming ``path`` (the file the user gave).
    """
    h5py = require_h5py()
    try:
        handle = h5py.File(source, "r")
    except OSError as err:
        raise KerasFileError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None
    try:
        yield handle
    except OSError as err:
        raise KerasFileError(f"{path}: reading the HDF5 data failed (truncated or corrupt?): {err}") from None
    finally:
        handle.close()


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def attr_text(node, name: str) -> str | None:
    """The string attribute ``name`` of an HDF5 group or file, or None when absent."""
    return _text(node.attrs[name]) if name in node.attrs else None


def attr_texts(node, name: str) -> list[str]:
    """A list-of-strings attribute. Keras splits one too large for an HDF5 object header into
    ``name0``, ``name1``, ...; those are joined. Absent: an empty list."""
    if name in node.attrs:
        return [_text(v) for v in node.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in node.attrs:
        values.extend(_text(v) for v in node.attrs[f"{name}{chunk}"])
        chunk += 1
    return values


def read_array(node, key: str, path: str) -> np.ndarray:
    """The dataset ``node[key]`` as a numpy array; a missing one is a :class:`KerasFileError`."""
    h5py = require_h5py()
    item = node.get(key)
    if not isinstance(item, h5py.Dataset):
        raise KerasFileError(f"{path}: expected an array at {node.name.rstrip('/')}/{key}, found "
                             f"{'nothing' if item is None else type(item).__name__}")
    return np.asarray(item[()])
