"""DataLoaders the loop builds: a reproducible shuffled training loader and sharded evaluation loaders."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from .runtime import Runtime
from .samplers import ShardedEvalSampler, derive_seed

TrainLoaderFn = Callable[[int, int, int], Iterable]


def train_loader_factory(
    train: Dataset | TrainLoaderFn,
    batch_size: int,
    seed: int,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> TrainLoaderFn:
    """``make_train_loader(epoch, rank, world_size)`` for a map-style Dataset, or ``train`` if callable.

    For a Dataset the order is torch's DistributedSampler permutation for (seed, epoch), split
    across ranks: a pure function of (seed, epoch, rank), which is what makes --resume exact.
    """
    if isinstance(train, IterableDataset):
        raise TypeError(
            "train is an IterableDataset; pass a map-style Dataset, or a callable "
            "make_train_loader(epoch, rank, world_size) that returns the epoch's batches"
        )
    if isinstance(train, Dataset):
        def make_train_loader(epoch: int, rank: int, world_size: int) -> DataLoader:
            sampler = DistributedSampler(
                train, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
            )
            sampler.set_epoch(epoch)
            return DataLoader(
                train, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                num_workers=num_workers, pin_memory=pin_memory,
                # Worker seeds come from this generator, not the global RNG, so loading data
                # never shifts the dropout stream.
                generator=_generator(seed, epoch, rank),
            )
        return make_train_loader
    if callable(train):
        return train
    raise TypeError(f"train must be a map-style Dataset or a callable (epoch, rank, world_size); got {type(train).__name__}")


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    rt: Runtime | None = None,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """In-order loader over this rank's shard of ``dataset`` (all of it when not distributed)."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"evaluation data must be a map-style Dataset with __len__, got {type(dataset).__name__}"
        )
    rank, world = (rt.rank, rt.world_size) if rt is not None else (0, 1)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=ShardedEvalSampler(len(dataset), rank, world),
        collate_fn=collate_fn, num_workers=num_workers,
        pin_memory=rt is not None and rt.device.type == "cuda",
        generator=_generator(0, 0, rank),
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) tuple/list/dict batch to ``device``; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def _generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, epoch, rank))
    return g
