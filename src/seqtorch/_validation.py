"""Checks at the public boundary: each raises once, before any work, naming expected and actual values.

The exception *types* are torch.nn's, raised for the same inputs and in the same order as torch.nn's
own checks (its Python ones, then those of the ATen op it calls), so code written against torch.nn
catches the same errors; the messages say more than torch's. Where torch.nn does not check an
argument when a module is built but fails on it in forward, the error comes in forward here too.
"""

from __future__ import annotations

import numbers
import operator
import warnings
from typing import Sequence

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor

from .recurrent_cells import Cell


class NotATensorError(TypeError, AttributeError):
    """A Tensor argument got something else (a numpy array, a list, a tuple where one Tensor belongs).

    A TypeError, and an AttributeError as well because that is what torch.nn raises there (it calls
    ``.dim()`` on the argument): an ``except AttributeError`` written against torch.nn still catches it.
    """


def _kind(value) -> str:
    return type(value).__name__


# --- constructor arguments -----------------------------------------------------------------------

def check_layer_args(*, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                     proj_size=0) -> tuple[float, int]:
    """torch.nn.RNNBase's constructor checks, in its order, with its exception types.

    ``dropout`` is any real number in [0, 1] (``np.float32``, ``Fraction`` too); ``bias`` and
    ``batch_first`` must be bools; ``input_size`` and ``hidden_size`` Python ints > 0; ``num_layers``
    an integer > 0 (numpy ints too, as ``range`` takes them); ``proj_size`` (LSTM) in [0, hidden_size).
    ``bidirectional`` is not checked here: torch.nn takes any value when built (see
    :func:`check_runnable`). Returns ``(float(dropout), num_layers)`` with numpy ints as ints.
    """
    try:
        dropout_value = float(dropout)
    except (TypeError, ValueError) as err:  # float()'s own error type, as torch.nn lets it through
        raise type(err)(f"dropout should be a number in range [0, 1], got {dropout!r} ({err})") from None
    if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
        raise ValueError(f"dropout should be a number in range [0, 1] representing the probability of an "
                         f"element being zeroed, got {dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                      f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}; "
                      f"seqtorch's input_dropout/recurrent_dropout apply to one layer too", stacklevel=4)
    for name, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} should be of type bool, got: {_kind(value)} ({value!r})")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int):
            raise TypeError(f"{name} should be of type int, got: {_kind(value)} ({value!r})")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero, got {value}")
    if _compare(num_layers, "<=", 0, "num_layers"):
        raise ValueError(f"num_layers must be greater than zero, got {num_layers!r}")
    if _compare(proj_size, "<", 0, "proj_size"):
        raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got "
                         f"{proj_size!r}")
    if _compare(proj_size, ">=", hidden_size, "proj_size"):
        raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size!r} and "
                         f"hidden_size={hidden_size}")
    # torch.nn builds the weights next: range(num_layers) and torch.empty refuse non-integers.
    layers = _integer("num_layers", num_layers)
    if proj_size > 0 and (isinstance(proj_size, bool) or not _is_integer(proj_size)):
        raise TypeError(f"proj_size should be an int, got {_kind(proj_size)} ({proj_size!r})")
    return dropout_value, (num_layers if isinstance(num_layers, bool) else layers)


def check_no_proj_size(name: str, proj_size) -> None:
    """torch.nn.RNN and GRU refuse a proj_size argument, whatever its value (ValueError)."""
    if proj_size is not None:
        raise ValueError(f"{name}: proj_size argument is only supported for LSTM, not RNN or GRU "
                         f"(got proj_size={proj_size!r})")


def _compare(value, op: str, bound, name: str) -> bool:
    """``value <op> bound`` as torch.nn evaluates it; an incomparable value is a TypeError naming it."""
    try:
        return {"<=": operator.le, "<": operator.lt, ">=": operator.ge}[op](value, bound)
    except TypeError:
        raise TypeError(f"{name} should be an int, got {_kind(value)} ({value!r})") from None


def _is_integer(value) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _integer(name: str, value) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} should be an int, got {_kind(value)} ({value!r})") from None


def check_cell_sizes(input_size, hidden_size) -> tuple[int, int]:
    """torch.nn.RNNCellBase checks nothing itself; torch.empty, which makes its weights, wants integers
    (numpy ints too; TypeError otherwise) that are not negative (RuntimeError). 0 is a valid size:
    a ``hidden_size=0`` cell returns (B, 0) states, as torch.nn's does. Returns the sizes as ints."""
    sizes = _integer("input_size", input_size), _integer("hidden_size", hidden_size)
    for name, value in zip(("input_size", "hidden_size"), sizes):
        if value < 0:
            raise RuntimeError(f"{name} must not be negative, got {value}")
    return sizes


def check_single_bias(owner: str, single_bias: bool, *, bias: bool, cell: Cell) -> None:
    """``single_bias`` needs biases, and a cell whose two biases are interchangeable (not the reset-after
    GRU's: :attr:`~seqtorch.recurrent_cells.Cell.single_bias_conflict`)."""
    if single_bias and not bias:
        raise ValueError(f"{owner}: single_bias=True needs bias=True (there is no bias to keep single)")
    if single_bias and cell.single_bias_conflict:
        hint = "; with reset_after=False the GRU's two biases add up" if cell.family == "gru" else ""
        raise ValueError(f"{owner}: single_bias=True needs two interchangeable biases, but in cell {cell.name!r} "
                         f"{cell.single_bias_conflict}{hint}")


# --- forward arguments ---------------------------------------------------------------------------

def tensor_signature(tensor: Tensor) -> tuple:
    """What the input checks read of a tensor: its type, shape, dtype and device (a part of a call's signature,
    :class:`PassedChecks`)."""
    return type(tensor), tensor.shape, tensor.dtype, tensor.device


class PassedChecks:
    """The call signatures that passed a Module's input checks, so that a call with one of them skips the checks.

    A signature holds everything the checks read (the Module's sizes, its parameters' dtype and device, the
    arguments' types, shapes, dtypes and devices: :func:`tensor_signature`), so a call with a kept one would
    pass them again. A signature that cannot be hashed is never kept (its call is checked every time); the
    set is cleared when it holds ``limit`` of them (a program with ever new shapes re-checks, nothing grows).
    """

    def __init__(self, limit: int = 4096) -> None:
        self._passed: set = set()
        self._limit = limit

    def __contains__(self, signature) -> bool:
        try:
            return signature in self._passed
        except TypeError:  # an unhashable part (a Module attribute set to a list, ...)
            return False

    def add(self, signature) -> None:
        try:
            hash(signature)
        except TypeError:
            return
        if len(self._passed) >= self._limit:
            self._passed.clear()
        self._passed.add(signature)


def check_tensor(name: str, what: str, value) -> None:
    if not isinstance(value, Tensor):
        raise NotATensorError(f"{name}: expected {what} to be a Tensor, got {_kind(value)}")


def check_rank(name: str, what: str, tensor: Tensor, ranks: tuple[int, int], error: type = ValueError) -> None:
    """``tensor`` (a Tensor, checked) has one of the two ``ranks``."""
    check_tensor(name, what, tensor)
    if tensor.dim() not in ranks:
        raise error(f"{name}: expected {what} to be {ranks[0]}D or {ranks[1]}D, got {tensor.dim()}D tensor of "
                    f"shape {tuple(tensor.shape)} instead")


def check_layer_input(name: str, input: Tensor, *, input_size: int, param: Tensor) -> None:
    """torch.nn.RNNBase.check_input: the parameters' dtype (ValueError), then the feature size (RuntimeError)."""
    if input.dtype != param.dtype:
        raise ValueError(f"{name}: input dtype ({input.dtype}) does not match the parameters' dtype "
                         f"({param.dtype}). Convert input: input.to({param.dtype}), or convert the module: "
                         f"module.to({input.dtype})")
    if input.shape[-1] != input_size:
        raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected {input_size}, "
                           f"got {input.shape[-1]} (input shape {tuple(input.shape)})")


def check_cell_input(name: str, input: Tensor, *, input_size: int, param: Tensor) -> None:
    """What torch's cell ops check (RuntimeError each): the feature size, then dtype and device."""
    if input.shape[-1] != input_size:
        raise RuntimeError(f"{name}: input has inconsistent input_size: expected {input_size}, got "
                           f"{input.shape[-1]} (input shape {tuple(input.shape)})")
    check_like(name, "input", input, param)


def check_like(name: str, what: str, tensor: Tensor, param: Tensor) -> None:
    """``tensor`` has the parameters' dtype and device (RuntimeError, as torch's ops raise)."""
    if tensor.dtype != param.dtype:
        raise RuntimeError(f"{name}: {what} dtype {tensor.dtype} does not match the parameters' dtype "
                           f"{param.dtype}; cast the {what} or the module (module.to(dtype))")
    check_device(name, what, tensor, param)


def check_device(name: str, what: str, tensor: Tensor, param: Tensor) -> None:
    if tensor.device != param.device:
        raise RuntimeError(f"{name}: {what} is on {tensor.device} but the parameters are on {param.device}")


def check_state_shape(name: str, what: str, state: Tensor, expected: tuple[int, ...]) -> None:
    """A hidden or cell state of exactly the ``expected`` shape (RuntimeError, as torch.nn)."""
    if tuple(state.shape) != tuple(expected):
        raise RuntimeError(f"{name}: Expected {what} size {tuple(expected)}, got {tuple(state.shape)}")


def check_runnable(name: str, *, num_layers, bidirectional) -> None:
    """torch.nn builds a layer with ``bidirectional`` of any type or ``num_layers=True`` but its forward
    raises TypeError (its ATen op wants a bool and an int); the same here, at the same point."""
    if not isinstance(bidirectional, bool) or isinstance(num_layers, bool):
        raise TypeError(f"{name}: this module was built with bidirectional={bidirectional!r} "
                        f"({_kind(bidirectional)}) and num_layers={num_layers!r} ({_kind(num_layers)}); it runs "
                        f"only with a bool bidirectional and an int num_layers (as torch.nn's)")


def check_steps(name: str, steps: int, input_shape: tuple[int, ...]) -> None:
    """At least one timestep: torch.nn raises RuntimeError for an empty sequence (T=0), on every device."""
    if steps == 0:
        raise RuntimeError(f"{name}: Expected sequence length to be larger than 0, got input of shape "
                           f"{input_shape} with 0 timesteps")


def check_lengths(name: str, lengths: Tensor | Sequence[int], *, batch: int, steps: int,
                  device: torch.device, batch_first: bool, input_shape: tuple[int, ...]) -> Tensor:
    """Per-sequence lengths as a (B,) int64 tensor on ``device``, each in [1, T]."""
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(f"{name}: lengths must be an integer tensor, got dtype {lengths.dtype}")
        values = lengths
    else:
        try:
            items = list(lengths)
            # An empty list (an empty batch) would become a float tensor.
            values = torch.as_tensor(items) if items else torch.zeros(0, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name}: lengths must be a 1D int tensor or a list of ints ({err})") from None
        if values.is_floating_point() or values.dtype == torch.bool:
            raise ValueError(f"{name}: lengths must hold ints, got {values.dtype}")
    if values.dim() != 1:
        raise ValueError(f"{name}: lengths must be 1D with one entry per sequence, got shape "
                         f"{tuple(values.shape)}")
    if values.numel() != batch:
        hint = ""
        if values.numel() == steps and steps != batch:
            hint = (f"; it matches the time dimension instead: is batch_first={batch_first} right for "
                    f"input of shape {input_shape}?")
        raise ValueError(f"{name}: expected {batch} lengths (one per sequence), got {values.numel()}{hint}")
    values = values.to(device=device, dtype=torch.int64)
    # Under vmap (per-sample gradients over padded batches) the values are per sample and cannot be read
    # here; the scans treat them as they would any lengths. Under torch.export (and so ONNX export) they
    # are an input of the graph, unknown when it is traced: the exported graph does not check them. Under
    # torch.compile a runtime assertion in the graph checks them (a RuntimeError when they are out of range).
    if batch == 0 or torch.compiler.is_exporting():
        return values
    if torch.compiler.is_compiling():
        # reading the values would break the graph: a runtime assertion inside it checks them instead
        torch._assert_async(((values >= 1) & (values <= steps)).all(),
                            f"{name}: lengths must be in [1, {steps}] (the input's time dimension)")
        return values
    if is_functorch_wrapped_tensor(values):
        return values
    low, high = int(values.min()), int(values.max())
    if low < 1 or high > steps:
        raise ValueError(f"{name}: lengths must be in [1, {steps}] (the input's time dimension), "
                         f"got min {low}, max {high}")
    return values


def check_step_flags(name: str, what: str, flags: Tensor | None, *, steps: int, batch: int, batched: bool,
                     batch_first: bool, like: Tensor) -> Tensor | None:
    """A ``mask=`` or ``resets=`` argument as a (T, B) bool tensor on the input's device, or None. It must be
    a bool Tensor laid out as the input is: (B, T) with ``batch_first``, (T, B) otherwise, (T,) unbatched."""
    if flags is None:
        return None
    check_tensor(name, what, flags)
    layout = "(T,)" if not batched else ("(B, T)" if batch_first else "(T, B)")
    expected = (steps,) if not batched else ((batch, steps) if batch_first else (steps, batch))
    if flags.dtype != torch.bool:
        raise ValueError(f"{name}: {what} must be a bool tensor, got dtype {flags.dtype} (use {what} > 0, or "
                         f".bool(), for a 0/1 tensor)")
    if tuple(flags.shape) != expected:
        raise ValueError(f"{name}: {what} must be {layout} = {expected} like the input of shape "
                         f"{tuple(like.shape if batched else like.squeeze(1).shape)}"
                         f"{' with batch_first=True' if batched and batch_first else ''}, got shape "
                         f"{tuple(flags.shape)}")
    if flags.device != like.device:
        raise RuntimeError(f"{name}: {what} is on {flags.device} but the input is on {like.device}")
    if not batched:
        return flags.unsqueeze(1)
    return flags.transpose(0, 1) if batch_first else flags
