"""The public entry points: :func:`load_model` and :func:`load_weights`."""

from __future__ import annotations

import os

from torch import nn

from .builder import build_sequential
from .config import WEIGHT_SPECS, parse_model_config
from .errors import KerasFileError
from .files import KerasFile, read_keras_file
from .modules import KerasSequential
from .pairing import check_kinds, check_options, fill, module_slots, spec_kind


def _version(file: KerasFile) -> str | None:
    """The Keras version that wrote ``file``. A .keras archive without metadata.json is taken as Keras 3's
    (the format's author; tf.keras 2.12+ records its own version)."""
    if file.keras_version is None and file.format == "keras":
        return "3"
    return file.keras_version


def load_model(path: str | os.PathLike, *, backend: str = "auto") -> KerasSequential:
    """A Keras Sequential model as a torch module computing the same function.

    Args:
        path: a ``.keras`` archive (Keras 3) or a legacy HDF5 ``.h5`` model (Keras 2's ``model.save``).
        backend: the seqtorch backend of the recurrent layers ("auto", "reference", "cpu_fused", "triton").

    Returns:
        a :class:`~seqtorch.keras.modules.KerasSequential` in eval mode (as Keras' ``predict``; call
        ``.train()`` to fine-tune, with Keras' dropouts). Input: int word ids (B, T) when the model starts
        with an Embedding, else float32 (B, T, F); output as Keras' (e.g. (B, 1) for Dense(1)).

    Raises:
        FileNotFoundError; :class:`KerasFileError` (unreadable, truncated, weights only);
        :class:`UnsupportedKerasError` (a layer class or option value not translated, named);
        :class:`WeightMismatchError` (weights that do not fit the config); ImportError without h5py.
    """
    file = read_keras_file(path)
    if file.config is None:
        raise KerasFileError(f"{file.path}: a weights-only file ({file.format}) has no model config; build "
                             f"the module and call seqtorch.keras.load_weights(module, path)")
    model = parse_model_config(file.config, _version(file), file.path)
    specs = [spec for spec in model.layers if isinstance(spec, WEIGHT_SPECS)]
    arrays = _arrays(file, specs)
    module = build_sequential(model, arrays, backend=backend, where=file.path)
    _fill_all(module, _labels(file, specs), arrays)
    return module.eval()


def load_weights(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Fill ``module``, built by hand to match the Keras model, with the file's weights; returns it.

    The module's ``nn.Embedding``, ``nn.Linear`` and recurrent layers (seqtorch's or torch.nn's; each
    layer of a ``num_layers`` > 1 module counts) take the Keras layers with weights in order: see
    :mod:`seqtorch.keras.pairing` for the order and :mod:`seqtorch.keras.mapping` for the mapping.
    Every shape is checked, naming both sides, and on an error the module is left as it was; with a
    config (.keras, legacy .h5) so are the layer classes and the options that change what the weights
    compute (use_bias, activation, recurrent_activation, reset_after). Keras' activations after a Dense are not part of an nn.Linear
    (apply them in ``forward``), and a Keras file stores no ``return_sequences``/``go_backwards`` wiring
    to check: ``forward`` is the module's.

    Args:
        module: the target (its parameters are overwritten in place).
        path: a ``.keras`` archive, a Keras 3 ``.weights.h5``, or a legacy ``.h5`` (model or weights).
    """
    file = read_keras_file(path)
    slots = module_slots(module)
    if file.config is None:
        arrays = file.weights.layer_arrays([slot.class_name for slot in slots])
        _fill_all(module, [file.path] * len(slots), arrays)
        return module
    model = parse_model_config(file.config, _version(file), file.path)
    specs = [spec for spec in model.layers if isinstance(spec, WEIGHT_SPECS)]
    kinds = [spec_kind(spec) for spec in specs]
    check_kinds(slots, [c for c, _ in kinds], [i for _, i in kinds], file.path)
    arrays = _arrays(file, specs)
    for slot, spec in zip(slots, specs):
        check_options(slot, spec, f"{file.path}: layer {spec.name!r}")
    _fill_all(module, _labels(file, specs), arrays)
    return module


def _arrays(file: KerasFile, specs: list) -> list:
    return file.weights.layer_arrays([spec_kind(s)[0] for s in specs], [s.name for s in specs])


def _labels(file: KerasFile, specs: list) -> list[str]:
    return [f"{file.path}: layer {spec.name!r}" for spec in specs]


def _fill_all(module: nn.Module, labels: list[str], arrays: list) -> None:
    """Fill every slot of ``module``; on any error the module is put back as it was, then the error raised
    (a half-filled module would pass for a loaded one)."""
    backup = {name: value.clone() for name, value in module.state_dict().items()}
    try:
        for slot, label, layer_arrays in zip(module_slots(module), labels, arrays, strict=True):
            fill(slot, layer_arrays, label)
    except BaseException:
        module.load_state_dict(backup)
        raise
