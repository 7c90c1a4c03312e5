"""What crashes and odd file systems leave behind, for the tests of the data and training code.

- :func:`leftover_temp`: the temporary file of a killed writer (an atomic write or a download),
  named as seqtorch names them (``.<entry>.<8 random characters>.part``), optionally still
  held by a live writer (an ``flock`` on it, as seqtorch's writers hold one while they write).
- :func:`read_only_dir`: a directory nobody may create files in, root included.
- :class:`SyncRecorder`: records which files were fsync'ed before they were renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

try:
    import fcntl
except ImportError:  # Windows: no flock, the writers' locks are not used there
    fcntl = None


def leftover_temp(directory: Path, entry: str, *, age_s: float, tag: str = "killed00",
                  size: int = 1000) -> Path:
    """A temporary file of ``entry`` as a killed writer leaves it, last written ``age_s`` ago."""
    assert len(tag) == 8
    path = Path(directory) / f".{entry}.{tag}.part"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@contextlib.contextmanager
def held_by_a_live_writer(path: Path):
    """Hold ``path`` open with an exclusive flock, as a writer that is still running does."""
    if fcntl is None:
        pytest.skip("no flock on this platform")
    with open(path, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def read_only_dir(path: Path):
    """``path`` created and made read-only. Root ignores mode bits, so as root the directory is
    also made immutable (``chattr +i``); where that is not possible the test is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            chattr = shutil.which("chattr")
            done = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
            if not done:
                pytest.skip("running as root without chattr: cannot make a read-only directory")
            immutable = True
        probe = path / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"{path} stays writable on this file system")
        yield path
    finally:
        if immutable:
            subprocess.run([shutil.which("chattr"), "-i", str(path)], capture_output=True)
        path.chmod(0o755)


class SyncRecorder:
    """Wraps os.fsync and os.replace: which inodes were fsync'ed, and in which order renamed.

    ``synced_before_rename(dest)`` tells whether the file renamed onto ``dest`` had been
    fsync'ed before the rename.
    """

    def __init__(self, monkeypatch):
        self.synced: set[tuple[int, int]] = set()
        self.renames: list[tuple[str, bool]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            st = os.fstat(fd)
            self.synced.add((st.st_dev, st.st_ino))
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            st = os.stat(src)
            self.renames.append((os.fspath(dst), (st.st_dev, st.st_ino) in self.synced))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def synced_before_rename(self, dest: Path) -> bool:
        done = [synced for dst, synced in self.renames if Path(dst) == Path(dest)]
        assert done, f"nothing was renamed onto {dest} (renames: {self.renames})"
        return all(done)
