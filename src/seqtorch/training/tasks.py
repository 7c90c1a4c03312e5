"""What is learned: how a batch feeds the model, the loss, the metrics, and what picks the best epoch.

A :class:`Task` keeps the training loop generic: the loop never looks inside a batch, it asks the
task for ``(output, target)`` and for the loss and per-example metric values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], Tensor]
ForwardBatch = Callable[[nn.Module, Any], "tuple[Tensor, Tensor]"]


def default_forward_batch(model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
    """Run ``model`` on a batch and return ``(output, target)``.

    Accepted batches: ``(x, y)`` -> ``model(x)``; ``(x, lengths, y)`` -> ``model(x, lengths)``;
    a dict with ``"x"`` (or ``"inputs"``), optional ``"lengths"``, and ``"y"`` (or ``"target"``).
    When ``output`` has as many elements as ``target`` but another shape (a ``(B, 1)`` head for
    ``(B,)`` labels), it is reshaped to ``target``'s shape so losses do not broadcast to (B, B).
    """
    if isinstance(batch, dict):
        x = batch.get("x", batch.get("inputs"))
        y = batch.get("y", batch.get("target"))
        if x is None or y is None:
            raise ValueError(
                f"a dict batch needs 'x' (or 'inputs') and 'y' (or 'target'); got keys {sorted(batch)}"
            )
        lengths = batch.get("lengths")
    elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        x, y = batch[0], batch[-1]
        lengths = batch[1] if len(batch) == 3 else None
    else:
        kind = f"{type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(
            f"expected a batch (x, y), (x, lengths, y) or a dict; got {kind}. "
            "Pass a Task with its own forward_batch for other layouts."
        )
    output = model(x) if lengths is None else model(x, lengths)
    return match_target_shape(output, y), y


def match_target_shape(output: Tensor, target: Tensor) -> Tensor:
    """Reshape ``output`` to ``target.shape`` when only singleton dims differ; else check they agree."""
    if not isinstance(output, Tensor):
        raise ValueError(
            f"the model must return one Tensor for a Task, got {type(output).__name__}; "
            "wrap it or give the Task a forward_batch"
        )
    if output.shape == target.shape:
        return output
    if output.numel() == target.numel():
        return output.reshape(target.shape)
    raise ValueError(
        f"model output shape {tuple(output.shape)} does not match target shape {tuple(target.shape)}"
    )


@dataclass
class Task:
    """Loss, metrics and the monitored quantity of one learning problem.

    ``loss_fn(output, target)`` returns the scalar mean loss of a batch (what is minimised).
    ``metrics[name](output, target)`` returns per-example values of any shape; the reported
    metric is ``sum(values) / numel(values)`` over the whole epoch, reduced across ranks, so it
    does not depend on how the data is split into batches or processes.
    ``monitor`` is ``"val_loss"`` or ``"val_<metric name>"``; ``mode`` says whether the best
    epoch has the ``"min"`` or ``"max"`` value.
    """

    name: str
    loss_fn: LossFn
    metrics: dict[str, MetricFn] = field(default_factory=dict)
    monitor: str = "val_loss"
    mode: str = "min"
    forward_batch: ForwardBatch = default_forward_batch

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if "loss" in self.metrics:
            raise ValueError("'loss' is reserved for the loss; name the metric differently")
        allowed = ["val_loss"] + [f"val_{m}" for m in self.metrics]
        if self.monitor not in allowed:
            raise ValueError(f"monitor must be one of {allowed}, got {self.monitor!r}")

    @property
    def metric_names(self) -> list[str]:
        """Names reported each epoch, in order: loss first, then the task's metrics."""
        return ["loss", *self.metrics]

    def is_improvement(self, value: float, best: float | None) -> bool:
        """Strictly better than ``best`` (ties keep the earlier epoch)."""
        if best is None:
            return value == value  # a NaN never becomes the best
        return value < best if self.mode == "min" else value > best


def binary_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example 0/1 correctness of ``sigmoid(logits) > 0.5`` (Keras' threshold), shape of target."""
    return ((torch.sigmoid(logits) > 0.5) == (target > 0.5)).to(torch.float32)


def absolute_error(output: Tensor, target: Tensor) -> Tensor:
    """Per-element ``|output - target|``; its mean is the MAE."""
    return (output - target).abs()


def binary_classification_task(monitor: str = "val_acc", mode: str = "max") -> Task:
    """IMDB-style: the model returns logits ``(B,)`` or ``(B, 1)``, targets are 0/1 ``(B,)``.

    Loss is BCE on logits (the numerically stable form of Keras' sigmoid + binary_crossentropy);
    metric ``acc``; the best epoch has the highest ``val_acc`` by default.
    """

    def bce(logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))

    return Task("binary_classification", bce, {"acc": binary_accuracy}, monitor, mode)


def regression_task(loss: str = "mae", monitor: str = "val_mae", mode: str = "min") -> Task:
    """Jena-style: the model returns ``(B,)`` or ``(B, 1)`` predictions of ``(B,)`` targets.

    ``loss`` is ``"mae"`` (L1, the book's first edition) or ``"mse"`` (its second edition);
    the metric is always ``mae``, so runs with either loss compare on the same number.
    """
    losses: dict[str, LossFn] = {
        "mae": lambda out, y: F.l1_loss(out, y.to(out.dtype)),
        "mse": lambda out, y: F.mse_loss(out, y.to(out.dtype)),
    }
    if loss not in losses:
        raise ValueError(f"loss must be one of {sorted(losses)}, got {loss!r}")
    return Task("regression", losses[loss], {"mae": absolute_error}, monitor, mode)
