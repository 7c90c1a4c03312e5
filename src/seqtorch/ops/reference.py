"""The reference scan: the plain loop over a cell's step, differentiable by autograd, any device and dtype.

Every fast path in :mod:`seqtorch.ops` is tested against :func:`scan_reference`. Each cell's equations
are in its own folder under :mod:`seqtorch.recurrent_cells` (its ``step``); this loop adds only what is
the same for every cell:

* ``gx`` is the input projection ``x @ W_ih^T + b_ih``, computed for all steps before the loop (it does
  not depend on the state); the loop does the recurrent part.
* ``h~ = h * rec_mask``: variational recurrent dropout multiplies the state where it enters the cell's
  matrix products; the carried state (``c``, the GRU's ``z * h``) is the unmasked one, as in Keras.
* ``lengths`` and ``mask``: a step that is not valid (at or past a sequence's length, or where ``mask`` is
  False) leaves the state unchanged and outputs zeros, so each direction computes as if the step were not in
  the sequence (the reverse direction starts at each sequence's own last valid step). An invalid step's
  input never reaches the math (``gx`` is zeroed there first), so NaN or garbage in the padding cannot reach
  a gradient.
* ``restart``: where True, the state entering step t is the reset state (``reset_states``, by default the
  initial state) instead of the one carried from the step before (the caller gives it in this direction's
  order), so each segment computes as a sequence of its own.

Conventions of torch.nn: gate order LSTM ``i, f, g, o``, GRU ``r, z, n``; ``activation`` is the main
nonlinearity (torch's ``nonlinearity`` for SimpleRNN), ``recurrent_activation`` the gates' function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..recurrent_cells import Acts, Cell, get_cell

__all__ = ["scan_reference", "state_history_reference"]


def scan_reference(cell: Cell | str, gx: Tensor, states0: tuple[Tensor, ...], weights: tuple[Tensor | None, ...],
                   *, lengths: Tensor | None = None, rec_mask: Tensor | None = None, reverse: bool = False,
                   acts: Acts = Acts(), keep: tuple[Tensor, ...] | None = None,
                   cell_args: tuple[float, ...] = (), mask: Tensor | None = None, restart: Tensor | None = None,
                   reset_states: tuple[Tensor, ...] = ()) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one layer, one direction, over a whole sequence: the plain loop every fast path must equal.

    Args:
        cell: the cell (:class:`~seqtorch.recurrent_cells.Cell`) or its registered name. gx: (T, B, G*H). states0: the initial states, h (B, P)
            first (LSTM: (h0, c0)). weights: the cell's recurrent weights in its order.
        lengths: (B,) int64 on gx's device, 1 <= lengths <= T, or None (every sequence is T long).
        rec_mask: (B, P) recurrent-dropout mask (already scaled by 1/(1-p)), or None.
        reverse: run from t = T-1 down to 0. acts: the activations.
        keep: None, or per state (T, B, width) coefficients k: the state after step t is
            ``k[t] * previous + (1 - k[t]) * new`` (Krueger et al. 2017's zoneout: 0/1 masks in training,
            the probability p in evaluation), before ``lengths`` freezes it.
        cell_args: the cell's numeric options (LayerNorm's eps).
        mask: (T, B) bool, or None: step t of sequence b is valid where True (with ``lengths``, where both say so).
        restart: (T, B) bool, or None: where True, step t starts from ``reset_states`` (a reset), or from
            ``states0`` when none are given.

    Returns:
        output (T, B, P) (zero at invalid steps) and the final states (each sequence's last valid one).
    """
    out, history = _scan(cell, gx, states0, weights, lengths=lengths, rec_mask=rec_mask, reverse=reverse,
                         acts=acts, keep=keep, cell_args=cell_args, mask=mask, restart=restart,
                         reset_states=reset_states)
    return out, history[-1]


def state_history_reference(cell: Cell | str, gx: Tensor, states0: tuple[Tensor, ...],
                            weights: tuple[Tensor | None, ...], *, lengths: Tensor | None = None,
                            rec_mask: Tensor | None = None, reverse: bool = False, acts: Acts = Acts(),
                            keep: tuple[Tensor, ...] | None = None, cell_args: tuple[float, ...] = (),
                            mask: Tensor | None = None, restart: Tensor | None = None,
                            reset_states: tuple[Tensor, ...] = ()) -> tuple[Tensor, ...]:
    """Each state's history, as the fused scans keep it: (T+1, B, width) per state, the initial state in
    slot 0 (slot T when ``reverse``) and the state after step t in slot t+1 (slot t when ``reverse``);
    a sequence's state stays frozen over its invalid steps. Same arguments as :func:`scan_reference`."""
    _, history = _scan(cell, gx, states0, weights, lengths=lengths, rec_mask=rec_mask, reverse=reverse, acts=acts,
                       keep=keep, cell_args=cell_args, mask=mask, restart=restart, reset_states=reset_states)
    if reverse:
        history = history[::-1]
    return tuple(torch.stack(per_state) for per_state in zip(*history))


def valid_steps(steps: int, lengths: Tensor | None, mask: Tensor | None) -> Tensor | None:
    """(T, B) bool: which steps of which sequences are valid (inside the length and not masked), or None when
    all are."""
    valid = None
    if lengths is not None:
        valid = torch.arange(steps, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)
    if mask is not None:
        valid = mask if valid is None else valid & mask
    return valid


def _scan(cell, gx, states0, weights, *, lengths, rec_mask, reverse, acts, keep, cell_args, mask=None,
          restart=None, reset_states=()):
    """The loop: output (T, B, P) and the states in the order they were visited (initial state first)."""
    cell = get_cell(cell) if isinstance(cell, str) else cell
    steps = range(gx.shape[0] - 1, -1, -1) if reverse else range(gx.shape[0])
    valid_all = valid_steps(gx.shape[0], lengths, mask)
    outputs: list[Tensor | None] = [None] * gx.shape[0]
    states = tuple(states0)
    history = [states]
    for t in steps:
        gx_t = gx[t]
        if restart is not None:  # a reset: this step starts from the reset states
            states = tuple(torch.where(restart[t].unsqueeze(-1), r, s) for r, s in zip(reset_states or states0, states))
        if valid_all is not None:
            valid = valid_all[t].unsqueeze(-1)  # (B, 1): is step t inside each sequence?
            gx_t = torch.where(valid, gx_t, 0.0)
        h_in = states[0] if rec_mask is None else states[0] * rec_mask
        new = cell.step(gx_t, h_in, states, weights, acts, cell_args)
        if keep is not None:  # zoneout
            new = tuple(k[t] * s + (1 - k[t]) * n for k, s, n in zip(keep, states, new))
        if valid_all is None:
            states, outputs[t] = new, new[0]
        else:
            states = tuple(torch.where(valid, n, s) for n, s in zip(new, states))
            outputs[t] = torch.where(valid, new[0], torch.zeros_like(new[0]))
        history.append(states)
    if not outputs:
        return gx.new_zeros((0, *states[0].shape)), history
    return torch.stack(outputs), history
