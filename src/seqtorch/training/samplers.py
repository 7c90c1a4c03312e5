"""Index samplers whose order is a pure function of (seed, epoch, rank), so a resumed run replays it."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class ShardedEvalSampler(Sampler[int]):
    """Rank ``rank``'s contiguous share of ``range(num_items)``, in order, without padding.

    torch's DistributedSampler pads shards to equal length by repeating examples, which would
    count those examples twice in a metric. Here the shards partition the data exactly (their
    sizes differ by at most one), so sums reduced over ranks equal a single-process pass.
    Shards may be unequal, so evaluation must not run DDP collectives per batch.
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        if num_items < 0:
            raise ValueError(f"num_items must be >= 0, got {num_items}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.start = num_items * rank // world_size
        self.stop = num_items * (rank + 1) // world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class RandomStepsSampler(Sampler[int]):
    """``num_samples`` random indices in ``range(num_items)`` per epoch (the book's Jena generator).

    An "epoch" is a fixed number of randomly drawn examples (``steps_per_epoch * batch_size``)
    rather than one pass over the data. The draw is seeded by (seed, epoch, rank), so every rank
    draws different examples and a resumed run draws the same ones as an uninterrupted run.
    Call :meth:`set_epoch` before iterating.
    """

    def __init__(
        self, num_items: int, num_samples: int, seed: int = 0, rank: int = 0, replacement: bool = True
    ) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if not replacement and num_samples > num_items:
            raise ValueError(
                f"without replacement num_samples ({num_samples}) must be <= num_items ({num_items})"
            )
        self.num_items, self.num_samples = num_items, num_samples
        self.seed, self.rank, self.replacement = seed, rank, replacement
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        # A fresh generator per epoch: the draw depends on nothing but (seed, epoch, rank).
        g.manual_seed(derive_seed(self.seed, self.epoch, self.rank))
        if self.replacement:
            idx = torch.randint(self.num_items, (self.num_samples,), generator=g)
        else:
            idx = torch.randperm(self.num_items, generator=g)[: self.num_samples]
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples


def derive_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, rank); all three must be >= 0."""
    # SeedSequence hashes the triple, so nearby (seed, epoch, rank) give unrelated streams.
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1
