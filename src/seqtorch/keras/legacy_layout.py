"""Where Keras 2 keeps each layer's arrays in HDF5: ``model.save("x.h5")`` and ``save_weights("x.h5")``.

The layers' groups sit under ``model_weights`` (a whole model) or at the root (weights alone). The
attribute ``layer_names`` lists the layers in the model's order; each layer's group is named by the
layer's ``name`` and its attribute ``weight_names`` lists the layer's arrays in its weight order, as
dataset paths inside the group (``lstm/lstm_cell/kernel:0``). Keras 3 writes the same layout when asked
for ``.h5``. A Bidirectional lists its forward layer's arrays, then its backward layer's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import KerasFileError, WeightMismatchError
from .hdf5 import attr_texts, read_array


def _forward_first(weight_names: list[str], arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays with those of a Bidirectional's backward copy (a ``backward_*`` part in the name) last,
    whatever order the file lists them in; other layers' arrays keep their order."""
    def is_backward(name: str) -> bool:
        return any(part.startswith("backward_") for part in name.split("/")[:-1])

    order = sorted(range(len(arrays)), key=lambda i: is_backward(weight_names[i]))  # stable
    return [arrays[i] for i in order]


class LegacyWeights:
    """The arrays of a Keras 2 HDF5 file, per layer in the file's layer order: ``[(name, [arrays])]``."""

    def __init__(self, layers: list[tuple[str, list[np.ndarray]]], path: str) -> None:
        self.layers = layers
        self.path = path

    @classmethod
    def read(cls, group, path: str) -> "LegacyWeights":
        """The layers of ``group`` (``model_weights``, or the root of a weights-only file)."""
        layers = []
        for name in attr_texts(group, "layer_names"):
            if name not in group:
                raise KerasFileError(f"{path}: layer_names lists {name!r} but {group.name} has no such group")
            weight_names = attr_texts(group[name], "weight_names")
            arrays = [read_array(group[name], weight, path) for weight in weight_names]
            layers.append((name, _forward_first(weight_names, arrays)))
        return cls(layers, path)

    def layer_arrays(self, class_names: Sequence[str], names: Sequence[str] | None = None) -> list[list[np.ndarray]]:
        """The arrays of the model's layers with weights (classes ``class_names``), by their ``names``
        when the model's config gave them, else by position among the file's layers that have weights."""
        holding = [(name, arrays) for name, arrays in self.layers if arrays]
        if names is None:
            if len(holding) != len(class_names):
                raise WeightMismatchError(
                    f"{self.path}: the file has {len(holding)} layers with weights ({[n for n, _ in holding]}), "
                    f"the model {len(class_names)} ({list(class_names)})")
            return [arrays for _, arrays in holding]
        by_name = dict(self.layers)
        missing = [name for name in names if name not in by_name]
        if missing:
            raise WeightMismatchError(f"{self.path}: no weights for the layers {missing}; the file has "
                                      f"{[n for n, _ in self.layers]}")
        unused = [name for name, _ in holding if name not in set(names)]
        if unused:
            raise WeightMismatchError(f"{self.path}: the file has weights for {unused}, which the model's "
                                      f"config does not list")
        return [by_name[name] for name in names]
