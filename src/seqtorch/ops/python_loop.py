"""The scan as a Python loop over PyTorch ops: written once for every cell, any device.

Per step: ``h~ = h * rec_mask``, one GEMM per product of the cell (:class:`~seqtorch.recurrent_cells.base.
Product`), the cell's pointwise code (``loop_forward``), and, where a sequence has ended, the state frozen.
The backward walks the steps in the other order with the cell's ``loop_backward`` and one GEMM per product
for the state gradient; the weights' gradients are one GEMM over all ``T*B`` rows afterwards
(:mod:`.autograd`). Buffers follow :mod:`.contract`. This loop serves where the C++ loop cannot (other
devices, installs without a compiler, a cell without ``cpu.h``) and is tested against the reference.

``lengths`` and ``mask``: an invalid step (past a sequence's length, or masked) still runs for that row, then
the row's states are restored (``torch.where``) and its saved rows zeroed; the backward gives such a row zero
gate gradients and passes its state gradient through. Only the steps with an invalid row need that work.
``restart``: at a step with a reset, the reset rows read the initial states instead of the carried ones (and
the products read ``h_0``, kept in HM); in the backward their state gradient goes to the initial states.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..recurrent_cells import Sizes
from ..recurrent_cells.base import BackwardStep, ForwardStep
from .buffers import new_buffer, placeholder
from .contract import ForwardLayout, ScanOptions, define, sizes_of
from .reference import valid_steps


class Steps:
    """Step order and history slots of one direction, which steps have invalid rows, and where resets are."""

    def __init__(self, steps: int, reverse: bool, lengths: Tensor | None, mask: Tensor | None,
                 restart: Tensor | None, batch: int) -> None:
        self.order = range(steps - 1, -1, -1) if reverse else range(steps)
        self.reverse = reverse
        self.first = steps if reverse else 0  # slot of the initial state
        self.last = 0 if reverse else steps   # slot of the final state
        self.valid = None                     # (T, B, 1) bool: step t of sequence b is valid
        self.masked = [False] * steps         # whether step t has an invalid row
        self.restart = None                   # (T, B, 1) bool: step t of sequence b starts from the initial states
        self.restarts = [False] * steps       # whether step t has a reset row
        valid = valid_steps(steps, lengths, mask)
        if valid is not None and batch > 0:
            self.valid = valid.unsqueeze(-1)
            self.masked = (~valid).any(dim=1).tolist()
        if restart is not None and batch > 0:
            self.restart = restart.unsqueeze(-1)
            self.restarts = restart.any(dim=1).tolist()

    def prev(self, t: int) -> int:
        """The history slot step t reads."""
        return t + 1 if self.reverse else t

    def next(self, t: int) -> int:
        """The history slot step t writes."""
        return t if self.reverse else t + 1


def _product_weights(cell, weights, transpose: bool) -> list[Tensor]:
    """Each product's weight block: (in, width) for the forward's ``X @ W^T``, (width, in) for the backward."""
    mats = []
    H = cell.hidden_size(weights)
    for product in cell.products:
        w = weights[product.weight]
        if product.rows is not None:
            w = w[product.rows[0] * H: product.rows[1] * H]
        mats.append(w.t().contiguous() if transpose else w.contiguous())
    return mats


def _rows(grads: dict[str, Tensor], dgx: Tensor, cell, index: int) -> Tensor:
    """The gradient of product ``index``'s output at one step: its own buffer, or dgx at its rows."""
    if f"dP{index}" in grads:
        return grads[f"dP{index}"]
    rows = cell.products[index].rows
    H = dgx.shape[-1] // cell.gates
    return dgx if rows is None else dgx[:, rows[0] * H: rows[1] * H]


def forward(cell_name: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
            save: bool, gx: Tensor, states: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
            mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
            keep: list[Tensor | None]) -> list[Tensor]:
    """The forward op (schema and outputs in :mod:`.contract`)."""
    opts = ScanOptions.from_op_args(cell_name, activation, recurrent_activation, reverse, cell_args)
    steps = Steps(gx.shape[0], reverse, lengths, mask, restart, gx.shape[1])
    # the caller chose the dtype: autocast must not turn the loop's GEMMs into bf16 ones
    with torch.autocast(device_type=gx.device.type, enabled=False):
        targets = [r for r in reset_states if r is not None] or list(states)
        return _forward(opts, save, gx, states, weights, steps, targets, rec_mask, keep)


def _forward(opts, save, gx, states, weights, steps, targets, rec_mask, keep):
    args = opts.cell_args
    cell, acts = opts.cell, opts.acts
    keep = [None if k is None else k.contiguous() for k in keep]
    sizes = sizes_of(cell, gx, states)
    T, B, H, P = sizes.T, sizes.B, sizes.H, sizes.P
    widths = cell.state_sizes(H, P)
    weights = tuple(weights)

    histories = [new_buffer((T + 1, B, widths[0]), gx)]
    histories += [new_buffer((T + 1, B, w), gx) if save else None for w in widths[1:]]
    # without save, a state other than h lives in two (B, width) buffers that take turns
    turns = [None] + [None if save else (new_buffer((B, w), gx), new_buffer((B, w), gx)) for w in widths[1:]]
    per_step = lambda width: new_buffer((T, B, width), gx) if save else new_buffer((B, width), gx)  # noqa: E731
    hm = per_step(P) if rec_mask is not None or steps.restart is not None else None
    u_width = cell.u_width(H, P)
    u = per_step(u_width) if u_width else None
    saved = {name: (per_step(w) if w else placeholder(gx)) for name, w in cell.saved(sizes, acts)}
    products = [new_buffer((B, cell.product_width(i, H, P)), gx) for i in range(len(cell.products))]
    mats = _product_weights(cell, weights, transpose=True)

    histories[0][steps.first].copy_(states[0])
    for k in range(1, len(widths)):
        (histories[k][steps.first] if save else turns[k][0]).copy_(states[k])
    at = (lambda x, t: x[t]) if save else (lambda x, t: x)  # noqa: E731  a per-step buffer's rows at step t

    for i, t in enumerate(steps.order):
        p, n = steps.prev(t), steps.next(t)
        prev = [histories[0][p]] + [histories[k][p] if save else turns[k][i % 2] for k in range(1, len(widths))]
        nxt = [histories[0][n]] + [histories[k][n] if save else turns[k][(i + 1) % 2] for k in range(1, len(widths))]
        if steps.restarts[t]:  # the reset rows start from the reset states
            prev = [torch.where(steps.restart[t], r, s) for r, s in zip(targets, prev)]
        if hm is None:
            h_in = prev[0]
        else:
            h_in = at(hm, t).copy_(prev[0]) if rec_mask is None else torch.mul(prev[0], rec_mask, out=at(hm, t))
        step = ForwardStep(gx=gx[t], product=None, h_in=h_in, prev=tuple(prev), next=tuple(nxt),
                           u=None if u is None else at(u, t), weights=weights,
                           saved={k: (at(v, t) if v.numel() else v) for k, v in saved.items()}, acts=acts,
                           args=args)
        for stage in range(cell.stages):
            if stage < len(cell.products):
                x = h_in if cell.products[stage].input == "h_in" else step.u
                step.product = torch.mm(x, mats[stage], out=products[stage])
            cell.loop_forward(stage, step)
        for a, b, k in zip(nxt, prev, keep):
            if k is not None:  # zoneout: k * previous + (1 - k) * new
                torch.lerp(a, b, k[t], out=a)
        if steps.masked[t]:
            valid = steps.valid[t]
            for a, b in zip(nxt, prev):
                torch.where(valid, a, b, out=a)
            for buffer in [step.u, *step.saved.values()]:
                if buffer is not None and buffer.numel():
                    buffer.masked_fill_(~valid, 0.0)

    outputs = [histories[0]]
    outputs += [histories[k] if save else turns[k][T % 2] for k in range(1, len(widths))]
    if save:
        outputs += [hm if hm is not None else placeholder(gx), u if u is not None else placeholder(gx)]
        outputs += list(saved.values())
    return outputs


def backward(cell_name: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
             grads: list[Tensor | None], saved_outputs: list[Tensor], weights: list[Tensor | None],
             lengths: Tensor | None, mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None],
             rec_mask: Tensor | None, keep: list[Tensor | None]) -> list[Tensor]:
    """The backward op (schema and outputs in :mod:`.contract`)."""
    opts = ScanOptions.from_op_args(cell_name, activation, recurrent_activation, reverse, cell_args)
    S = saved_outputs[0]
    steps = Steps(S.shape[0] - 1, reverse, lengths, mask, restart, S.shape[1])
    with torch.autocast(device_type=S.device.type, enabled=False):
        return _backward(opts, grads, saved_outputs, weights, steps, [r for r in reset_states if r is not None],
                         rec_mask, keep)


def _backward(opts, grads, saved_outputs, weights, steps, reset_states, rec_mask, keep):
    args = opts.cell_args
    cell, acts = opts.cell, opts.acts
    layout = ForwardLayout.split(cell, list(saved_outputs), save=True)
    S = layout.states
    T, B, P = S[0].shape[0] - 1, S[0].shape[1], S[0].shape[2]
    H = cell.hidden_size(weights)
    like = S[0]
    weights = tuple(weights)
    dgx = new_buffer((T, B, cell.gates * H), like)
    grad_buffers = {name: new_buffer((T, B, w), like) for name, w in cell.grad_buffers(Sizes(T, B, H, P))}
    upstream = [None if g is None else g.contiguous() for g in grads]

    keep = [None if k is None else k.contiguous() for k in keep]
    # D[k]: the gradient of state k as the step being processed wrote it
    D = [upstream[k][steps.last].clone() if upstream[k] is not None else like.new_zeros((B, s.shape[-1]))
         for k, s in enumerate(S)]
    d_reset = [torch.zeros_like(d) for d in D]  # what reset steps pass to the states they restarted from
    targets = reset_states or [s[steps.first] for s in S]
    mats = _product_weights(cell, weights, transpose=False)
    for t in reversed(steps.order):
        p, n = steps.prev(t), steps.next(t)
        h_in = layout.hm[t] if layout.hm is not None else S[0][p]
        # zoneout: the new state got (1 - k) of D, the previous one k of it directly
        d_new = tuple(d if k is None else d * (1 - k[t]) for d, k in zip(D, keep))
        prev = tuple(s[p] for s in S)
        if steps.restarts[t]:
            prev = tuple(torch.where(steps.restart[t], r, s_p) for r, s_p in zip(targets, prev))
        step = BackwardStep(d_next=d_new, prev=prev, h_in=h_in,
                            u=None if layout.u is None else layout.u[t], weights=weights,
                            saved={k: (v[t] if v.numel() else v) for k, v in layout.saved.items()}, acts=acts,
                            dgx=dgx[t], grads={k: v[t] for k, v in grad_buffers.items()}, args=args,
                            d_prev=[None] * len(S))
        for stage in reversed(range(cell.stages)):
            if stage == 0 and cell.stages == 2:  # the second product's input u got this gradient
                step.du = torch.mm(_rows(step.grads, step.dgx, cell, 1), mats[1])
            cell.loop_backward(stage, step)
        d_h = torch.mm(_rows(step.grads, step.dgx, cell, 0), mats[0]) if cell.products else None
        if step.d_h_in is not None:
            d_h = step.d_h_in if d_h is None else d_h.add_(step.d_h_in)
        if d_h is not None and rec_mask is not None:
            d_h = d_h.mul_(rec_mask)
        new = list(step.d_prev)
        new[0] = d_h if new[0] is None else (new[0] if d_h is None else d_h.add_(new[0]))
        new = [like.new_zeros(D[k].shape) if v is None else v for k, v in enumerate(new)]
        for k, coefficient in enumerate(keep):
            if coefficient is not None:
                new[k] = new[k].addcmul_(coefficient[t], D[k])
        if steps.masked[t]:  # an invalid step: no gate gradient, the state gradient passes through
            valid = steps.valid[t]
            for buffer in (step.dgx, *step.grads.values()):
                buffer.masked_fill_(~valid, 0.0)
            new = [torch.where(valid, a, b) for a, b in zip(new, D)]
        if steps.restarts[t]:  # a reset row read the reset states, not the step before's
            restart = steps.restart[t]
            for k in range(len(S)):
                d_reset[k] += torch.where(restart, new[k], 0.0)
                new[k] = torch.where(restart, 0.0, new[k])
        for k in range(len(S)):
            if upstream[k] is not None:
                new[k] = new[k].add_(upstream[k][p])
        D = new
    if reset_states:
        return [dgx, *D, *d_reset, *grad_buffers.values()]
    return [dgx, *(d + d0 for d, d0 in zip(D, d_reset)), *grad_buffers.values()]


FORWARD, BACKWARD = define("loop", forward, backward)
