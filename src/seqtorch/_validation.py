"""Checks at the public boundary: each raises once, before any work, naming expected and actual values."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .init import INITS
from .reference import ACTIVATIONS, RECURRENT_ACTIVATIONS


def check_options(*, activation: str, recurrent_activation: str, init: str, dropouts: dict[str, float],
                  backend: str | None = None) -> None:
    """Constructor options: names from the known sets, probabilities in [0, 1)."""
    from .functional import BACKENDS

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if recurrent_activation not in RECURRENT_ACTIVATIONS:
        raise ValueError(f"recurrent_activation must be one of {RECURRENT_ACTIVATIONS}, "
                         f"got {recurrent_activation!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    for name, p in dropouts.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")


def check_single_bias(single_bias: bool, *, bias: bool, mode: str, reset_after: bool) -> None:
    """``single_bias`` needs biases, and a GRU whose two biases are interchangeable (reset_after=False)."""
    if not isinstance(single_bias, bool):
        raise TypeError(f"single_bias must be a bool, got {type(single_bias).__name__}")
    if single_bias and not bias:
        raise ValueError("single_bias=True needs bias=True (there is no bias to keep single)")
    if single_bias and mode == "gru" and reset_after:
        raise ValueError("single_bias=True needs reset_after=False for the GRU: with reset_after=True the "
                         "recurrent candidate bias b_hn is scaled by the reset gate, so it is a separate "
                         "bias (Keras' reset_after GRU has two biases too)")


def check_sizes(input_size: int, hidden_size: int, num_layers: int = 1) -> None:
    for name, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                             ("num_layers", num_layers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def check_input(name: str, input: Tensor, *, feature_size: int, param: Tensor, batched_dims: int) -> None:
    """``input`` has ``batched_dims`` or ``batched_dims - 1`` dims, the last of size ``feature_size``,
    and the dtype and device of the parameters."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: expected input to be a Tensor, got {type(input).__name__}")
    if input.dim() not in (batched_dims - 1, batched_dims):
        raise ValueError(f"{name}: expected input to be {batched_dims - 1}D or {batched_dims}D, "
                         f"got {input.dim()}D tensor of shape {tuple(input.shape)} instead")
    if input.shape[-1] != feature_size:
        raise ValueError(f"{name}: input.size(-1) must be equal to input_size. Expected {feature_size}, "
                         f"got {input.shape[-1]} (input shape {tuple(input.shape)})")
    check_like(name, "input", input, param)


def check_like(name: str, what: str, tensor: Tensor, param: Tensor) -> None:
    """``tensor`` has the parameters' dtype and device."""
    if tensor.dtype != param.dtype:
        raise RuntimeError(f"{name}: {what} dtype {tensor.dtype} does not match the parameters' dtype "
                           f"{param.dtype}; cast the {what} or the module (module.to(dtype))")
    if tensor.device != param.device:
        raise RuntimeError(f"{name}: {what} is on {tensor.device} but the parameters are on {param.device}")


def check_state(name: str, what: str, state: Tensor, expected: tuple[int, ...], param: Tensor) -> None:
    """A hidden or cell state of exactly the ``expected`` shape, dtype and device."""
    if not isinstance(state, Tensor):
        raise TypeError(f"{name}: expected {what} to be a Tensor, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise RuntimeError(f"{name}: Expected {what} size {tuple(expected)}, got {tuple(state.shape)}")
    check_like(name, what, state, param)


def check_lengths(name: str, lengths: Tensor | Sequence[int], *, batch: int, steps: int,
                  device: torch.device, batch_first: bool, input_shape: tuple[int, ...]) -> Tensor:
    """Per-sequence lengths as a (B,) int64 tensor on ``device``, each in [1, T]."""
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise ValueError(f"{name}: lengths must be an integer tensor, got dtype {lengths.dtype}")
        values = lengths
    else:
        try:
            values = torch.as_tensor(list(lengths))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name}: lengths must be a 1D int tensor or a list of ints ({err})") from None
        if values.is_floating_point() or values.dtype == torch.bool:
            raise ValueError(f"{name}: lengths must hold ints, got {values.dtype}")
    if values.dim() != 1:
        raise ValueError(f"{name}: lengths must be 1D with one entry per sequence, got shape {tuple(values.shape)}")
    if values.numel() != batch:
        hint = ""
        if values.numel() == steps and steps != batch:
            hint = (f"; it matches the time dimension instead: is batch_first={batch_first} right for "
                    f"input of shape {input_shape}?")
        raise ValueError(f"{name}: expected {batch} lengths (one per sequence), got {values.numel()}{hint}")
    values = values.to(device=device, dtype=torch.int64)
    if batch > 0:
        low, high = int(values.min()), int(values.max())
        if low < 1 or high > steps:
            raise ValueError(f"{name}: lengths must be in [1, {steps}] (the input's time dimension), "
                             f"got min {low}, max {high}")
    return values
