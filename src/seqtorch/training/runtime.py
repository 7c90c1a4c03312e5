"""Where training runs: device choice, seeding, and the torchrun / DistributedDataParallel setup."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from .config import TrainConfig
from .errors import SetupError


@dataclass
class Runtime:
    """The process's place in a (possibly distributed) run.

    Only the main process (rank 0) prints and writes files. Use as a context manager so the
    process group is torn down on exit.
    """

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    distributed: bool = False
    _owns_group: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. a download into a cache), then the others run it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def close(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda if available else cpu; "cuda" -> cuda:local_rank (one GPU per process)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SetupError("--device cuda: no CUDA GPU is visible to torch (torch.cuda.is_available() is "
                             "False); use --device cpu, or auto")
        if local_rank >= torch.cuda.device_count():
            raise SetupError(
                f"local rank {local_rank} needs GPU {local_rank}, but only "
                f"{torch.cuda.device_count()} are visible"
            )
        return torch.device("cuda", local_rank)
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def setup(cfg: TrainConfig) -> Runtime:
    """Start the run: join the torchrun process group if there is one, pick the device, seed.

    Call it before building the model, so the model's initial weights follow ``cfg.seed``.
    Each rank is seeded with ``cfg.seed + rank``: rank 0 matches a single-process run, the
    other ranks draw different dropout masks (their initial weights are replaced by rank 0's
    when DistributedDataParallel wraps the model).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world_size > 1
    device = resolve_device(cfg.device, local_rank if distributed else 0)
    owns_group = False
    if distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        owns_group = True
    if distributed and (dist.get_rank() != rank or dist.get_world_size() != world_size):
        raise RuntimeError(
            f"process group (rank {dist.get_rank()}/{dist.get_world_size()}) disagrees with "
            f"the environment (RANK={rank}, WORLD_SIZE={world_size})"
        )
    seed_everything(cfg.seed + rank)
    return Runtime(device, rank, local_rank, world_size, distributed, owns_group)
