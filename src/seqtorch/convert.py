"""Conversion between seqtorch's modules and torch.nn's: the same weights, the same function.

``seqtorch.LSTM(...).to_torch_nn()`` returns the ``torch.nn.LSTM`` that computes what the layer
computes, and ``seqtorch.LSTM.from_torch_nn(nn_lstm)`` the other way; likewise SimpleRNN <-> nn.RNN,
GRU <-> nn.GRU and the three cells <-> nn.RNNCell / LSTMCell / GRUCell. Parameter names and layouts
are torch.nn's in seqtorch (gate order LSTM i, f, g, o; GRU r, z, n), so a conversion is a strict
``load_state_dict``; ``requires_grad``, the training flag, device and dtype are kept.

What the torch.nn module gives: cuDNN on a GPU, ``torch.ao.quantization.quantize_dynamic``,
``torch.jit.script``, and every tool that knows torch.nn's classes. seqtorch's ``lengths=`` has its
torch.nn counterpart in a ``PackedSequence`` (``pack_padded_sequence(x, lengths, enforce_sorted=False)``).

Refused, with the option named (torch.nn has no equivalent, so the converted module would compute
another function or train differently): every seqtorch option at a value whose declaration says torch.nn
lacks it (:attr:`seqtorch.options.Option.torch_nn`: the dropouts, zoneout, ``reset_after=False``,
activations other than torch's; torch.nn.RNN's ``nonlinearity`` takes ``"relu"``); the cells torch.nn lacks
(LayerNorm LSTM/GRU, IndRNN) have no counterpart (TypeError). ``single_bias=True`` converts to
torch.nn's two biases with ``bias_hh = 0``: the same function, but torch.nn then trains both biases.
"""

from __future__ import annotations

from torch import nn

from .options import OPTIONS

# torch.nn's recurrent classes; each seqtorch class that is a drop-in for one has it as a direct base
TORCH_CLASSES = (nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell)


def torch_nn_class(cls: type) -> type | None:
    """The torch.nn class that ``cls`` (a seqtorch class) is the drop-in for: its direct torch.nn base
    (``seqtorch.LSTM`` -> ``nn.LSTM``); None for a class torch.nn has no counterpart of (LayerNormLSTM,
    a subclass of yours: a subclass may compute something else)."""
    return next((base for base in cls.__bases__ if base in TORCH_CLASSES), None)


def _seqtorch_class(cls: type, torch_cls: type) -> type | None:
    """``cls`` or the subclass of it that is the drop-in for ``torch_cls``."""
    pending = [cls]
    while pending:
        candidate = pending.pop()
        if torch_nn_class(candidate) is torch_cls:
            return candidate
        pending += candidate.__subclasses__()
    return None


def unconvertible_options(module: nn.Module) -> list[str]:
    """The options of a seqtorch module that torch.nn lacks, each as ``name=value`` (empty: convertible):
    those whose value torch.nn does not compute (:attr:`seqtorch.options.Option.torch_nn`)."""
    values = module.option_values()
    return [f"{name}={values[name]!r}" for name in module._shown_options if not OPTIONS[name].torch_nn(values[name])]


def to_torch_nn(module: nn.Module) -> nn.Module:
    """The torch.nn module (nn.RNN/LSTM/GRU or nn.RNNCell/LSTMCell/GRUCell) with ``module``'s weights.

    Raises ValueError naming every option torch.nn lacks (see the module docstring), TypeError for a
    class that has no torch.nn counterpart.
    """
    nn_class = torch_nn_class(type(module))
    name = type(module).__name__
    if nn_class is None:
        raise TypeError(f"{name} has no torch.nn counterpart (convertible: seqtorch.SimpleRNN, LSTM, GRU and their "
                        f"cells, each as it is)")
    options = unconvertible_options(module)
    if options:
        raise ValueError(f"{name} cannot be converted to torch.nn.{nn_class.__name__}: torch.nn has no "
                         f"{', '.join(options)}")
    layer = isinstance(module, nn.RNNBase)
    param = module.weight_ih_l0 if layer else module.weight_ih
    factory = dict(device=param.device, dtype=param.dtype)
    if layer:
        kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                      dropout=module.dropout, bidirectional=module.bidirectional, **factory)
    else:
        kwargs = dict(bias=bool(module.bias), **factory)
    if "activation" in module._torch_named:  # nn.RNN's nonlinearity
        kwargs["nonlinearity"] = module.activation
    if getattr(module, "proj_size", 0):
        kwargs["proj_size"] = module.proj_size
    converted = nn_class(module.input_size, module.hidden_size, **kwargs)
    _copy_weights(module, converted)
    return converted


def from_torch_nn(cls: type, module: nn.Module, *, backend: str = "auto") -> nn.Module:
    """The seqtorch module of class ``cls`` with ``module``'s weights (``module`` a torch.nn.RNN, LSTM,
    GRU or one of their cells). ``cls`` may be a base class (``Recurrent``, ``RecurrentCell``): the
    class then follows from ``module``'s. ``backend`` is the layer's (cells have none).

    Raises TypeError when ``module`` is not the torch.nn counterpart of ``cls``, NotImplementedError for
    an LSTM with ``proj_size > 0`` converts with its projection.
    """
    target = _seqtorch_class(cls, type(module)) if type(module) in TORCH_CLASSES else None
    if target is None:
        expected = ", ".join(f"torch.nn.{c.__name__}" for c in TORCH_CLASSES if _seqtorch_class(cls, c) is not None)
        raise TypeError(f"{cls.__name__}.from_torch_nn expects {expected}, got {type(module).__module__}."
                        f"{type(module).__name__}")
    layer = issubclass(target, nn.RNNBase)
    param = module.weight_ih_l0 if layer else module.weight_ih
    factory = dict(device=param.device, dtype=param.dtype)
    if layer:
        kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                      dropout=module.dropout, bidirectional=module.bidirectional, backend=backend, **factory)
        if getattr(module, "proj_size", 0) > 0:
            kwargs["proj_size"] = module.proj_size
    else:
        kwargs = dict(bias=module.bias, **factory)
    if "activation" in target._torch_named:
        kwargs["nonlinearity"] = module.nonlinearity
    converted = target(module.input_size, module.hidden_size, **kwargs)
    _copy_weights(module, converted)
    return converted


def _copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Weights by name (a strict load: the layouts are the same), then requires_grad and the training flag.
    seqtorch's single_bias buffers (bias_hh = 0) land in torch.nn's bias_hh parameters."""
    target.load_state_dict(source.state_dict(), strict=True)
    params = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name in params:
            param.requires_grad_(params[name].requires_grad)
    target.train(source.training)
