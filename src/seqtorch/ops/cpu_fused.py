"""The ``cpu_fused`` backend: a recurrent scan with a hand-written BPTT, no per-step autograd graph.

Public entry of the fused CPU path (the loops are in :mod:`.cpu_loops`, which hands the LSTM and GRU to
the C++ loops of ``csrc/`` on CPU when they are built (:mod:`.native`); the ``torch.library``
registration is in :mod:`.library`). Any device works (it is also the fallback on CUDA when the triton
kernel cannot serve a shape); it is the default (``backend="auto"``) on CPU.

Dtypes: the scan runs in the promoted floating dtype of ``gx``, ``h0`` and ``w_hh``, at least float32,
and returns ``gx``'s dtype. So under autocast (``gx`` arrives as bf16/fp16 from the input projection
while the weights are float32) the recurrence is computed and accumulated in float32 and the outputs
are bf16/fp16 like the autocast ops around it; float64 stays float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..reference import GATES, MODES
from .library import recurrent_scan_forward

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def supports_cpu_fused(gx: Tensor, hidden_size: int) -> str | None:
    """None if :func:`recurrent_scan_cpu_fused` can run ``gx`` (T, B, G*H), else the reason."""
    if gx.dtype not in _FLOATING:
        return f"dtype {gx.dtype} is not supported (expected one of {_FLOATING})"
    if gx.dim() != 3:
        return f"gx must be 3-D (T, B, G*H), got shape {tuple(gx.shape)}"
    return None


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def recurrent_scan_cpu_fused(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
                             b_hh: Tensor | None, *, lengths: Tensor | None = None,
                             rec_mask: Tensor | None = None, reverse: bool = False, activation: str = "tanh",
                             recurrent_activation: str = "sigmoid",
                             reset_after: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer, one direction: exactly :func:`seqtorch.reference.recurrent_scan_reference`'s semantics.

    Args:
        mode: "rnn", "lstm" or "gru".
        gx: (T, B, G*H) input projection. h0: (B, H). c0: (B, H) for "lstm" (None means zeros), else None.
        w_hh: (G*H, H). b_hh: (G*H,) or None.
        lengths: (B,) int64 on gx's device with 1 <= lengths <= T, or None.
        rec_mask: (B, H) recurrent dropout mask, or None.
        reverse: run from t = T-1 down to 0 (each sequence from its own last valid step).

    Returns:
        output (T, B, H) (zero past each length), h_n (B, H), c_n (B, H) for "lstm" else None, in gx's dtype.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out_dtype = gx.dtype
    dtype = _compute_dtype(gx, h0, w_hh)

    def cast(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(dtype)

    buffers = recurrent_scan_forward(mode, cast(gx).contiguous(), cast(h0), cast(c0) if mode == "lstm" else None,
                                     cast(w_hh), cast(b_hh), lengths, cast(rec_mask), reverse, activation,
                                     recurrent_activation, reset_after)
    states, cells = buffers[0], buffers[1]  # (T+1, B, H): initial state in slot 0 (slot T when reverse)
    output = states[:-1] if reverse else states[1:]
    h_n = states[0] if reverse else states[-1]
    c_n = None
    if mode == "lstm":
        c_n = cells[0] if reverse else cells[-1]
    if lengths is not None:
        steps = torch.arange(gx.shape[0], device=lengths.device).unsqueeze(1)
        output = torch.where((steps < lengths.unsqueeze(0)).unsqueeze(-1), output, 0.0)
    if out_dtype != dtype:
        output, h_n = output.to(out_dtype), h_n.to(out_dtype)
        c_n = None if c_n is None else c_n.to(out_dtype)
    return output, h_n, c_n
