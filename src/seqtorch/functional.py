"""Functional recurrent ops: the stacked, bidirectional layer driver and the backend dispatch.

The layering is ``recurrent_cells / reference / ops  ->  this module  ->  seqtorch.layers``. This module
owns what is the same for every backend: the input projection ``x @ W_ih^T + b_ih`` (one GEMM over all
timesteps), dropout masks, stacking, directions. The sequential part, :func:`scan`, is dispatched to a
backend:

* ``"reference"``: :func:`seqtorch.reference.scan_reference`, the plain autograd loop.
* ``"cpu_fused"``: a hand-written BPTT (the C++ loop on CPU, the Python loop elsewhere), any device.
* ``"triton"``: fused Triton kernels, CUDA tensors (or CPU under ``TRITON_INTERPRET=1``).
* ``"auto"``: the fastest backend that serves the input, see :func:`resolve_backend`.

The fallback rule, in one place: ``"auto"`` takes the first of ``triton`` (CUDA tensors only),
``cpu_fused``, ``reference`` that is installed, has the cell, and supports the input; a backend named
explicitly that cannot serve raises with the reason instead. Inside ``cpu_fused`` the C++ loop serves CPU
float32/float64 tensors of cells with C++ code, the Python loop everything else
(:func:`seqtorch.ops.cpu_fused.implementation`). Under autograd transforms every backend keeps PyTorch's
full semantics, by the rules of :mod:`seqtorch.ops.autograd`.

Inputs here are assumed valid: the public boundary that checks shapes, dtypes and devices is the
Module (:mod:`seqtorch.layers`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .recurrent_cells import Acts, get_cell
from .recurrent_cells.activations import canonical
from .reference import GATES, cell_name, scan_reference

BACKENDS = ("auto", "reference", "cpu_fused", "triton")


def _ops():
    from . import ops  # imported lazily: the kernels sit below this layer but load only when asked for

    return ops


def available_backends() -> list[str]:
    """The backends this install can run (besides ``"auto"``)."""
    return ["reference"] + [name for name in ("cpu_fused", "triton") if name in _ops().BACKENDS]


def _options(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args=()):
    from .ops.contract import ScanOptions

    return ScanOptions(cell, canonical(activation), canonical(recurrent_activation), bool(reverse),
                       tuple(float(a) for a in cell_args))


def resolve_backend(backend: str, gx: Tensor, hidden_size: int | None = None, *, cell: str = "lstm",
                    activation: str = "tanh", recurrent_activation: str = "sigmoid") -> str:
    """Name of the backend that ``backend`` means for a scan of ``cell`` on ``gx`` (T, B, G*H).

    ``hidden_size`` is H (by default the width of gx over the cell's gate count).

    ``"auto"`` picks the first that is installed, has the cell and supports the input: ``"triton"`` for
    CUDA tensors, then ``"cpu_fused"``, then ``"reference"``. A backend asked for by name that is not
    installed, lacks the cell, or cannot serve the input raises a RuntimeError with the reason.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return backend
    spec = get_cell(cell)
    if hidden_size is None:
        hidden_size = gx.shape[-1] // spec.gates
    backends = _ops().BACKENDS
    opts = _options(cell, activation, recurrent_activation, False)
    if backend == "auto":
        candidates = (["triton"] if gx.device.type == "cuda" else []) + ["cpu_fused"]
        for name in candidates:
            if name in backends and backends[name].has_cell(cell) and \
                    backends[name].supports(opts, gx, hidden_size) is None:
                return name
        return "reference"
    if backend not in backends:
        raise RuntimeError(f"backend {backend!r} is not available in this install "
                           f"(available: {available_backends()})")
    if not backends[backend].has_cell(cell):
        raise RuntimeError(f"backend {backend!r} has no kernel for cell {cell!r}; use backend='auto' to fall "
                           f"back to the next path")
    reason = backends[backend].supports(opts, gx, hidden_size)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} cannot run this input: {reason}; use backend='auto' "
                           f"to fall back to the next path")
    return backend


def scan(cell: str, gx: Tensor, states: Sequence[Tensor], weights: Sequence[Tensor | None], *,
         lengths: Tensor | None = None, rec_mask: Tensor | None = None, reverse: bool = False,
         activation: str = "tanh", recurrent_activation: str = "sigmoid",
         zoneout: Sequence[Tensor] | None = None, cell_args: Sequence[float] = (),
         backend: str = "auto") -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction of any registered cell over a sequence, on the chosen backend.

    Args:
        cell: a name in :data:`seqtorch.recurrent_cells.CELLS` ("rnn", "lstm", "gru", "gru_reset_before").
        gx: (T, B, G*H) input projection. states: the initial states, h (B, P) first (LSTM: h, c).
        weights: the cell's recurrent weights, in its order (``(w_hh, b_hh)`` for the built-in cells;
            b_hh may be None). lengths: (B,) int64 on gx's device with 1 <= lengths <= T, or None.
        rec_mask: (B, P) recurrent-dropout mask, or None. reverse: run from t = T-1 down to 0.
        zoneout: None, or per state the (T, B, width) coefficients k of ``state = k * previous +
            (1 - k) * new`` (see :func:`zoneout_coefficients`). cell_args: the cell's numeric options.

    Returns:
        output (T, B, P) (zero past each length) and the final states (each sequence's last valid one).
    """
    name = resolve_backend(backend, gx, cell=cell, activation=activation, recurrent_activation=recurrent_activation)
    zoneout = None if zoneout is None else tuple(zoneout)
    if name == "reference":
        return scan_reference(cell, gx, tuple(states), tuple(weights), lengths=lengths, rec_mask=rec_mask,
                              reverse=reverse, acts=Acts.of(activation, recurrent_activation), zoneout=zoneout,
                              cell_args=tuple(cell_args))
    opts = _options(cell, activation, recurrent_activation, reverse, cell_args)
    return _ops().BACKENDS[name].scan(opts, gx, tuple(states), tuple(weights), lengths, rec_mask, zoneout)


def recurrent_scan(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                   b_hh: Tensor | None, *, lengths: Tensor | None = None, rec_mask: Tensor | None = None,
                   reverse: bool = False, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                   reset_after: bool = True, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`scan` for the three layer families, in their (h0, c0, w_hh, b_hh) terms.

    mode "rnn", "lstm" or "gru" (``reset_after`` picks the GRU); gx (T, B, G*H), h0/c0 (B, H) (c0 None
    means zeros), w_hh (G*H, H), b_hh (G*H,) or None, lengths (B,) int64 or None, rec_mask (B, H) or None.
    Returns output (T, B, H), h_n (B, H), c_n (B, H) or None.
    """
    states = (h0,) if mode != "lstm" else (h0, torch.zeros_like(h0) if c0 is None else c0)
    out, finals = scan(cell_name(mode, reset_after), gx, states, (w_hh, b_hh), lengths=lengths, rec_mask=rec_mask,
                       reverse=reverse, activation=activation, recurrent_activation=recurrent_activation,
                       backend=backend)
    return out, finals[0], (finals[1] if mode == "lstm" else None)


def dropout_mask(batch: int, features: int, p: float, like: Tensor) -> Tensor:
    """A (batch, features) inverted-dropout mask: 0 with probability p, else 1/(1-p).

    One mask per sequence, reused at every timestep (variational dropout, Gal & Ghahramani 2016).
    """
    keep = torch.full((batch, features), 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)


def mask_padding(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``x`` (T, B, F) with zeros at and past each sequence's length: padding (NaN included) then cannot
    reach the input projection's gradient (its weight gradient is ``dgx^T x`` over every step)."""
    if lengths is None or x.shape[0] == 0:
        return x
    t = torch.arange(x.shape[0], device=lengths.device).unsqueeze(1)
    return torch.where((t < lengths.unsqueeze(0)).unsqueeze(-1), x, 0.0)


def stack(cell: str, input: Tensor, states0: Sequence[Tensor],
          weights: Sequence[tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]], *, num_layers: int,
          bidirectional: bool, dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None,
          input_dropout: float = 0.0, recurrent_dropout: float = 0.0, zoneout: float = 0.0,
          activation: str = "tanh", recurrent_activation: str = "sigmoid", cell_args: Sequence[float] = (),
          backend: str = "auto") -> tuple[Tensor, tuple[Tensor, ...]]:
    """A stacked, optionally bidirectional network of any registered cell over a padded, time-major batch.

    Args:
        cell: a name in :data:`seqtorch.recurrent_cells.CELLS`.
        input: (T, B, I).
        states0: the initial states, one (L*D, B, width) tensor per state of the cell (h first; row
            ``l*D + d`` for layer l, direction d).
        weights: per layer and direction in the same order, ``(input weights, recurrent weights)`` in the
            cell's :attr:`~seqtorch.recurrent_cells.base.Cell.input_weights` and ``weights`` orders.
        dropout: torch.nn's dropout on each layer's output except the last (training only).
        lengths: (B,) int64 on input's device, or None.
        input_dropout / recurrent_dropout: variational dropout on each layer's input / recurrent state:
            one mask per sequence, layer and direction, constant over time (training only).
        zoneout: each state keeps its previous value with this probability, a fresh mask per step, state,
            layer and direction in training (Krueger et al. 2017); in evaluation the expectation,
            ``state = zoneout * previous + (1 - zoneout) * new``.
        cell_args: the cell's numeric options (its ``cell_args``, e.g. LayerNorm's eps).

    Returns:
        output (T, B, D*P) of the last layer (zero past each length) and the final states, each
        (L*D, B, width).
    """
    spec = get_cell(cell)
    num_directions = 2 if bidirectional else 1
    steps, batch = input.shape[0], input.shape[1]
    layer_input = mask_padding(input, lengths)  # the next layers' inputs are zero there already
    finals: list[list[Tensor]] = [[] for _ in spec.states]
    for layer in range(num_layers):
        direction_outputs = []
        for direction in range(num_directions):
            index = layer * num_directions + direction
            input_weights, recurrent_weights = weights[index]
            states = tuple(s[index] for s in states0)
            x = layer_input
            if training and input_dropout > 0:
                x = x * dropout_mask(batch, x.shape[-1], input_dropout, x)
            rec_mask = None
            if training and recurrent_dropout > 0:
                rec_mask = dropout_mask(batch, states[0].shape[-1], recurrent_dropout, x)
            keep = None
            if zoneout > 0:
                keep = tuple(zoneout_coefficients(steps, batch, s.shape[-1], zoneout, training, x) for s in states)
            from .ops import projected  # the kernels load on first use

            if projected.serves(backend, spec, x, [*input_weights, *recurrent_weights],
                                [*states, rec_mask, *(keep or ())]):
                # inference on the C++ loop: x projected inside the scan, by chunks of steps
                out, last = projected.scan(_options(cell, activation, recurrent_activation, direction == 1,
                                                    cell_args), x, input_weights, states, recurrent_weights,
                                           lengths, rec_mask, keep)
            else:
                # gx (T, B, G*H), all steps at once
                gx, recurrent_weights = spec.scan_inputs(x, input_weights, recurrent_weights, tuple(cell_args))
                out, last = scan(cell, gx, states, recurrent_weights, lengths=lengths, rec_mask=rec_mask,
                                 reverse=direction == 1, activation=activation,
                                 recurrent_activation=recurrent_activation, zoneout=keep, cell_args=cell_args,
                                 backend=backend)
            direction_outputs.append(out)
            for k, state in enumerate(last):
                finals[k].append(state)
        layer_input = direction_outputs[0] if num_directions == 1 else torch.cat(direction_outputs, dim=-1)
        if training and dropout > 0 and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    return layer_input, tuple(torch.stack(states) for states in finals)


def zoneout_coefficients(steps: int, batch: int, width: int, p: float, training: bool, like: Tensor) -> Tensor:
    """(T, B, width) coefficients k of ``state = k * previous + (1 - k) * new``: a fresh 0/1 mask per step
    (1 with probability p) in training, p itself in evaluation."""
    if training:
        return torch.bernoulli(torch.full((steps, batch, width), p, dtype=like.dtype, device=like.device))
    return torch.full((1, 1, 1), p, dtype=like.dtype, device=like.device).expand(steps, batch, width)


def rnn(mode: str, input: Tensor, h0: Tensor, c0: Tensor | None,
        weights: Sequence[tuple[Tensor, Tensor, Tensor | None, Tensor | None]], *, num_layers: int,
        bidirectional: bool, dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None,
        input_dropout: float = 0.0, recurrent_dropout: float = 0.0, activation: str = "tanh",
        recurrent_activation: str = "sigmoid", reset_after: bool = True,
        backend: str = "auto") -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`stack` for the three layer families, in torch.nn's terms.

    Args:
        mode: "rnn", "lstm" or "gru" (``reset_after`` picks the GRU).
        input: (T, B, I). h0: (L*D, B, H), row ``l*D + d`` for layer l, direction d. c0: the same for
            "lstm", else None.
        weights: ``(w_ih, w_hh, b_ih, b_hh)`` per layer and direction in the same order; w_ih (G*H, I_l),
            w_hh (G*H, H), biases (G*H,) or None.
        the rest: as :func:`stack`.

    Returns:
        output (T, B, D*H) of the last layer (zero past each length), h_n (L*D, B, H), c_n or None.
    """
    states0 = (h0,) if mode != "lstm" else (h0, c0)
    out, finals = stack(cell_name(mode, reset_after), input, states0,
                        [((w_ih, b_ih), (w_hh, b_hh)) for w_ih, w_hh, b_ih, b_hh in weights], num_layers=num_layers,
                        bidirectional=bidirectional, dropout=dropout, training=training, lengths=lengths,
                        input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, activation=activation,
                        recurrent_activation=recurrent_activation, backend=backend)
    return out, finals[0], (finals[1] if mode == "lstm" else None)


def gate_count(mode: str) -> int:
    """How many gate blocks ``G`` the stacked weights of ``mode`` hold (1, 4 or 3)."""
    return GATES[mode]
