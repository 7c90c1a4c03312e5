"""What crashes and odd file systems leave behind, for the tests of the data and training code.

- :func:`leftover_temp`: the temporary file of a killed writer (an atomic write or a download),
  named as seqtorch names them (``.<entry>.<8 random characters>.part``), optionally still
  held by a live writer (an ``flock`` on it, as seqtorch's writers hold one while they write).
- :func:`read_only_dir`: a directory nobody may create files in, root included.
- :class:`SyncRecorder`: records which files were fsync'ed before they were renamed into place.
- :class:`DiskFaults`: a disk that fails (ENOSPC by default) at a chosen step of the writes into a
  directory: creating a temporary file, writing into it (after a chosen share of its bytes), its
  fsync, the rename or hard link that puts it in place. A dry run lists the steps of a scenario.
- :func:`small_tmpfs`: a real file system of a given size (a full disk for real), where one can be mounted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DiskStep:
    """One file-system step of a write into the watched directory: ``kind`` is "create", "write",
    "fsync", "rename" or "link"; ``target`` the file being written (its final name); ``share`` the
    fraction of the bytes a failing "write" puts down before the error."""

    kind: str
    target: str
    share: float = 0.0

    def __str__(self) -> str:
        share = f"@{self.share:g}" if self.kind == "write" else ""
        return f"{self.kind}{share}:{self.target}"


def _target(temp_name: str) -> str:
    """The final name of a temporary file named ``.<name>.<8 characters>.part``."""
    return temp_name[1:].rsplit(".", 2)[0]


class DiskFaults:
    """Watches the writes into ``directory`` (through ``os`` and ``tempfile``, which seqtorch's
    atomic writes use) and makes one step fail with ``OSError(code)``.

    ``steps`` lists the steps seen so far, in order (a "write" step per file written; its share
    says how much of the data lands before the failure). Arm with :meth:`fail_at` (a :class:`DiskStep`
    and which occurrence of it: 0 for the first); :attr:`failed` tells whether it fired. The probe
    file that checks that a directory is writable is not watched.
    """

    def __init__(self, monkeypatch, directory: Path, code: int = errno.ENOSPC) -> None:
        self.directory = Path(directory).resolve()
        self.code = code
        self.steps: list[DiskStep] = []
        self._armed: tuple[DiskStep, int] | None = None
        self.failed = False
        real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen
        real_fsync, real_replace, real_link, real_close = os.fsync, os.replace, os.link, os.close
        owners: dict[int, str] = {}  # fd of a watched temporary file -> its target

        def mkstemp(*args, **kwargs):
            directory, prefix = kwargs.get("dir"), kwargs.get("prefix", "")
            watched = directory is not None and self._inside(directory) and not prefix.startswith(".write-check")
            if watched:
                self._step(DiskStep("create", prefix[1:].rstrip(".")))
            fd, name = real_mkstemp(*args, **kwargs)
            if watched:
                owners[fd] = _target(os.path.basename(name))
            return fd, name

        def fdopen(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            target = owners.pop(fd, None)
            return f if target is None else _FailingFile(f, self, target)

        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
            if path and self._inside(os.path.dirname(path)) and os.path.basename(path).endswith(".part"):
                self._step(DiskStep("fsync", _target(os.path.basename(path))))
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            if self._inside(os.path.dirname(os.fspath(dst))):
                self._step(DiskStep("rename", os.path.basename(os.fspath(dst))))
            return real_replace(src, dst, *args, **kwargs)

        def link(src, dst, *args, **kwargs):
            if self._inside(os.path.dirname(os.fspath(dst))):
                self._step(DiskStep("link", _target(os.path.basename(os.fspath(dst)))))
            return real_link(src, dst, *args, **kwargs)

        def close(fd):
            owners.pop(fd, None)  # closed without a write (a hard link takes its name)
            return real_close(fd)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "close", close)
        monkeypatch.setattr(os, "fdopen", fdopen)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "link", link)

    def _inside(self, directory) -> bool:
        try:
            return Path(directory).resolve() == self.directory
        except OSError:
            return False

    def fail_at(self, step: DiskStep, occurrence: int = 0) -> None:
        self.steps, self.failed = [], False
        self._armed = (step, occurrence)

    def disarm(self) -> None:
        self._armed = None

    def _step(self, step: DiskStep, share: float | None = None) -> bool:
        """Record ``step``; raise if it is the armed one (a write returns True instead: it fails itself)."""
        self.steps.append(step)
        if self._armed is None or self.failed:
            return False
        armed, occurrence = self._armed
        if (armed.kind, armed.target) != (step.kind, step.target):
            return False
        seen = sum(1 for s in self.steps if (s.kind, s.target) == (step.kind, step.target))
        if seen - 1 != occurrence:
            return False
        self.failed = True
        if step.kind == "write":
            return True
        raise OSError(self.code, os.strerror(self.code))


class _FailingFile:
    """A temporary file of :class:`DiskFaults`: its first write is a step, and fails when armed, after
    putting down the armed share of the bytes."""

    def __init__(self, f, faults: DiskFaults, target: str) -> None:
        self._f, self._faults, self._target, self._seen = f, faults, target, False

    def write(self, data):
        if not self._seen:
            self._seen = True
            armed = self._faults._armed
            share = armed[0].share if armed is not None else 0.0
            if self._faults._step(DiskStep("write", self._target, share)):
                self._f.write(data[:int(len(data) * share)])
                self._f.flush()
                raise OSError(self._faults.code, os.strerror(self._faults.code))
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_kib: int):
    """A tmpfs of ``size_kib`` KiB mounted at ``path`` (root and mount(8) needed, else the test is
    skipped): its writes fail with ENOSPC, from the kernel, once it is full."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([shutil.which("umount") or "umount", str(path)], capture_output=True)
