"""Functional recurrent networks: the stacked, bidirectional layer driver over any cell, and one scan.

The layering is ``recurrent_cells -> ops -> this module -> seqtorch.layers / seqtorch.cells``. This
module owns what is the same for every cell and backend: the input projection ``x @ W_ih^T + b_ih`` (one
GEMM over all timesteps, :meth:`~seqtorch.recurrent_cells.Cell.scan_inputs`), the dropout masks
(seqtorch's input and recurrent dropout, zoneout, torch.nn's dropout between layers), stacking and
directions. The sequential part of each layer and direction is one call of
:func:`seqtorch.ops.dispatch.scan`, which picks the implementation (the rule is there, in one place).

Inputs here are assumed valid: the public boundary that checks shapes, dtypes and devices is the
Module (:mod:`seqtorch.layers`, :mod:`seqtorch.cells`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .ops import dispatch
from .ops.contract import ScanInputs, ScanOptions
from .ops.reference import valid_steps
from .recurrent_cells import Cell, get_cell
from .recurrent_cells.activations import canonical

available_backends = dispatch.available_backends


def scan_options(cell: Cell | str, options: Mapping[str, Any]) -> ScanOptions:
    """The forward direction's :class:`~seqtorch.ops.contract.ScanOptions` of ``cell`` with a Module's
    option values (its activations and the cell's numeric options, by name; defaults where absent)."""
    cell = get_cell(cell) if isinstance(cell, str) else cell
    return ScanOptions(cell, canonical(options.get("activation", "tanh")),
                       canonical(options.get("recurrent_activation", "sigmoid")), False,
                       tuple([float(options[name]) for name in cell.cell_args]) if cell.cell_args else ())


def scan(cell: Cell | str, gx: Tensor, states: Sequence[Tensor], weights: Sequence[Tensor | None], *,
         lengths: Tensor | None = None, rec_mask: Tensor | None = None, reverse: bool = False,
         activation: str = "tanh", recurrent_activation: str = "sigmoid",
         keep: Sequence[Tensor] | None = None, cell_args: Sequence[float] = (), backend: str = "auto",
         mask: Tensor | None = None, restart: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction of any registered cell over a sequence, on the chosen backend.

    Args:
        cell: a :class:`~seqtorch.recurrent_cells.Cell` or a registered name ("rnn", "lstm", "gru", ...).
        gx: (T, B, G*H) input projection. states: the initial states, h (B, P) first (LSTM: h, c).
        weights: the cell's recurrent weights, in its order (``(w_hh, b_hh)`` for the built-in cells;
            b_hh may be None). lengths: (B,) int64 on gx's device with 1 <= lengths <= T, or None.
        rec_mask: (B, P) recurrent-dropout mask, or None. reverse: run from t = T-1 down to 0.
        keep: None, or per state the (T, B, width) coefficients k of ``state = k * previous + (1 - k) *
            new`` (zoneout's, :func:`zoneout_coefficients`). cell_args: the cell's numeric options.
        mask, restart: (T, B) bool or None, as :class:`~seqtorch.ops.contract.ScanInputs` says (``restart``
            in this direction's step order).

    Returns:
        output (T, B, P) (zero at invalid steps) and the final states (each sequence's last valid one).
    """
    cell = get_cell(cell) if isinstance(cell, str) else cell
    opts = ScanOptions(cell, canonical(activation), canonical(recurrent_activation), bool(reverse),
                       tuple(float(a) for a in cell_args))
    inputs = ScanInputs(gx, tuple(states), tuple(weights), lengths=lengths, mask=mask, restart=restart,
                        rec_mask=rec_mask, keep=None if keep is None else tuple(keep))
    return dispatch.scan(opts, inputs, backend=backend)


def dropout_mask(batch: int, features: int, p: float, like: Tensor) -> Tensor:
    """A (batch, features) inverted-dropout mask: 0 with probability p, else 1/(1-p).

    One mask per sequence, reused at every timestep (variational dropout, Gal & Ghahramani 2016).
    """
    keep = torch.full((batch, features), 1.0 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1.0 - p)


def zoneout_coefficients(steps: int, batch: int, width: int, p: float, training: bool, like: Tensor) -> Tensor:
    """(T, B, width) coefficients k of ``state = k * previous + (1 - k) * new``: a fresh 0/1 mask per step
    (1 with probability p) in training, p itself in evaluation."""
    if training:
        return torch.bernoulli(torch.full((steps, batch, width), p, dtype=like.dtype, device=like.device))
    return torch.full((1, 1, 1), p, dtype=like.dtype, device=like.device).expand(steps, batch, width)


def mask_padding(x: Tensor, lengths: Tensor | None, mask: Tensor | None = None) -> Tensor:
    """``x`` (T, B, F) with zeros at its invalid steps (at and past each sequence's length, and where
    ``mask`` (T, B) is False): padding (NaN included) then cannot reach the input projection's gradient (its
    weight gradient is ``dgx^T x`` over every step)."""
    valid = valid_steps(x.shape[0], lengths, mask) if x.shape[0] else None
    return x if valid is None else torch.where(valid.unsqueeze(-1), x, 0.0)


def reverse_restart(resets: Tensor | None) -> Tensor | None:
    """The reverse direction's restarts of a batch's ``resets`` (T, B): a segment that starts at step s (in
    time order) ends where the next starts, so walking back, the state restarts at step t when a segment
    starts at t + 1."""
    if resets is None:
        return None
    return torch.cat([resets[1:], torch.zeros_like(resets[:1])])


def pack_as(x: Tensor, like: PackedSequence) -> Tensor:
    """The data of a padded, time-major ``x`` (T, B, F), batch in its original order, packed exactly as
    ``like`` is (its ``batch_sizes`` and ``sorted_indices``): ``PackedSequence(pack_as(x, like), ...)``."""
    lengths = (like.batch_sizes.unsqueeze(0) > torch.arange(x.shape[1]).unsqueeze(1)).sum(1)  # sorted order
    if like.sorted_indices is not None:
        x = x.index_select(1, like.sorted_indices.to(x.device))
    return pack_padded_sequence(x, lengths, enforce_sorted=True).data


def dropout_between_layers(x: Tensor, p: float, packing: PackedSequence | None = None) -> Tensor:
    """torch.nn's dropout on a layer's output (T, B, F), drawing the random numbers torch.nn draws: on the
    padded output, or, for a packed input (``packing``), on the packed data, where torch.nn applies it
    (so the same seed gives the same numbers and leaves the generator in the same state)."""
    if packing is None:
        return F.dropout(x, p=p, training=True)
    data = F.dropout(pack_as(x, packing), p=p, training=True)
    packed = PackedSequence(data, packing.batch_sizes, packing.sorted_indices, packing.unsorted_indices)
    return pad_packed_sequence(packed, total_length=x.shape[0])[0]


def stack(cell: Cell | str, input: Tensor, states0: Sequence[Tensor],
          weights: Sequence[tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]], *, num_layers: int,
          bidirectional: bool, dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None,
          options: Mapping[str, Any] | None = None, packing: PackedSequence | None = None,
          mask: Tensor | None = None, resets: Tensor | None = None, reset_states0: Sequence[Tensor] = (),
          all_states: bool = False):
    """A stacked, optionally bidirectional network of any cell over a padded, time-major batch.

    Args:
        cell: a :class:`~seqtorch.recurrent_cells.Cell` or a registered name.
        input: (T, B, I).
        states0: the initial states, one (L*D, B, width) tensor per state of the cell (h first; row
            ``l*D + d`` for layer l, direction d).
        weights: per layer and direction in the same order, ``(input weights, recurrent weights)`` in the
            cell's :attr:`~seqtorch.recurrent_cells.Cell.input_weights` and ``weights`` orders.
        dropout: torch.nn's dropout on each layer's output except the last (training only).
        lengths: (B,) int64 on input's device, or None.
        mask: (T, B) bool or None: step t of sequence b is skipped where False (its state carries over, its
            output is 0), in both directions; with ``lengths``, a step is taken where both allow it.
        resets: (T, B) bool or None: where True, step t starts a new segment from ``reset_states0`` (by
            default ``states0``); the reverse direction restarts where the next segment starts
            (:func:`reverse_restart`).
        reset_states0: the states a reset restarts from, as ``states0``; empty: ``states0``.
        all_states: also return every step's states of the last layer.
        packing: the PackedSequence the input was unpacked from, if it was (``dropout`` then draws on the
            packed data, as torch.nn does: :func:`dropout_between_layers`).
        options: seqtorch's option values by name (:mod:`seqtorch.options`; absent ones at their
            defaults): ``input_dropout``, ``recurrent_dropout`` and ``zoneout`` (training only but zoneout,
            whose expectation applies in evaluation), the activations, the cell's numeric options, ``backend``.

    Returns:
        output (T, B, D*P) of the last layer (zero at invalid steps) and the final states, each
        (L*D, B, width); with ``all_states``, also the last layer's states after every step, one (T, B,
        D*width) tensor per state (the directions side by side, as in the output), zero at invalid steps.
    """
    cell = get_cell(cell) if isinstance(cell, str) else cell
    options = {} if options is None else options
    p_input, p_recurrent = options.get("input_dropout", 0.0), options.get("recurrent_dropout", 0.0)
    p_zoneout, backend = options.get("zoneout", 0.0), options.get("backend", "auto")
    forward = scan_options(cell, options)
    directions = (forward, replace(forward, reverse=True)) if bidirectional else (forward,)
    restarts = (None, None) if resets is None else (resets, reverse_restart(resets))
    steps, batch = input.shape[0], input.shape[1]
    # the next layers' inputs are zero there already
    layer_input = input if lengths is None and mask is None else mask_padding(input, lengths, mask)
    finals: list[list[Tensor]] = [[] for _ in cell.states]
    every: list[list[Tensor]] = [[] for _ in cell.states]
    for layer in range(num_layers):
        direction_outputs = []
        last_layer = layer == num_layers - 1
        for direction, opts in enumerate(directions):
            index = layer * len(directions) + direction
            input_weights, recurrent_weights = weights[index]
            states = tuple([s[index] for s in states0])
            x = layer_input
            if training and p_input > 0:
                x = x * dropout_mask(batch, x.shape[-1], p_input, x)
            rec_mask = None
            if training and p_recurrent > 0:
                rec_mask = dropout_mask(batch, states[0].shape[-1], p_recurrent, x)
            keep = None
            if p_zoneout > 0:
                keep = tuple(zoneout_coefficients(steps, batch, s.shape[-1], p_zoneout, training, x) for s in states)
            histories = ()
            result = None
            if mask is None and resets is None and not (all_states and last_layer):
                # inference on the C++ loop may project x inside the scan (None where it does not serve)
                result = dispatch.scan_from_input(opts, x, tuple(input_weights), states, tuple(recurrent_weights),
                                                  lengths=lengths, rec_mask=rec_mask, keep=keep, backend=backend)
            if result is not None:
                out, last = result
            else:
                # gx (T, B, G*H), all steps at once
                gx, recurrent_weights = cell.scan_inputs(x, input_weights, recurrent_weights, opts.cell_args)
                inputs = ScanInputs(gx, states, tuple(recurrent_weights), lengths=lengths, mask=mask,
                                    restart=restarts[direction], reset_states=tuple(s[index] for s in reset_states0),
                                    rec_mask=rec_mask, keep=keep)
                out, last, *histories = dispatch.scan(opts, inputs, backend=backend,
                                                      histories=all_states and last_layer)
            direction_outputs.append(out)
            for k, state in enumerate(last):
                finals[k].append(state)
            for k, history in enumerate(histories[0] if histories else ()):
                every[k].append(history)
        layer_input = direction_outputs[0] if len(directions) == 1 else torch.cat(direction_outputs, dim=-1)
        if training and dropout > 0 and layer < num_layers - 1:
            layer_input = dropout_between_layers(layer_input, dropout, packing)
    result = layer_input, tuple([torch.stack(states) for states in finals])
    return result + (tuple(torch.cat(states, dim=-1) for states in every),) if all_states else result
