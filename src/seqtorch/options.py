"""seqtorch's options beyond torch.nn's arguments, each declared once, here.

torch.nn's own arguments (``input_size`` ... ``dtype``) stay explicit in each public class's signature,
in torch.nn's order. Everything seqtorch adds is an :class:`Option` in :data:`OPTIONS`: its default, type,
help text, check, where it applies, and how it meets conversion and export. The layers and cells take
them as keyword-only arguments and read everything else from here: their signature and docstring
(:func:`signature`, :func:`docstring`), the checks (:func:`resolve`), the repr (non-defaults),
:mod:`seqtorch.convert` (which values torch.nn has too), :mod:`seqtorch.onnx` (what ONNX lacks), the
Keras builder and the models (by name).

Where an option applies: ``"layer"`` options to every layer, ``"cell"`` options to every one-step cell
Module, ``"spec"`` options only where the cell's spec lists them (:attr:`seqtorch.recurrent_cells.Cell.options`:
the activations, LayerNorm's ``eps``); ``reset_after`` only to the GRU classes, where it picks the spec.
"""

from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from .init import INITS
from .ops.dispatch import BACKENDS
from .recurrent_cells.activations import ACTIVATIONS, RECURRENT_ACTIVATIONS


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        return value

    return check


def _boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Option:
    """One option: its default, type, help text and check, and where it applies and translates.

    ``check(name, value)`` returns the value to store (``0.25`` for ``np.float32(0.25)``) or raises
    ValueError/TypeError naming the option. ``torch_nn(value)``: whether torch.nn computes the same with
    this value (a module with any other converts to torch.nn only with a loss, so :mod:`seqtorch.convert`
    refuses it). ``onnx``: why an active value cannot export to ONNX's operators (None: it exports).
    """

    name: str
    default: Any
    type: type
    help: str
    check: Callable[[str, Any], Any]
    where: tuple[str, ...]
    torch_nn: Callable[[Any], bool] = lambda value: True
    onnx: str | None = None

    def is_default(self, value) -> bool:
        return value == self.default and type(value) is type(self.default)


# In the order a Module's repr shows them.
OPTIONS: dict[str, Option] = {option.name: option for option in (
    Option("eps", 1e-5, float, "the LayerNorm's epsilon, added to the variance", _positive, ("spec",)),
    Option("activation", "tanh", str, "the cell's main nonlinearity: ``\"tanh\"`` or ``\"relu\"``",
           _one_of(ACTIVATIONS), ("spec",), torch_nn=lambda name: name == "tanh"),
    Option("recurrent_activation", "sigmoid", str,
           "the gates' function: ``\"sigmoid\"``, ``\"hard_sigmoid\"`` (Keras 2's ``clip(0.2 x + 0.5, 0, 1)``, "
           "also ``\"hard_sigmoid_keras2\"``) or ``\"hardsigmoid\"`` (torch's, Keras 3's ``hard_sigmoid``)",
           _one_of(RECURRENT_ACTIVATIONS), ("spec",), torch_nn=lambda name: name == "sigmoid"),
    Option("reset_after", True, bool,
           "``True``: torch's GRU (and Keras >= 2.3's), the reset gate scales ``h W_hn^T + b_hn``; ``False``: "
           "Keras 2.0's and the book's, the candidate is computed from ``r * h``",
           _boolean, ("gru",), torch_nn=lambda value: value),
    Option("input_dropout", 0.0, float,
           "variational dropout on each layer's input (Keras' ``dropout``): one mask per sequence, layer and "
           "direction, the same at every step; training only",
           _probability, ("layer",), torch_nn=lambda p: p == 0),
    Option("recurrent_dropout", 0.0, float,
           "variational dropout on the recurrent state where it enters the cell's products (Gal & Ghahramani "
           "2016; Keras' ``recurrent_dropout``): one mask per sequence, layer and direction; training only",
           _probability, ("layer",), torch_nn=lambda p: p == 0,
           onnx="recurrent_dropout in training mode has no ONNX equivalent (ONNX's recurrent operators take no "
                "mask on the state); export the model in eval mode: model.eval()"),
    Option("zoneout", 0.0, float,
           "each unit of each state keeps its previous value with this probability (Krueger et al. 2017), a "
           "fresh mask per step, state, layer and direction in training; in evaluation the expectation, "
           "``state = p * previous + (1 - p) * new``",
           _probability, ("layer", "cell"), torch_nn=lambda p: p == 0,
           onnx="zoneout has no ONNX equivalent (ONNX's recurrent operators always replace the state); export "
                "a model without zoneout"),
    Option("init", "torch", str,
           "``\"torch\"``: every parameter uniform in +-1/sqrt(H), as torch.nn; ``\"keras\"``: glorot-uniform "
           "input weights, orthogonal recurrent weights, zero biases, LSTM forget bias 1",
           _one_of(INITS), ("layer", "cell")),
    Option("single_bias", False, bool,
           "one trained bias per gate, as Keras has: each ``bias_hh`` is a zero buffer (the state_dict keeps "
           "torch.nn's keys). torch's two biases act only as their sum and get the same gradient, so with them "
           "an optimizer moves the sum twice as far per step",
           _boolean, ("layer", "cell")),
    Option("learn_initial_state", False, bool,
           "the initial states are parameters (``h0_l{k}{sfx}``, and ``c0_l{k}{sfx}`` for an LSTM, each (H,), P "
           "for a projected h; ``h0``/``c0`` for a cell), zeros at first, trained like any parameter and used when "
           "``hx`` is None; an explicit ``hx`` wins",
           _boolean, ("layer", "cell"), torch_nn=lambda value: not value),
    Option("backend", "auto", str,
           "the scan's implementation: ``\"auto\"`` (the fastest that serves), ``\"reference\"``, "
           "``\"cpu_fused\"`` or ``\"triton\"`` (:mod:`seqtorch.ops`)",
           _one_of(BACKENDS), ("layer",)),
)}


def applicable(where: str, spec_options: tuple[str, ...], own: tuple[str, ...] = ()) -> tuple[Option, ...]:
    """The options a Module takes, in :data:`OPTIONS`' order: those that apply ``where`` (``"layer"`` or
    ``"cell"``), the spec's own (``spec_options``), and ``own``, less none."""
    return tuple(o for o in OPTIONS.values() if where in o.where or o.name in spec_options or o.name in own)


def resolve(owner: str, allowed: tuple[Option, ...], given: dict[str, Any]) -> dict[str, Any]:
    """Every allowed option's value (the default where not given), checked. An option the Module does
    not take is a TypeError, as Python raises for an unexpected keyword argument."""
    names = {o.name for o in allowed}
    for name in given:
        if name not in names:
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {name!r}"
                            + (f" (an option of {sorted(OPTIONS[name].where)} modules)" if name in OPTIONS else ""))
    return {o.name: o.check(o.name, given[o.name]) if o.name in given else o.default for o in allowed}


def non_defaults(names: tuple[str, ...], values: dict[str, Any]) -> str:
    """``", name=value"`` for each of the named options that is not at its default, for ``extra_repr``."""
    return "".join(f", {name}={values[name]!r}" for name in names if values[name] != OPTIONS[name].default)


def signature(init, allowed: tuple[Option, ...]) -> inspect.Signature:
    """``init``'s signature with ``**extras`` replaced by each allowed option as a keyword-only parameter,
    so that ``help()`` and ``inspect.signature`` show them with their defaults and types."""
    sig = inspect.signature(init)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in params}
    params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.type)
               for o in allowed if o.name not in taken]
    return sig.replace(parameters=params)


def docstring(allowed: tuple[Option, ...]) -> str:
    """The "seqtorch's options" part of a Module's docstring, one entry per allowed option."""
    lines = ["    seqtorch's options (keyword-only; the defaults compute what torch.nn computes):", ""]
    for o in allowed:
        lines.append(f"        {o.name} ({o.type.__name__}, default {o.default!r}): {o.help}.")
    return "\n".join(lines) + "\n"


def describe_public_class(cls, kind: str) -> None:
    """A public Module subclass (``kind`` "layer" or "cell") that names its ``_default_cell``: its
    ``_options`` (the cell's options for that kind and the class's ``_own_options``, less those its torch.nn
    signature takes under torch's name, ``_torch_named``), and from them its ``__init__`` signature and the
    options' part of its docstring. The generic classes (no default cell) are left as they are."""
    if cls._default_cell is None or "__init__" not in cls.__dict__:
        return
    cls._options = tuple(o for o in applicable(kind, cls._default_cell.options, cls._own_options)
                         if o.name not in cls._torch_named)
    cls.__init__.__signature__ = signature(cls.__init__, cls._options)
    cls.__doc__ = (cls.__doc__ or "") + "\n" + docstring(cls._options)
