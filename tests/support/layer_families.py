"""The three layer families ("rnn", "lstm", "gru") in their (h0, c0, w_hh, b_hh) terms, for the tests that
drive one scan of a torch.nn-style layer on each backend.

The library speaks of cells (:data:`seqtorch.recurrent_cells.CELLS`); these wrappers only name the cell of
a family and unpack its states, so that a parametrized test can say ``"lstm"`` and a backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqtorch import functional
from seqtorch.ops.reference import scan_reference
from seqtorch.recurrent_cells import Acts, get_cell

MODES = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def cell_name(mode: str, reset_after: bool = True) -> str:
    """The registered cell of a layer family: "rnn", "lstm", "gru" or (reset_after=False) "gru_reset_before"."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return "gru_reset_before" if mode == "gru" and not reset_after else mode


def _states(mode: str, h0: Tensor, c0: Tensor | None) -> tuple[Tensor, ...]:
    return (h0,) if mode != "lstm" else (h0, torch.zeros_like(h0) if c0 is None else c0)


def recurrent_scan(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None, *,
                   lengths: Tensor | None = None, rec_mask: Tensor | None = None, reverse: bool = False,
                   activation: str = "tanh", recurrent_activation: str = "sigmoid", reset_after: bool = True,
                   backend: str = "auto") -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`seqtorch.functional.scan` of a family: output (T, B, H), h_n, c_n (LSTM) or None."""
    out, finals = functional.scan(cell_name(mode, reset_after), gx, _states(mode, h0, c0), (w_hh, b_hh),
                                  lengths=lengths, rec_mask=rec_mask, reverse=reverse, activation=activation,
                                  recurrent_activation=recurrent_activation, backend=backend)
    return out, finals[0], (finals[1] if mode == "lstm" else None)


def recurrent_scan_reference(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                             b_hh: Tensor | None, *, lengths: Tensor | None = None, rec_mask: Tensor | None = None,
                             reverse: bool = False, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                             reset_after: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`seqtorch.ops.reference.scan_reference` of a family, as :func:`recurrent_scan` returns it."""
    out, states = scan_reference(get_cell(cell_name(mode, reset_after)), gx, _states(mode, h0, c0), (w_hh, b_hh),
                                 lengths=lengths, rec_mask=rec_mask, reverse=reverse,
                                 acts=Acts.of(activation, recurrent_activation))
    return out, states[0], (states[1] if mode == "lstm" else None)


def recurrent_scan_triton(mode: str, *args, **kwargs) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`recurrent_scan` on the Triton kernels (``backend="triton"``)."""
    return recurrent_scan(mode, *args, backend="triton", **kwargs)


def rnn(mode: str, input: Tensor, h0: Tensor, c0: Tensor | None, weights, *, num_layers: int, bidirectional: bool,
        dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None, reset_after: bool = True,
        **options) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`seqtorch.functional.stack` of a family, with ``(w_ih, w_hh, b_ih, b_hh)`` per layer and
    direction and seqtorch's options by name: output, h_n, c_n (LSTM) or None."""
    out, finals = functional.stack(cell_name(mode, reset_after), input, (h0,) if mode != "lstm" else (h0, c0),
                                   [((w_ih, b_ih), (w_hh, b_hh)) for w_ih, w_hh, b_ih, b_hh in weights],
                                   num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
                                   training=training, lengths=lengths, options=options)
    return out, finals[0], (finals[1] if mode == "lstm" else None)
