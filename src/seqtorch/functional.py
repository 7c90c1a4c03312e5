"""Functional recurrent ops: the stacked, bidirectional layer driver and the backend dispatch.

The layering is ``reference / ops (kernels)  ->  this module  ->  seqtorch.layers``. This module owns
what is the same for every backend: the input projection ``x @ W_ih^T + b_ih`` (one GEMM over all
timesteps), dropout masks, stacking, directions. The sequential part, :func:`recurrent_scan`, is
dispatched to a backend:

* ``"reference"``: :func:`seqtorch.reference.recurrent_scan_reference`, the plain autograd loop.
* ``"cpu_fused"``: a hand-written BPTT on preallocated buffers (:mod:`seqtorch.ops`), any device.
* ``"triton"``: fused Triton kernels, CUDA tensors (or CPU under ``TRITON_INTERPRET=1``).
* ``"auto"``: the fastest backend available for the tensor's device, see :func:`resolve_backend`.

Inputs here are assumed valid: the public boundary that checks shapes, dtypes and devices is the
Module (:mod:`seqtorch.layers`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import GATES, recurrent_scan_reference

BACKENDS = ("auto", "reference", "cpu_fused", "triton")

def _ops():
    from . import ops  # imported lazily: the kernels sit below this layer but load only when asked for

    return ops


def available_backends() -> list[str]:
    """The backends this install can run (besides ``"auto"``)."""
    return ["reference"] + [name for name in ("cpu_fused", "triton") if name in _ops().SCANS]


def resolve_backend(backend: str, gx: Tensor, hidden_size: int) -> str:
    """Name of the backend that ``backend`` means for this scan's inputs.

    ``"auto"`` picks the first that is installed and supports the inputs (its ``SUPPORTS`` rule returns
    None): ``"triton"`` for CUDA tensors, then ``"cpu_fused"``, then ``"reference"``. A backend asked for
    by name that is not installed, or that cannot serve the inputs, raises with the reason.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    ops = _ops()
    if backend == "auto":
        candidates = (["triton"] if gx.device.type == "cuda" else []) + ["cpu_fused"]
        for name in candidates:
            if name in ops.SCANS and ops.SUPPORTS[name](gx, hidden_size) is None:
                return name
        return "reference"
    if backend not in ops.SCANS:
        raise RuntimeError(f"backend {backend!r} is not available in this install "
                           f"(available: {available_backends()})")
    reason = ops.SUPPORTS[backend](gx, hidden_size)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} cannot run this input: {reason}; use backend='auto' "
                           f"to fall back to the next path")
    return backend


def recurrent_scan(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                   b_hh: Tensor | None, *, lengths: Tensor | None = None, rec_mask: Tensor | None = None,
                   reverse: bool = False, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                   reset_after: bool = True, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer, one direction over a sequence, on the chosen backend.

    Shapes as in :func:`seqtorch.reference.recurrent_scan_reference`: gx (T, B, G*H), h0/c0 (B, H),
    w_hh (G*H, H), b_hh (G*H,) or None, lengths (B,) int64 or None, rec_mask (B, H) or None.
    Returns output (T, B, H), h_n (B, H), c_n (B, H) or None.
    """
    name = resolve_backend(backend, gx, h0.shape[-1])
    if gx.shape[1] == 0:
        # An empty batch (B=0, which torch.nn accepts) has nothing to scan; the fused kernels assume one
        # sequence at least, so the reference serves it on every backend: the same empty outputs, and
        # zero gradients.
        name = "reference"
    if recurrent_activation == "hardsigmoid" and name != "reference":
        # torch's hardsigmoid has no fused kernel yet: "auto" runs the reference, a named backend refuses.
        if backend != "auto":
            raise RuntimeError(f"backend {backend!r} cannot run recurrent_activation='hardsigmoid' yet; use "
                               f"backend='auto' or 'reference'")
        name = "reference"
    if recurrent_activation == "hard_sigmoid_keras2":
        recurrent_activation = "hard_sigmoid"
    scan = recurrent_scan_reference if name == "reference" else _ops().SCANS[name]
    return scan(mode, gx, h0, c0, w_hh, b_hh, lengths=lengths, rec_mask=rec_mask, reverse=reverse,
                activation=activation, recurrent_activation=recurrent_activation, reset_after=reset_after)


def dropout_mask(batch: int, features: int, p: float, like: Tensor) -> Tensor:
    """A (batch, features) inverted-dropout mask: 0 with probability p, else 1/(1-p).

    One mask per sequence, reused at every timestep (variational dropout, Gal & Ghahramani 2016).
    """
    keep = torch.full((batch, features), 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)


def rnn(mode: str, input: Tensor, h0: Tensor, c0: Tensor | None,
        weights: Sequence[tuple[Tensor, Tensor, Tensor | None, Tensor | None]], *, num_layers: int,
        bidirectional: bool, dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None,
        input_dropout: float = 0.0, recurrent_dropout: float = 0.0, activation: str = "tanh",
        recurrent_activation: str = "sigmoid", reset_after: bool = True,
        backend: str = "auto") -> tuple[Tensor, Tensor, Tensor | None]:
    """A stacked, optionally bidirectional recurrent network over a padded, time-major batch.

    Args:
        mode: "rnn", "lstm" or "gru".
        input: (T, B, I).
        h0: (L*D, B, H), row ``l*D + d`` for layer l, direction d. c0: the same for "lstm", else None.
        weights: ``(w_ih, w_hh, b_ih, b_hh)`` per layer and direction in the same order; w_ih (G*H, I_l),
            w_hh (G*H, H), biases (G*H,) or None.
        dropout: torch.nn's dropout on each layer's output except the last (training only).
        lengths: (B,) int64 on input's device, or None.
        input_dropout / recurrent_dropout: variational dropout on each layer's input / recurrent state:
            one mask per sequence, layer and direction, constant over time (training only).

    Returns:
        output (T, B, D*H) of the last layer (zero past each length), h_n (L*D, B, H), c_n or None.
    """
    num_directions = 2 if bidirectional else 1
    batch = input.shape[1]
    hidden = h0.shape[-1]
    layer_input = input
    h_n, c_n = [], []
    for layer in range(num_layers):
        direction_outputs = []
        for direction in range(num_directions):
            index = layer * num_directions + direction
            w_ih, w_hh, b_ih, b_hh = weights[index]
            x = layer_input
            if training and input_dropout > 0:
                x = x * dropout_mask(batch, x.shape[-1], input_dropout, x)
            rec_mask = None
            if training and recurrent_dropout > 0:
                rec_mask = dropout_mask(batch, hidden, recurrent_dropout, x)
            gx = F.linear(x, w_ih, b_ih)  # (T, B, G*H): the input projection, one GEMM for all steps
            out, h, c = recurrent_scan(mode, gx, h0[index], None if c0 is None else c0[index], w_hh, b_hh,
                                       lengths=lengths, rec_mask=rec_mask, reverse=direction == 1,
                                       activation=activation, recurrent_activation=recurrent_activation,
                                       reset_after=reset_after, backend=backend)
            direction_outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = direction_outputs[0] if num_directions == 1 else torch.cat(direction_outputs, dim=-1)
        if training and dropout > 0 and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    return layer_input, torch.stack(h_n), (torch.stack(c_n) if mode == "lstm" else None)


def gate_count(mode: str) -> int:
    """How many gate blocks ``G`` the stacked weights of ``mode`` hold (1, 4 or 3)."""
    return GATES[mode]
