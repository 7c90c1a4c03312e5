"""Keras' arrays -> torch's parameters: the weight mapping, written once.

=======================================  ==============================================================
Keras (arrays in the layer's order)      torch.nn / seqtorch
=======================================  ==============================================================
Embedding ``embeddings`` (V, E)          ``nn.Embedding.weight`` (V, E), as is
Dense ``kernel`` (I, U), ``bias`` (U,)   ``nn.Linear.weight`` (U, I) = kernel transposed, ``bias``
recurrent ``kernel`` (I, G*H)            ``weight_ih_l{k}`` (G*H, I) = kernel **transposed**
recurrent ``recurrent_kernel`` (H, G*H)  ``weight_hh_l{k}`` (G*H, H) = recurrent_kernel transposed
LSTM gate blocks i, f, c, o              i, f, g, o: the same order (Keras' c is torch's g)
GRU gate blocks z, r, h                  r, z, n: the first two blocks swap, in every array
one ``bias`` (G*H,)                      ``bias_ih_l{k}``; ``bias_hh_l{k}`` = 0 (SimpleRNN, LSTM,
                                         GRU reset_after=False: seqtorch's ``single_bias=True``)
GRU reset_after=True ``bias`` (2, 3H)    ``bias_ih`` = bias[0] (input), ``bias_hh`` = bias[1] (recurrent)
``use_bias=False`` (two arrays)          ``bias=False``
Bidirectional: forward's, backward's     ``*_l{k}``, then ``*_l{k}_reverse``
=======================================  ==============================================================

G is 1, 4, 3 for SimpleRNN, LSTM, GRU. Keras multiplies ``x @ kernel`` (row vectors), torch
``W_ih @ x``, so the kernel is transposed; a reshape to (G*H, I) would keep the element order and
scramble the matrix (it passes a constant-weight test, not a random one). Keras' one bias per gate
adds to the input projection, where torch adds ``b_ih + b_hh``; putting it in ``b_ih`` with ``b_hh = 0``
gives the same sum, and with ``single_bias=True`` seqtorch trains it as Keras does (one bias). The
reset_after=True GRU keeps two biases because its recurrent one is scaled by the reset gate: Keras'
``r * (h @ U_h + b_rh)`` is torch's ``r * (W_hn h + b_hn)``.

Every copy checks the array's shape against the parameter's and names both on a mismatch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import Recurrent
from .errors import WeightMismatchError

_TORCH_FAMILIES = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # the gate blocks of Keras' SimpleRNN, LSTM, GRU


def recurrent_family(module: nn.Module) -> str | None:
    """"rnn", "lstm" or "gru" for a seqtorch layer (its cell's family) or a torch.nn RNN/LSTM/GRU; None
    for anything else."""
    if isinstance(module, Recurrent):
        return module.cell.family
    return _TORCH_FAMILIES.get(type(module))


def _reset_after(module: nn.Module) -> bool:
    return getattr(module, "reset_after", True)  # torch.nn.GRU is the reset-after GRU


def _gru_blocks_to_torch(array: np.ndarray) -> np.ndarray:
    """Keras' GRU blocks z, r, h along the last axis -> torch's r, z, n."""
    z, r, h = np.split(array, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


@torch.no_grad()
def _copy(target: Tensor, value: np.ndarray, where: str, torch_name: str) -> None:
    """``target[...] = value``; ``value`` is already in torch's layout and its shape checked on the Keras side,
    so a mismatch here is a mapping bug, reported as such."""
    if tuple(value.shape) != tuple(target.shape):
        raise WeightMismatchError(f"{where}: mapped array {tuple(value.shape)} does not fit {torch_name} "
                                  f"{tuple(target.shape)}")
    target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def raise_unless_shape(array: np.ndarray, keras_shape: tuple[int, ...], where: str, keras_name: str,
                       torch_name: str, torch_shape: tuple[int, ...], hint: str = "") -> None:
    """A :class:`WeightMismatchError` naming both sides unless ``array`` has ``keras_shape``."""
    if tuple(array.shape) != tuple(keras_shape):
        raise WeightMismatchError(
            f"{where}: Keras {keras_name} has shape {tuple(array.shape)}, but {torch_name} {torch_shape} takes "
            f"{'' if keras_name == 'embeddings' else 'a '}{keras_name} of shape {tuple(keras_shape)}{hint}")


def fill_embedding(module: nn.Embedding, arrays: list[np.ndarray], where: str) -> None:
    """``[embeddings (V, E)]`` -> ``module.weight`` (V, E)."""
    _check_count(arrays, ("embeddings",), where, "nn.Embedding")
    weight = module.weight
    raise_unless_shape(arrays[0], tuple(weight.shape), where, "embeddings", "Embedding.weight", tuple(weight.shape))
    _copy(weight, arrays[0], where, "Embedding.weight")


def fill_dense(module: nn.Linear, arrays: list[np.ndarray], where: str) -> None:
    """``[kernel (I, U), bias (U,)]`` (no bias: ``[kernel]``) -> ``module.weight`` (U, I), ``module.bias``."""
    names = ("kernel", "bias") if module.bias is not None else ("kernel",)
    _check_count(arrays, names, where, f"nn.Linear(bias={module.bias is not None})")
    out_features, in_features = module.weight.shape
    raise_unless_shape(arrays[0], (in_features, out_features), where, "kernel", "Linear.weight",
                       tuple(module.weight.shape))
    _copy(module.weight, arrays[0].T, where, "Linear.weight")
    if module.bias is not None:
        raise_unless_shape(arrays[1], (out_features,), where, "bias", "Linear.bias", tuple(module.bias.shape))
        _copy(module.bias, arrays[1], where, "Linear.bias")


def fill_recurrent(module: nn.Module, layer: int, arrays: list[np.ndarray], where: str) -> None:
    """One Keras recurrent layer's arrays -> layer ``layer`` of ``module`` (a seqtorch SimpleRNN/LSTM/GRU
    or torch.nn RNN/LSTM/GRU). ``arrays``: per direction (forward, then backward for a bidirectional
    module) ``kernel (I, G*H), recurrent_kernel (H, G*H)`` and, with bias, ``bias``."""
    mode = recurrent_family(module)
    hidden, gates = module.hidden_size, GATES[mode]
    directions = 2 if module.bidirectional else 1
    names = ("kernel", "recurrent_kernel", "bias") if module.bias else ("kernel", "recurrent_kernel")
    owner = type(module).__name__
    _check_count(arrays, names * directions, where,
                 f"{owner}(bias={module.bias}, bidirectional={module.bidirectional})")
    reset_after = mode == "gru" and _reset_after(module)
    reorder = _gru_blocks_to_torch if mode == "gru" else (lambda a: a)
    for direction in range(directions):
        kernel, recurrent, *bias = arrays[direction * len(names):(direction + 1) * len(names)]
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        side = where + (" (backward layer)" if direction else "")
        w_ih, w_hh = getattr(module, f"weight_ih{suffix}"), getattr(module, f"weight_hh{suffix}")
        raise_unless_shape(kernel, (w_ih.shape[1], gates * hidden), side, "kernel", f"{owner}.weight_ih{suffix}",
                           tuple(w_ih.shape))
        raise_unless_shape(recurrent, (hidden, gates * hidden), side, "recurrent_kernel",
                           f"{owner}.weight_hh{suffix}", tuple(w_hh.shape))
        _copy(w_ih, reorder(kernel).T, side, f"weight_ih{suffix}")
        _copy(w_hh, reorder(recurrent).T, side, f"weight_hh{suffix}")
        if not bias:
            continue
        b_ih, b_hh = getattr(module, f"bias_ih{suffix}"), getattr(module, f"bias_hh{suffix}")
        expected = (2, gates * hidden) if reset_after else (gates * hidden,)
        hint = ""
        if mode == "gru":
            hint = (f" (Keras' GRU has a (2, 3H) bias with reset_after=True, a (3H,) bias with "
                    f"reset_after=False; the module has reset_after={reset_after})")
        raise_unless_shape(bias[0], expected, side, "bias", f"{owner}.bias_ih{suffix}", tuple(b_ih.shape), hint)
        if reset_after:
            input_bias, recurrent_bias = reorder(bias[0][0]), reorder(bias[0][1])
        else:
            input_bias, recurrent_bias = reorder(bias[0]), np.zeros_like(bias[0])
        _copy(b_ih, input_bias, side, f"bias_ih{suffix}")
        _copy(b_hh, recurrent_bias, side, f"bias_hh{suffix}")


def _check_count(arrays: list[np.ndarray], names: tuple[str, ...], where: str, target: str) -> None:
    if len(arrays) != len(names):
        shapes = [tuple(a.shape) for a in arrays]
        raise WeightMismatchError(f"{where}: the file has {len(arrays)} arrays {shapes}, but {target} takes "
                                  f"{len(names)}: {list(names)}")
