"""A run's output directory: the files a run leaves there, the checks made before one starts, and
the lock that keeps a second run out while one is writing there.

A directory holds a run when any of :data:`RUN_FILES` is there. Training into it is refused
unless the run is continued (``--resume``, which needs its ``last.pt``) or replaced
(``--overwrite``, which deletes the old run's files first, so that no file of it can pass for part
of the new run: a ``best.pt`` the new run never beats, a ``curves.png`` of more epochs). A
directory that cannot be written is refused too, before any training, not at the end of the
first epoch. A run that fails before it writes anything there (a bad ``--data``) leaves no empty
folder behind either (:func:`claimed_out_dir`).

The run that prepares a directory holds an exclusive ``flock`` on the directory itself until it
ends (:func:`release_out_dirs`, called when its :class:`~.runtime.Runtime` closes): a second run
into the same ``--out``, even with ``--resume`` or ``--overwrite``, is refused while the first is
alive, instead of the two interleaving their files. The kernel drops the lock when its process
dies, however it dies, so a killed run never leaves a lock that blocks the next one, and no lock
file is ever left in the directory. Where the file system has no ``flock`` (some network file
systems), runs are not locked out.
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
from .runfiles import digest_path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

HISTORY_FILE, METRICS_FILE, CURVES_FILE = "history.json", "metrics.json", "curves.png"
LAST_FILE, BEST_FILE = "last.pt", "best.pt"
PREVIOUS_FILE = "last.prev.pt"  # last.pt as it was before the newest save: the fallback if that is damaged
RUN_FILES = (HISTORY_FILE, METRICS_FILE, CURVES_FILE, LAST_FILE, BEST_FILE, PREVIOUS_FILE)
#: The files whose digest is a sidecar ``<name>.sha256`` (checkpoints carry theirs inside).
SIDECAR_FILES = (HISTORY_FILE, METRICS_FILE, CURVES_FILE)
_PROBE = "write-check"  # the file written (and removed) to see that --out takes files
_LOCKS: dict[tuple[int, int], int] = {}  # (device, inode) of each directory this process locked -> its fd


class RunDirectoryError(UserError, RuntimeError):
    """The output directory cannot take this run (it holds another one, another run is writing
    there, or it cannot be written)."""


def prepare_out_dir(cfg: TrainConfig) -> Path:
    """Check that ``cfg.out`` can take the run, create it, and with ``cfg.overwrite`` remove the
    old run's files from it; return it as a Path.

    Call it on the process that writes the files (rank 0) before any training. Calling it again
    (``fit`` does, after the script did) changes nothing. Only :data:`RUN_FILES` are deleted:
    anything else the user keeps in ``out`` stays.

    The directory is locked for this process until :func:`release_out_dirs` (see the module
    docstring); the checks below are made under the lock.

    Raises:
        RunDirectoryError: another live process is running in ``out``; ``out`` holds a run and
            neither ``cfg.resume`` nor ``cfg.overwrite`` is set; ``cfg.resume`` is set but the
            run there has no ``last.pt``; ``out`` cannot be created or written.
    """
    out = Path(cfg.out)
    # An existing directory is locked before anything is checked or deleted; a new one as soon as
    # it is created. A refused run lets go of a lock it took.
    taken = _lock(out) if out.is_dir() else None
    try:
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
        taken = taken or _lock(out)
    except RunDirectoryError:
        if taken is not None:
            _unlock(taken)
        raise
    if cfg.overwrite:
        for name in found:
            (out / name).unlink(missing_ok=True)
            remove_stale_temps(out, name)
        for name in SIDECAR_FILES:
            sidecar = digest_path(out / name)
            sidecar.unlink(missing_ok=True)
            remove_stale_temps(out, sidecar.name)
    return out


def release_out_dirs() -> None:
    """Release every output directory this process locked (a no-op when it holds none)."""
    while _LOCKS:
        _, fd = _LOCKS.popitem()
        os.close(fd)  # closing the descriptor drops its flock


def _lock(out: Path) -> tuple[int, int] | None:
    """Take this process's exclusive lock on the directory ``out``, kept until released; return its
    key if this call took it (None if already held here, or where locks are unavailable).
    Raises RunDirectoryError if another process holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError:  # cannot be opened to lock: _check_writable says what is wrong with it
        return None
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    if key in _LOCKS:  # this process holds it already (the script prepared out, then fit does)
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirectoryError(
            f"{out} is in use: another run that is still running there holds its lock. Wait for "
            f"it to finish (then --resume continues it), or choose another --out."
        ) from None
    except OSError:  # a file system without flock: no lock, as the module docstring says
        os.close(fd)
        return None
    _LOCKS[key] = fd
    return key


def _unlock(key: tuple[int, int]) -> None:
    os.close(_LOCKS.pop(key))


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
