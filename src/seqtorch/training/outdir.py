"""A run's output directory: the files a run leaves there, and the checks made before one starts.

A directory holds a run when any of :data:`RUN_FILES` is there. Training into it is refused
unless the run is continued (``--resume``, which needs its ``last.pt``) or replaced
(``--overwrite``, which deletes the old run's files first, so that no file of it can pass for part
of the new run: a ``best.pt`` the new run never beats, a ``curves.png`` of more epochs). A
directory that cannot be written is refused too, before any training, not at the end of the
first epoch. A run that fails before it writes anything there (a bad ``--data``) leaves no empty
folder behind either (:func:`claimed_out_dir`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..fileio import TEMP_SUFFIX, remove_stale_temps
from .config import TrainConfig
from .errors import UserError

HISTORY_FILE, METRICS_FILE, CURVES_FILE = "history.json", "metrics.json", "curves.png"
LAST_FILE, BEST_FILE = "last.pt", "best.pt"
RUN_FILES = (HISTORY_FILE, METRICS_FILE, CURVES_FILE, LAST_FILE, BEST_FILE)
_PROBE = "write-check"  # the file written (and removed) to see that --out takes files


class RunDirectoryError(UserError, RuntimeError):
    """The output directory cannot take this run (it holds another one, or cannot be written)."""


def prepare_out_dir(cfg: TrainConfig) -> Path:
    """Check that ``cfg.out`` can take the run, create it, and with ``cfg.overwrite`` remove the
    old run's files from it; return it as a Path.

    Call it on the process that writes the files (rank 0) before any training. Calling it again
    (``fit`` does, after the script did) changes nothing. Only :data:`RUN_FILES` are deleted:
    anything else the user keeps in ``out`` stays.

    Raises:
        RunDirectoryError: ``out`` holds a run and neither ``cfg.resume`` nor ``cfg.overwrite``
            is set; ``cfg.resume`` is set but the run there has no ``last.pt``; ``out`` cannot be
            created or written.
    """
    out = Path(cfg.out)
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not (cfg.resume or cfg.overwrite):
        raise RunDirectoryError(
            f"{out} already holds a run ({', '.join(found)}). Pass --resume to continue it, "
            f"--overwrite to replace it (its files are deleted first), or choose another --out.",
            fixes=(("--resume", "continue it"), ("--overwrite", "replace it")),
        )
    if cfg.resume and found and LAST_FILE not in found:
        raise RunDirectoryError(
            f"--resume: {out} holds a run ({', '.join(found)}) but no {LAST_FILE} to continue "
            f"from. Pass --overwrite to replace that run, or choose another --out.",
            fixes=(("--overwrite", "replace it"),),
        )
    _check_writable(out)
    if cfg.overwrite:
        for name in found:
            (out / name).unlink(missing_ok=True)
            remove_stale_temps(out, name)
    return out


def _check_writable(out: Path) -> None:
    """Create ``out`` and a file in it (removed at once), as every save will; RunDirectoryError if not."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is not writable as a directory: it is a file. "
                                f"Choose another --out.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{_PROBE}.", suffix=TEMP_SUFFIX, dir=out)
    except OSError as exc:
        raise RunDirectoryError(
            f"--out {out} is not writable ({type(exc).__name__}: {exc.strerror or exc}); the run "
            f"could not save a single file there. Choose another --out or fix its permissions."
        ) from exc
    os.close(fd)
    os.unlink(probe)
    remove_stale_temps(out, _PROBE)  # probes of processes killed between the two lines above


@contextlib.contextmanager
def claimed_out_dir(cfg: TrainConfig, claim: bool = True) -> Iterator[Path]:
    """:func:`prepare_out_dir` for the block's run; if the block fails, the folders it created go again.

    Only folders that did not exist before and are still empty are removed (``rmdir`` refuses any
    other), so a run refused for its data leaves no empty ``--out`` behind, and nothing a run wrote is
    touched. ``claim=False`` (the ranks of a DDP run that do not write) does nothing.
    """
    out = Path(cfg.out)
    if not claim:
        yield out
        return
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    prepare_out_dir(cfg)
    try:
        yield out
    except BaseException:
        for folder in created:  # deepest first; the first one that is not empty stops the climb
            try:
                folder.rmdir()
            except OSError:
                break
        raise
