"""Where training runs: device choice, seeding, and the torchrun / DistributedDataParallel setup.

Under torchrun a process can lose the others: one is killed (``kill -9``, the out-of-memory
killer), hangs, or its machine goes. Every collective then fails on the survivors, either at once
(gloo notices a closed connection) or after ``cfg.collective_timeout`` seconds (a peer that
hangs); torchrun itself stops the survivors with SIGTERM when it sees a process die. The
:class:`Runtime` turns each of these into one :class:`PeerLostError` that says what happened and
how to continue (``--resume``), instead of a traceback from inside gloo, or a silent exit, or a
hang. Only data preparation (:meth:`Runtime.main_first`: rank 0 may download for minutes) waits on
a separate, patient group.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from .config import TrainConfig
from .errors import SetupError, UserError
from .outdir import release_out_dirs

#: How long rank 0 may take to prepare the data (a download) while the others wait for it.
DATA_PREPARATION_TIMEOUT = timedelta(hours=24)


class PeerLostError(UserError, RuntimeError):
    """This process lost the other processes of a distributed run (one died, hung, or torchrun
    stopped the run); the run's files hold its last completed epoch."""


class RunStoppedError(UserError, RuntimeError):
    """Another process of a distributed run (rank 0) stopped it with an error, repeated here."""


class _Terminated(BaseException):
    """SIGTERM arrived (torchrun stops the survivors when a process dies). A BaseException, so that
    no ``except Exception`` on the way out mistakes it for an error of its own."""


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
    _patient_group: Any = field(default=None, repr=False)  # main_first's barrier (gloo, long timeout)
    _previous_sigterm: Any = field(default=None, repr=False)  # (handler,) while ours is installed

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
        """Rank 0 runs the block first (e.g. a download into a cache), then the others run it.

        The others wait up to :data:`DATA_PREPARATION_TIMEOUT`, not the training collectives' timeout.
        """
        if not self.is_main:
            self._wait_for_all()
        yield
        if self.is_main:
            self._wait_for_all()

    def _wait_for_all(self) -> None:
        if self._patient_group is not None:
            dist.barrier(group=self._patient_group)
        else:
            self.barrier()

    def run_on_main(self, work: Callable[[], None]) -> None:
        """Run ``work`` on rank 0 alone (writing files); a collective: every rank calls it.

        An exception ``work`` raises (a full disk) is raised on rank 0 and, as a
        :class:`RunStoppedError` with its message, on every other rank, so all of them stop
        together instead of the others waiting for rank 0 in their next collective.
        """
        error = None
        if self.is_main:
            try:
                work()
            except Exception as exc:  # re-raised below, on rank 0 as it is
                error = exc
        if self.distributed:
            message = [None if error is None else str(error)]
            dist.broadcast_object_list(message, src=0)
            if error is None and message[0] is not None:
                raise RunStoppedError(f"rank 0 stopped the run: {message[0]}")
        if error is not None:
            raise error

    def close(self) -> None:
        """Leave the process group (if this Runtime joined it), restore SIGTERM, and release the
        output directories this process locked (:func:`~.outdir.prepare_out_dir`)."""
        if self._previous_sigterm is not None:
            # None: a handler installed outside Python, which cannot be put back; the default then
            previous = self._previous_sigterm[0]
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            self._previous_sigterm = None
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False
        self._patient_group = None
        release_out_dirs()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        lost = self.distributed and exc is not None and _lost_peers(exc)
        self.close()
        if lost:
            raise PeerLostError(
                f"rank {self.rank} of {self.world_size}: {lost}. The run cannot go on without it; rank "
                f"0's --out holds its last completed epoch: run the same command with --resume to "
                f"continue (under torchrun, --max-restarts N does so when the command has --resume)"
            ) from exc


def _lost_peers(exc: BaseException) -> str | None:
    """What ``exc`` says about the other processes, if it is a collective that failed because one
    of them is gone or stuck (gloo, NCCL) or torchrun's SIGTERM; None for any other exception."""
    if isinstance(exc, _Terminated):
        return ("stopped by SIGTERM: torchrun stops the other processes when one of the run fails "
                "(its report names which)")
    if isinstance(exc, UserError) or not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, getattr(dist, "DistError", ())) or "/gloo/" in text or "NCCL" in text):
        return None
    # "[.../gloo/transport/tcp/pair.cc:537] Read error [addr]: Connection reset by peer. This is
    # typically caused by ...": the first sentence, without the source location.
    first = re.sub(r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0]).split(". ")[0].rstrip(".")
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"a collective timed out waiting for another process, which is hung or gone ({first})"
    return f"the connection to another process broke: it died or stopped ({first})"


def _attempt_store(rank: int, world_size: int, timeout: timedelta) -> dict:
    """The store of this attempt of a torchrun job (``init_process_group`` keywords; none outside one).

    torchrun keeps one store for all the attempts of a job (``--max-restarts``), and a restarted
    process would find there the addresses the processes of the attempt before left: reading one
    before its new owner overwrote it, gloo dials a dead port ("Connection refused"). Each attempt
    gets keys of its own instead.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return {}
    store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
    return dict(store=dist.PrefixStore(f"seqtorch/attempt{attempt}/", store), rank=rank, world_size=world_size)


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


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
    timeout = timedelta(seconds=cfg.collective_timeout)
    if distributed and not dist.is_initialized():
        join = dict(timeout=timeout, **_attempt_store(rank, world_size, timeout))
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device, **join)
        else:
            dist.init_process_group("gloo", **join)
        owns_group = True
    if distributed and (dist.get_rank() != rank or dist.get_world_size() != world_size):
        raise RuntimeError(
            f"process group (rank {dist.get_rank()}/{dist.get_world_size()}) disagrees with "
            f"the environment (RANK={rank}, WORLD_SIZE={world_size})"
        )
    seed_everything(cfg.seed + rank)
    rt = Runtime(device, rank, local_rank, world_size, distributed, owns_group)
    if distributed:
        rt._patient_group = dist.new_group(backend="gloo", timeout=DATA_PREPARATION_TIMEOUT)
        if threading.current_thread() is threading.main_thread():
            rt._previous_sigterm = (signal.signal(signal.SIGTERM, _raise_terminated),)
    return rt
