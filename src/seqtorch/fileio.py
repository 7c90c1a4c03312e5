"""Files that are never seen half-written: atomic writes and copies, the temporary files of killed
writers, and cache entries that are read back or rebuilt.

One atomic write serves the whole tree (downloads, cache entries, checkpoints, run outputs): the
bytes go to a temporary file beside the destination, named ``.<name>.<8 random characters>.part``,
are fsync'ed, and the file is renamed over the destination (atomic on POSIX within a file system),
so a crash leaves the old file or the new one, never a mix.

A writer holds an exclusive ``flock`` on its temporary file while it writes; the kernel releases
it when the process dies, however it dies. A temporary file nobody holds, older than
:data:`STALE_AFTER_S`, therefore belongs to a killed writer: it is removed after the next
successful write of the same entry (and, in a cache folder, of any entry). A live writer's file is
never removed, however long it has been writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no flock; an open file cannot be deleted there anyway
    fcntl = None

__all__ = [
    "TEMP_SUFFIX", "STALE_AFTER_S", "CacheEntryWarning", "atomic_write", "atomic_link_or_copy",
    "read_cache_entry", "write_cache_entry", "remove_stale_temps",
]

TEMP_SUFFIX = ".part"
#: Age (of the last write) after which a temporary file that no process holds is a killed
#: writer's. It only has to cover the moment between a writer creating its file and locking it.
STALE_AFTER_S = 30.0
#: Where locks cannot be taken (no flock, or a file system without it) only age can tell.
STALE_WITHOUT_LOCKS_S = 24 * 3600.0
_RANDOM = r"[a-z0-9_]{8}"  # what tempfile.mkstemp puts between prefix and suffix


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; a finished file gets the permissions an
# ordinary new file would have. Read once at import, as reading it means briefly changing it.
_FILE_MODE = 0o666 & ~_read_umask()

# What reading a damaged .npz (or any damaged cache entry) raises: a missing file or key, a zip
# cut short or filled with garbage, a short read, a bad CRC, arrays failing the reader's checks.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile, zlib.error)

# What os.link raises where a file system has no hard links (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP,
                  getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}

T = TypeVar("T")


class CacheEntryWarning(UserWarning):
    """A cache entry could not be read; it was removed and is rebuilt from its source."""


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, rename it onto ``path``.

    If ``write`` raises (a failed download check, a serialisation error, a full disk) the
    temporary file is removed, ``path`` is left as it was, and the exception propagates. After a
    success, temporary files of ``path`` that killed writers left are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            _hold(f.fileno())  # released when the file is closed, or when this process dies
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)  # while still held: a cleaner never sees it unheld and new
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    remove_stale_temps(path.parent, path.name)


def atomic_link_or_copy(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Make ``dest`` hold the bytes of ``src``, atomically: ``dest`` is the old file or the copy.

    A hard link where the file system has them (no bytes copied: safe because seqtorch replaces
    files by renaming new ones over them, never by writing into them), else an :func:`atomic_write`
    of the bytes. Raises the OSError of a failure, ``dest`` unchanged.
    """
    src, dest = Path(src), Path(dest)
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dest):  # linked already: a rename onto it would do nothing
            return
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    try:
        os.unlink(tmp)  # mkstemp chose a fresh random name; the link takes it
        os.link(src, tmp)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno not in _NO_HARD_LINKS:
            raise
        data = src.read_bytes()  # a file system without hard links: copy the bytes
        atomic_write(dest, lambda f: f.write(data))
        return
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def write_cache_entry(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """:func:`atomic_write` for a file of seqtorch's cache; the cache folder is seqtorch's own, so
    any killed writer's temporary file there (a download, another entry) is removed as well."""
    path = Path(path)
    atomic_write(path, write)
    remove_stale_temps(path.parent)


def read_cache_entry(path: str | os.PathLike, read: Callable[[Path], T]) -> T | None:
    """``read(path)`` for a cache entry, or None when there is none to use.

    An entry that ``read`` cannot read (empty, cut short, garbage, inconsistent: ``read`` raises
    one of the errors reading such a file raises) is reported with a :class:`CacheEntryWarning`
    naming it and removed, and None is returned, so the caller rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read(path)
    except _UNREADABLE as exc:
        warnings.warn(
            f"cache entry {path} is unreadable ({type(exc).__name__}: {exc}); it was removed "
            f"and is rebuilt from its source",
            CacheEntryWarning, stacklevel=2,
        )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None


def remove_stale_temps(directory: str | os.PathLike, entry: str | None = None) -> list[Path]:
    """Remove the temporary files of killed writers in ``directory``; return those removed.

    Only files named as :func:`atomic_write` names them are considered (of ``entry`` alone when
    given), and only those no process holds, last written more than :data:`STALE_AFTER_S` ago.
    Best effort: a file that cannot be examined or removed is left alone, as cleaning must never
    fail the write that triggered it.
    """
    directory = Path(directory)
    name = re.escape(entry) if entry is not None else r".+"
    pattern = re.compile(rf"\.{name}\.{_RANDOM}{re.escape(TEMP_SUFFIX)}")
    removed = []
    try:
        candidates = [p for p in directory.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_AFTER_S and _remove_if_abandoned(path, now):
                removed.append(path)
    return removed


def _hold(fd: int) -> None:
    """Take the writer's lock on its temporary file (nothing where locks are unavailable)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without flock: age alone protects
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_if_abandoned(path: Path, now: float) -> bool:
    """Unlink ``path`` if no live process holds it; True if it was removed."""
    with open(path, "r+b") as f:  # writable: NFS emulates flock with locks that need it
        try:
            if fcntl is None:
                raise OSError("no flock on this platform")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError:
            if now - os.fstat(f.fileno()).st_mtime <= STALE_WITHOUT_LOCKS_S:
                return False
        path.unlink()  # while holding its lock: no writer can hold this file any more
        return True


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; elsewhere directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
