"""Ctrl-C during training: the batch is abandoned, an epoch's files are never half written, and the
message says where the run stands and how to resume it.

Two decorators on the steps of :func:`seqtorch.training.fit`:

* :func:`uninterrupted` on the step that writes an epoch's files (``best.pt``, ``last.pt``,
  ``history.json``, ``curves.png``): a Ctrl-C that arrives while they are written takes effect once
  all of them are, so they describe the same epoch. (Each is written atomically anyway; this keeps
  them consistent with each other.)
* :func:`reported` on ``fit`` itself: a ``KeyboardInterrupt`` from inside it becomes
  :class:`RunInterrupted`, whose message reads the run's ``last.pt`` (what is on disk, not what the
  process believed) and names the epoch that was cut short, and whose ``fixes`` ask for ``--resume``.

The scripts print it and exit with status 130 (:mod:`seqtorch.training.cli`); a Python caller gets a
``KeyboardInterrupt`` as before, with that message.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .checkpoint import load_checkpoint
from .outdir import LAST_FILE

F = TypeVar("F", bound=Callable)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; the message says what its ``last.pt`` holds.

    ``fixes`` as in :class:`~seqtorch.training.errors.UserError`: the flag that continues the run.
    """

    exit_code = 130

    def __init__(self, message: str, fixes: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.fixes = tuple(fixes)


def uninterrupted(step: F) -> F:
    """Run ``step`` to its end even if Ctrl-C arrives meanwhile; then raise the ``KeyboardInterrupt``."""
    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        with _sigint_deferred():
            return step(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    # Only Python's own handler is replaced: one a program installed (or SIG_IGN, inherited by a
    # background job) stays in charge. Signal handlers can be set from the main thread only.
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def reported(fit: F) -> F:
    """Turn a ``KeyboardInterrupt`` inside ``fit(model, task, cfg, rt, ...)`` into :class:`RunInterrupted`."""
    @functools.wraps(fit)
    def wrapper(model, task, cfg, rt, *args, **kwargs):
        try:
            return fit(model, task, cfg, rt, *args, **kwargs)
        except RunInterrupted:
            raise
        except KeyboardInterrupt:
            if not rt.is_main:  # the message is rank 0's to give
                raise
            message, fixes = describe_run(Path(cfg.out), cfg.epochs, task.monitor)
            raise RunInterrupted(message, fixes) from None
    return wrapper  # type: ignore[return-value]


def describe_run(out: Path, epochs: int, monitor: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Where a stopped run stands, from its ``last.pt``; and the flag that continues it."""
    last = out / LAST_FILE
    if not last.exists():
        return (f"No epoch of {epochs} had finished, so {out} holds no {LAST_FILE} to resume from.",
                (("", "start it again"),))
    try:
        ckpt = load_checkpoint(last)
    except (OSError, RuntimeError, ValueError) as exc:  # what a damaged checkpoint raises
        return (f"{last} cannot be read ({exc}); nothing can be resumed from it.",
                (("--overwrite", "start it again"),))
    done, best = ckpt["epoch"], ckpt["best"]
    where = (f"Epoch {done + 1} of {epochs} was cut short (its batches are dropped)" if done < epochs
             else "All epochs had finished; the test evaluation was cut short")
    best_text = ("" if best["value"] is None else
                 f" (best {monitor} {best['value']:.4f} at epoch {best['epoch']})")
    return f"{where}; {last} holds epoch {done}{best_text}.", (("--resume", "resume it"),)
