"""Which part of a torch module takes which Keras layer's weights: by order, kind checked.

A module's *slots* are its weight-bearing parts in registration order (the order ``__init__`` assigns
them, which is what :meth:`nn.Module.modules` walks): each ``nn.Embedding``, each ``nn.Linear``, and
each layer of a seqtorch or torch.nn SimpleRNN/LSTM/GRU (a ``num_layers=2`` module has two slots, a
bidirectional one takes a Keras Bidirectional per layer). The Keras model's layers with weights, in
its order, fill the slots one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from .config import BidirectionalSpec, DenseSpec, EmbeddingSpec, RecurrentSpec
from .errors import WeightMismatchError
from .mapping import fill_dense, fill_embedding, fill_recurrent, recurrent_family
from .modules import Dense

KERAS_CLASSES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}  # a cell family -> Keras class


@dataclass(frozen=True)
class Slot:
    """One Keras layer's place in a module: ``module`` (layer ``layer`` of it for recurrent modules).

    ``class_name`` is the Keras class it takes ("Embedding", "Dense", "LSTM", "Bidirectional", ...),
    ``inner`` the wrapped class of a Bidirectional, ``label`` its dotted name below the root module's class (``RNNClassifier.rnn``), for messages.
    """

    module: nn.Module
    layer: int
    class_name: str
    inner: str | None
    label: str


def module_slots(module: nn.Module) -> list[Slot]:
    """The weight-bearing parts of ``module``, in registration order (see the module docstring)."""
    slots: list[Slot] = []

    def visit(part: nn.Module, label: str) -> None:
        mode = recurrent_family(part)
        if mode is not None:
            keras = KERAS_CLASSES[mode]
            for layer in range(part.num_layers):
                if part.bidirectional:
                    slots.append(Slot(part, layer, "Bidirectional", keras, f"{label} (layer {layer})"))
                else:
                    slots.append(Slot(part, layer, keras, None, f"{label} (layer {layer})"))
        elif isinstance(part, nn.Embedding):
            slots.append(Slot(part, 0, "Embedding", None, label))
        elif isinstance(part, nn.Linear):
            slots.append(Slot(part, 0, "Dense", None, label))
        else:
            for name, child in part.named_children():
                visit(child, f"{label}.{name}")

    visit(module, type(module).__name__)
    return slots


def keras_kind(class_name: str, inner: str | None) -> str:
    """"LSTM", or "Bidirectional(LSTM)" for a wrapped class."""
    return f"Bidirectional({inner})" if inner else class_name


def describe(slot: Slot) -> str:
    return f"{slot.label} [{keras_kind(slot.class_name, slot.inner)}]"


def check_kinds(slots: list[Slot], class_names: list[str], inner: list[str | None], where: str) -> None:
    """The slots and the Keras layers with weights match one to one, class by class."""
    module_side = [describe(s) for s in slots]
    keras_side = [keras_kind(c, i) for c, i in zip(class_names, inner)]
    if len(slots) != len(class_names):
        raise WeightMismatchError(f"{where}: the file has {len(class_names)} layers with weights {keras_side}, "
                                  f"the module {len(slots)}: {module_side}")
    for slot, keras in zip(slots, keras_side):
        if keras_kind(slot.class_name, slot.inner) != keras:
            raise WeightMismatchError(f"{where}: Keras layer {keras} meets {describe(slot)} (file: {keras_side}; "
                                      f"module: {module_side})")


def _canonical(recurrent_activation: str) -> str:
    return "hard_sigmoid_keras2" if recurrent_activation == "hard_sigmoid" else recurrent_activation


def check_options(slot: Slot, spec, where: str) -> None:
    """The options that change what the weights compute are the same on both sides (a config is known)."""
    module = slot.module
    if isinstance(spec, (RecurrentSpec, BidirectionalSpec)):
        layer = spec.layer if isinstance(spec, BidirectionalSpec) else spec
        mode = recurrent_family(module)
        activation = getattr(module, "activation", getattr(module, "nonlinearity", "tanh"))
        pairs = [("use_bias", layer.use_bias, "bias", bool(module.bias)),
                 ("activation", layer.activation, "activation", activation)]
        if mode != "rnn":
            pairs.append(("recurrent_activation", _canonical(layer.recurrent_activation), "recurrent_activation",
                          _canonical(getattr(module, "recurrent_activation", "sigmoid"))))
        if mode == "gru":
            pairs.append(("reset_after", layer.reset_after, "reset_after", getattr(module, "reset_after", True)))
    elif isinstance(spec, DenseSpec):
        pairs = [("use_bias", spec.use_bias, "bias", module.bias is not None)]
        if isinstance(module, Dense):
            pairs.append(("activation", spec.activation, "activation", module.activation))
    else:
        pairs = []
    for keras_name, keras_value, torch_name, torch_value in pairs:
        if keras_value != torch_value:
            raise WeightMismatchError(f"{where}: Keras has {keras_name}={keras_value!r}, {describe(slot)} has "
                                      f"{torch_name}={torch_value!r}")


def fill(slot: Slot, arrays: list[np.ndarray], where: str) -> None:
    """Copy one Keras layer's arrays into its slot (the mapping of :mod:`.mapping`)."""
    where = f"{where} -> {describe(slot)}"
    if slot.class_name == "Embedding":
        fill_embedding(slot.module, arrays, where)
    elif slot.class_name == "Dense":
        fill_dense(slot.module, arrays, where)
    else:
        fill_recurrent(slot.module, slot.layer, arrays, where)


def spec_kind(spec) -> tuple[str, str | None]:
    """(Keras class, wrapped class or None) of a weight-bearing spec."""
    if isinstance(spec, BidirectionalSpec):
        return "Bidirectional", spec.layer.class_name
    if isinstance(spec, RecurrentSpec):
        return spec.class_name, None
    if isinstance(spec, EmbeddingSpec):
        return "Embedding", None
    return "Dense", None
