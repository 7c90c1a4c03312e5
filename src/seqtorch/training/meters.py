"""Epoch metrics as exact sums, so the numbers do not depend on batching or on the number of processes.

Each rank keeps float64 sums (loss * examples, examples, metric values, metric element counts)
on its device; one ``all_reduce(SUM)`` at the end of an epoch turns them into the metrics of a
single-process pass over the union of the shards.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from .tasks import Task


class MetricSums:
    """Running sums for ``task.metric_names`` (``loss`` first)."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.task = task
        self.names = task.metric_names
        # Value sums stay on the device (no sync per step); counts are known on the host.
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self.counts = [0] * len(self.names)

    @torch.no_grad()
    def add(self, loss: Tensor, output: Tensor, target: Tensor) -> None:
        """Add one batch: ``loss`` is its scalar mean loss, ``target.shape[0]`` its example count."""
        n = target.shape[0]
        parts = [loss.detach().to(torch.float64) * n]
        self.counts[0] += n
        for i, fn in enumerate(self.task.metrics.values(), start=1):
            values = fn(output.detach(), target)
            parts.append(values.to(torch.float64).sum())
            self.counts[i] += values.numel()
        self.sums += torch.stack(parts)

    def means(self) -> dict[str, float]:
        """``{name: sum / count}`` of this process's data; NaN for a name that saw no data."""
        return _means(self.names, self.sums.tolist(), self.counts)

    def reduced_means(self, distributed: bool) -> dict[str, float]:
        """Means over every rank's data (a collective: all ranks must call it)."""
        if not distributed:
            return self.means()
        counts = torch.tensor(self.counts, dtype=torch.float64, device=self.sums.device)
        total = torch.cat([self.sums, counts])
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        k = len(self.names)
        values = total.tolist()
        return _means(self.names, values[:k], values[k:])


def _means(names: list[str], sums: list[float], counts: list[float]) -> dict[str, float]:
    return {name: (s / c if c > 0 else float("nan")) for name, s, c in zip(names, sums, counts)}
