"""Layer specs -> the torch modules of :mod:`.modules`, sized from the config and the weights' shapes.

Keras' config gives each layer's own sizes (units, vocabulary); the size a layer reads is taken from
its kernel (Keras checks it when it builds the model), and checked against what the layer before it
produces where that is known, so that an inconsistent file fails here, naming both layers.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..layers import GRU, LSTM, SimpleRNN
from .config import (BidirectionalSpec, DenseSpec, DropoutSpec, EmbeddingSpec, FlattenSpec, ModelSpec,
                     RecurrentSpec)
from .errors import WeightMismatchError
from .modules import Dense, KerasRecurrent, KerasSequential


def _recurrent(spec: RecurrentSpec, input_size: int, *, bidirectional: bool, backend: str) -> nn.Module:
    """The seqtorch layer of a Keras SimpleRNN/LSTM/GRU: Keras' one bias is ``single_bias`` (except the
    reset-after GRU's two), Keras' ``dropout`` is ``input_dropout``."""
    options = dict(bias=spec.use_bias, batch_first=True, bidirectional=bidirectional,
                   input_dropout=spec.dropout, recurrent_dropout=spec.recurrent_dropout, backend=backend,
                   single_bias=spec.use_bias and not (spec.family == "gru" and spec.reset_after))
    if spec.family == "rnn":
        return SimpleRNN(input_size, spec.units, nonlinearity=spec.activation, **options)
    options.update(activation=spec.activation, recurrent_activation=spec.recurrent_activation)
    if spec.family == "lstm":
        return LSTM(input_size, spec.units, **options)
    return GRU(input_size, spec.units, reset_after=spec.reset_after, **options)


def build_sequential(model: ModelSpec, arrays: list[list[np.ndarray]], *, backend: str = "auto",
                     where: str = "") -> KerasSequential:
    """The module of a Sequential model, parameters not yet filled. ``arrays``: the arrays of each
    weight-bearing layer, in order (their first array, the kernel, gives the input size)."""
    weights = iter(arrays)
    modules, names = [], []
    features: int | None = None  # the size of the last axis the previous layer produces, when known
    input_features: int | None = None
    for index, spec in enumerate(model.layers):
        label = f"{where}: layer {spec.name!r} ({type(spec).__name__.removesuffix('Spec')})"
        if isinstance(spec, EmbeddingSpec):
            next(weights)  # its size is the config's; the mapping checks the table against it
            module = nn.Embedding(spec.input_dim, spec.output_dim)
            features = spec.output_dim
        elif isinstance(spec, (RecurrentSpec, BidirectionalSpec)):
            layer = spec.layer if isinstance(spec, BidirectionalSpec) else spec
            bidirectional = isinstance(spec, BidirectionalSpec)
            size = _input_size(next(weights), features, label)
            rnn = _recurrent(layer, size, bidirectional=bidirectional, backend=backend)
            module = KerasRecurrent(rnn, return_sequences=layer.return_sequences, go_backwards=layer.go_backwards,
                                    merge_mode=spec.merge_mode if bidirectional else "concat", stateful=layer.stateful)
            directions = 2 if bidirectional and spec.merge_mode == "concat" else 1
            features = directions * layer.units
            if not layer.trainable:  # a Bidirectional's wrapped layer can be frozen on its own
                module.requires_grad_(False)
        elif isinstance(spec, DenseSpec):
            size = _input_size(next(weights), features, label)
            module = Dense(size, spec.units, bias=spec.use_bias, activation=spec.activation)
            features = spec.units
        elif isinstance(spec, DropoutSpec):
            module = nn.Dropout(spec.rate)
        elif isinstance(spec, FlattenSpec):
            module = nn.Flatten(start_dim=1)
            features = None  # the product of the remaining axes: unknown without the sequence length
        else:  # the config parser produces no other spec
            raise TypeError(f"{label}: no module for {type(spec).__name__}")
        if index == 0 and not isinstance(spec, EmbeddingSpec):
            input_features = _first_input(model, module, label)
        if not getattr(spec, "trainable", True):
            module.requires_grad_(False)
        modules.append(module)
        names.append(spec.name)
    mask_zero = bool(model.layers) and isinstance(model.layers[0], EmbeddingSpec) and model.layers[0].mask_zero
    return KerasSequential(modules, names, input_features=input_features, name=model.name, mask_zero=mask_zero)


def _input_size(layer_arrays: list[np.ndarray], features: int | None, label: str) -> int:
    if not layer_arrays or layer_arrays[0].ndim != 2:
        shapes = [tuple(a.shape) for a in layer_arrays]
        raise WeightMismatchError(f"{label}: expected a 2-D kernel as the first array, the file has {shapes}")
    size = int(layer_arrays[0].shape[0])
    if features is not None and size != features:
        raise WeightMismatchError(f"{label}: its kernel reads {size} features, the layer before it gives {features}")
    return size


def _first_input(model: ModelSpec, module: nn.Module, label: str) -> int:
    """F of the model's float input: the first layer's input size, checked against the InputLayer's shape."""
    size = module.rnn.input_size if isinstance(module, KerasRecurrent) else getattr(module, "in_features", None)
    shape = model.input.shape if model.input is not None else None
    declared = shape[-1] if shape else None
    if size is None:
        if declared is None:
            raise WeightMismatchError(f"{label}: the model starts with a layer without weights and its "
                                      f"InputLayer gives no feature size")
        return int(declared)
    if declared is not None and declared != size:
        raise WeightMismatchError(f"{label}: the InputLayer declares {declared} features, the layer reads {size}")
    return size
