"""Non-finite losses and gradients, caught at the batch where they appear, before the optimizer step.

A NaN or inf in the loss or in a gradient (a learning rate too high, a bad batch) would, once
``optimizer.step()`` ran, be in the weights, and from there in every later checkpoint, as ``last.pt``
and possibly as ``best.pt``. :func:`nonfinite_in_batch` looks after ``backward()`` and before the step
(Keras' ``TerminateOnNaN`` looks at the loss alone; a gradient can overflow while the loss is finite).
The training loop then stops with :class:`NonFiniteError` naming the epoch and the batch, so the run's
last checkpoint, written at the end of the epoch before, is the last good one; or, with
``skip_nonfinite``, it skips the batch (no step) and counts it in the epoch's history.

Under DDP the verdict is agreed by every rank (one all-reduce of a flag), so they all stop or all skip
the same step: a loss is each rank's own, and a rank stepping alone would leave the others waiting.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import UserError
from .runtime import Runtime


class NonFiniteError(UserError, FloatingPointError):
    """Training met a NaN or inf loss or gradient; the message names the epoch, the batch and which."""


@torch.no_grad()
def nonfinite_part(loss: Tensor, model: nn.Module) -> str | None:
    """None if ``loss`` and every gradient of ``model`` are finite, else what is not:
    ``"loss (nan)"``, ``"gradient of rnn.weight_hh_l0 (inf)"``. One host sync when all is finite."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    # The max-abs norm: NaN propagates through it, and no finite gradient overflows it (a sum of
    # squares would turn a large finite gradient into inf).
    largest = torch.nn.utils.get_total_norm(grads, norm_type=float("inf")) if grads else loss.new_zeros(())
    if bool(torch.isfinite(loss.detach()) & torch.isfinite(largest)):
        return None
    if not torch.isfinite(loss.detach()):
        return f"loss ({loss.item()})"
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            bad = p.grad[~torch.isfinite(p.grad)][0].item()
            return f"gradient of {name.removeprefix('module.')} ({bad})"
    return "gradient"  # unreachable: the norm was not finite, so one of them is not


def nonfinite_in_batch(loss: Tensor, model: nn.Module, rt: Runtime) -> str | None:
    """:func:`nonfinite_part`, agreed over all ranks under DDP (a collective: every rank calls it)."""
    found = nonfinite_part(loss, model)
    if not rt.distributed:
        return found
    flag = torch.tensor([0 if found is None else 1], dtype=torch.int32, device=rt.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and found is None:
        return "loss or gradient on another process"
    return found
