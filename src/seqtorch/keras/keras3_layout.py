"""Where Keras 3 keeps each layer's arrays: ``model.weights.h5`` in a .keras archive, or a ``.weights.h5``.

Keras 3 (``keras/src/saving/saving_lib.py``) walks the model and writes one group per layer of a
Sequential model, ``layers/<name>``, where ``<name>`` is the layer's class in snake case with ``_1``,
``_2``, ... appended for the second, third layer of the same class (the layer's own ``name`` is not
used, so the path depends only on the classes and their order). A layer's arrays are the datasets
``vars/0``, ``vars/1``, ... in the order the layer created them; a recurrent layer keeps them in its
cell (``layers/lstm/cell/vars``), a Bidirectional in its two copies of the layer
(``layers/bidirectional/forward_layer/cell/vars``, then ``backward_layer/cell/vars``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import KerasFileError, WeightMismatchError
from .hdf5 import read_array

# The snake-case group name of each layer class that has weights (the only ones looked up).
GROUP_NAMES = {"Embedding": "embedding", "SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru",
               "Bidirectional": "bidirectional", "Dense": "dense"}
# Where below its group a layer of each class keeps its arrays, in Keras' weight order.
_SUBGROUPS = {"SimpleRNN": ("cell",), "LSTM": ("cell",), "GRU": ("cell",),
              "Bidirectional": ("forward_layer/cell", "backward_layer/cell")}


class Keras3Weights:
    """The arrays of a Keras 3 weights file, by group: ``{"layers/lstm/cell": [kernel, ...]}``."""

    def __init__(self, groups: dict[str, list[np.ndarray]], path: str) -> None:
        self.groups = groups
        self.path = path

    @classmethod
    def read(cls, root, path: str) -> "Keras3Weights":
        """Every ``.../vars`` group below ``root`` (an open h5py File), its datasets in numeric order."""
        groups: dict[str, list[np.ndarray]] = {}
        names: list[str] = []
        root.visit(names.append)  # every group and dataset, as paths relative to the root
        for name in names:
            if name.split("/")[-1] != "vars" or not hasattr(root[name], "keys"):
                continue
            keys = list(root[name].keys())
            if not all(key.isdigit() for key in keys):
                raise KerasFileError(f"{path}: {name} should hold datasets named 0, 1, ..., found {keys}")
            owner = name[: -len("vars")].rstrip("/")
            groups[owner] = [read_array(root[name], key, path) for key in sorted(keys, key=int)]
        return cls(groups, path)

    def layer_arrays(self, class_names: Sequence[str], names: Sequence[str] | None = None) -> list[list[np.ndarray]]:
        """The arrays of each layer of a Sequential model whose layers with weights are, in order, of
        ``class_names``; refuses a file holding weights that none of them takes. ``names`` (the layers'
        Keras names) are not used: the file's paths do not depend on them."""
        counts: dict[str, int] = {}
        taken, result = set(), []
        for class_name in class_names:
            base = GROUP_NAMES[class_name]
            name = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
            arrays = []
            for sub in _SUBGROUPS.get(class_name, ("",)):
                key = "/".join(part for part in ("layers", name, sub) if part)
                if key not in self.groups:
                    raise WeightMismatchError(
                        f"{self.path}: no weights for the {class_name} layer expected at {key}/vars; the "
                        f"file has weights at {self._holding()}")
                taken.add(key)
                arrays.extend(self.groups[key])
            result.append(arrays)
        unused = [key for key in self._holding() if key not in taken]
        if unused:
            raise WeightMismatchError(
                f"{self.path}: the file has weights at {unused} that no layer of the model takes (the model's "
                f"layers with weights: {list(class_names)})")
        return result

    def _holding(self) -> list[str]:
        return sorted(key for key, arrays in self.groups.items() if arrays and key.startswith("layers/"))
