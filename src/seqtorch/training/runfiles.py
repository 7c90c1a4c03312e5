"""A run's files on disk: each written with a sha256 of its bytes, and read back only when they match.

Every file seqtorch writes for a run (``last.pt``, ``last.prev.pt``, ``best.pt``, ``history.json``,
``metrics.json``, ``curves.png``) carries the digest of its bytes, written in the same atomic step as
the file, and every read by seqtorch checks it: a file changed after it was written (a flipped bit,
a copy cut short, an editor's save) is refused with one message that names it and says what to do.

Two layouts, one per kind of file:

* **Checkpoints** carry the digest inside. ``torch.save`` writes a zip archive, which ends with an
  end-of-central-directory record whose last field is the length of an archive comment (0).
  :func:`seal` sets that length to 80 and appends the comment ``seqtorch-sha256:<64 hex digits>``,
  the sha256 of the bytes ``torch.save`` produced. Zip readers (torch's included) skip the comment,
  so ``torch.load(path, weights_only=True)`` works as before, and a copied checkpoint takes its
  digest along. The digest is part of the file, so file and digest are one rename: a crash leaves
  the old sealed file or the new one, never a file paired with another file's digest.
* **history.json, metrics.json, curves.png** are standard formats without room for a digest; each
  has a sidecar ``<name>.sha256`` in ``sha256sum`` format (``sha256sum -c`` checks it). File and
  sidecar are two renames, and a crash can fall between them, so :func:`write_with_digest` orders
  them such that every moment on disk is consistent: (1) the sidecar is rewritten to list the digest
  of the new bytes beside those it listed; (2) the file is replaced; (3) the sidecar is cut down to
  the new digest. Between (1) and (3) the sidecar accepts the old bytes and the new ones and
  nothing else; since a digest is of content (not a version number or a time), no crash can leave
  a pair that passes the check with bytes that are not exactly ones seqtorch wrote, and none leaves
  a good file failing it.

A file written before seqtorch kept digests (a checkpoint without the comment, a JSON file without
a sidecar) is read with a :class:`UnverifiedFileWarning`: nothing proves it intact, nothing says
otherwise. Every write failure (a full disk, an I/O error) becomes a :class:`SaveError` naming the
file and the error; the file as it was before the write is intact (the writes are atomic).
"""

from __future__ import annotations

import errno as errno_codes
import hashlib
import os
import struct
import warnings
from pathlib import Path
from typing import Callable

from ..fileio import atomic_link_or_copy, atomic_write
from .errors import UserError

__all__ = [
    "DIGEST_SUFFIX", "RunFileError", "CheckpointError", "MissingCheckpointError", "SaveError",
    "UnverifiedFileWarning", "seal", "read_sealed", "write_sealed", "write_with_digest",
    "read_with_digest", "digest_path", "keep_copy",
]

DIGEST_SUFFIX = ".sha256"
_LOCAL_HEADER = b"PK\x03\x04"  # how a zip archive (torch.save's format) starts
_EOCD = b"PK\x05\x06"  # the zip end-of-central-directory record's signature
_EOCD_SIZE = 22  # its size without the comment; the comment's length is its last 2 bytes
_SEAL_TAG = b"seqtorch-sha256:"
_SEAL_SIZE = len(_SEAL_TAG) + 64
_ZIP_TAIL = _EOCD_SIZE + 0xFFFF  # the end record lies within this many bytes of a zip's end


class UnverifiedFileWarning(UserWarning):
    """A run's file carries no digest (written before seqtorch kept them): it was read unverified."""


class RunFileError(UserError, RuntimeError):
    """A run's file cannot be used: cut short, or its bytes fail their digest.

    Attributes: ``path`` (the file), ``problem`` (what is wrong with it), ``fix`` (what to do).
    """

    def __init__(self, path: str | os.PathLike, problem: str, fix: str = "") -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path}: {problem}" + (f". {fix}" if fix else ""))

    def with_fix(self, fix: str) -> "RunFileError":
        """The same error with another ``fix`` (the caller knows better what the user can do)."""
        return type(self)(self.path, self.problem, fix)


class CheckpointError(RunFileError):
    """A checkpoint cannot be used: cut short, failing its digest, unreadable, or of another format."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """There is no checkpoint where one was expected."""


class SaveError(UserError, OSError):
    """A run's file could not be written (a full disk, an I/O error); the file as it was is intact.

    Attributes: ``path``, ``cause`` (the OSError), ``errno`` (its number).
    """

    def __init__(self, path: str | os.PathLike, cause: OSError, hint: str = "") -> None:
        self.path, self.cause, self.hint = Path(path), cause, hint
        name = errno_codes.errorcode.get(cause.errno, "") if cause.errno else ""
        reason = f"{cause.strerror or cause}" + (f" ({name})" if name else "")
        super().__init__(f"could not write {path}: {reason}; the file as it was before this write is "
                         f"intact" + (f". {hint}" if hint else ""))
        self.errno = cause.errno  # not strerror/filename: OSError's str() would then replace the message

    def with_hint(self, hint: str) -> "SaveError":
        return SaveError(self.path, self.cause, hint)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _saving(path: Path, write: Callable[[], None]) -> None:
    """Run ``write``; an OSError it raises becomes a :class:`SaveError` naming ``path``."""
    try:
        write()
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(path, exc) from exc


# --- checkpoints: the digest in the zip archive's comment -------------------------------------------


def seal(data: bytes) -> bytes:
    """``data`` (a zip archive as ``torch.save`` writes it, without a comment) with its sha256 appended
    as the archive's comment (see the module docstring)."""
    if len(data) < _EOCD_SIZE or data[-_EOCD_SIZE:-_EOCD_SIZE + 4] != _EOCD or data[-2:] != b"\0\0":
        raise ValueError("seal() takes a zip archive without a comment (torch.save's format)")
    comment = _SEAL_TAG + _sha256(data).encode()
    return data[:-2] + struct.pack("<H", len(comment)) + comment


def unseal(data: bytes, path: str | os.PathLike) -> bytes:
    """The bytes ``torch.save`` wrote, from the bytes of a sealed file, checked against its digest.

    A file without a seal whose zip end record is intact is returned as it is, with an
    :class:`UnverifiedFileWarning` (seqtorch before digests). Raises :class:`CheckpointError` when the
    file is empty, not a zip archive, cut short (its end record is missing, or announces more bytes
    than follow it) or damaged (its digest does not match, or its end is garbled).
    """
    n = len(data)
    if n >= _EOCD_SIZE and data[-_EOCD_SIZE:-_EOCD_SIZE + 4] == _EOCD and data[-2:] == b"\0\0":
        # A sealed file cannot end like this: its last bytes are hex digits.
        warnings.warn(f"{path} carries no digest (written before seqtorch kept them); it was read "
                      f"unverified", UnverifiedFileWarning, stacklevel=3)
        return data
    end = n - _SEAL_SIZE - _EOCD_SIZE
    if (end >= 0 and data[end:end + 4] == _EOCD and data[-_SEAL_SIZE - 2:-_SEAL_SIZE] == struct.pack("<H", _SEAL_SIZE)
            and data[-_SEAL_SIZE:-64] == _SEAL_TAG):
        original = data[:-_SEAL_SIZE - 2] + b"\0\0"
        expected, actual = data[-64:].decode("ascii", "replace"), _sha256(original)
        if actual != expected:
            raise CheckpointError(path, f"its bytes do not match its digest (sha256 {actual}, recorded "
                                        f"{expected}): the file was damaged after seqtorch wrote it")
        return original
    if n == 0:
        raise CheckpointError(path, "the file is empty (0 bytes): it was cut short")
    if not data.startswith(_LOCAL_HEADER) and not _LOCAL_HEADER.startswith(data):  # a prefix: cut short
        raise CheckpointError(path, f"not a checkpoint: torch.save writes a zip archive, this file starts "
                                    f"with {data[:8]!r}")
    end = data.rfind(_EOCD, max(0, n - _ZIP_TAIL))
    if end < 0 or n - end < _EOCD_SIZE or end + _EOCD_SIZE + struct.unpack("<H", data[end + 20:end + 22])[0] > n:
        raise CheckpointError(path, f"the file is cut short ({n:,} bytes, its end is missing: the zip end "
                                    f"record and the digest that close every complete checkpoint)")
    raise CheckpointError(path, "the file's end (its zip end record and digest) is damaged")


def write_sealed(path: str | os.PathLike, data: bytes) -> None:
    """Write the zip archive ``data`` to ``path`` atomically, sealed with its digest."""
    path = Path(path)
    sealed = seal(data)
    _saving(path, lambda: atomic_write(path, lambda f: f.write(sealed)))


def read_sealed(path: str | os.PathLike) -> bytes:
    """The verified bytes ``torch.save`` wrote to ``path`` (see :func:`unseal`).

    Raises :class:`MissingCheckpointError` if there is no file, :class:`CheckpointError` if it is cut
    short or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(path, "no checkpoint there")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"the file cannot be read ({exc.strerror or exc})") from exc
    return unseal(data, path)


# --- other files: a sidecar in sha256sum format ----------------------------------------------------


def digest_path(path: str | os.PathLike) -> Path:
    """The sidecar that holds the digest of ``path``: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def _listed(sidecar: Path) -> list[str]:
    """The digests ``sidecar`` lists ([] when there is none or it is unreadable)."""
    try:
        lines = sidecar.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [line.split()[0] for line in lines if line.strip()]


def _write_listing(sidecar: Path, name: str, digests: list[str]) -> None:
    text = "".join(f"{digest}  {name}\n" for digest in digests)
    _saving(sidecar, lambda: atomic_write(sidecar, lambda f: f.write(text), mode="w"))


def write_with_digest(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` and its digest to ``<path>.sha256``, in the crash-safe order of the
    module docstring. Raises :class:`SaveError` naming the file a failed write was for."""
    path = Path(path)
    sidecar, new = digest_path(path), _sha256(data)
    before = _listed(sidecar)
    if new not in before:
        _write_listing(sidecar, path.name, before + [new])  # (1) old and new accepted
    _saving(path, lambda: atomic_write(path, lambda f: f.write(data)))  # (2)
    if before != [new]:
        _write_listing(sidecar, path.name, [new])  # (3) only the new


def read_with_digest(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, checked against ``<path>.sha256``.

    Raises FileNotFoundError without the file, :class:`RunFileError` when the bytes are not ones its
    sidecar lists; warns (:class:`UnverifiedFileWarning`) and returns them when there is no sidecar.
    """
    path = Path(path)
    data = path.read_bytes()
    sidecar = digest_path(path)
    if not sidecar.exists():
        warnings.warn(f"{path} has no digest file {sidecar.name} beside it (written before seqtorch "
                      f"kept them, or it was deleted); it was read unverified", UnverifiedFileWarning,
                      stacklevel=2)
        return data
    actual = _sha256(data)
    if actual not in _listed(sidecar):
        raise RunFileError(path, f"its bytes (sha256 {actual}) do not match the digest in {sidecar.name}: "
                                 f"the file, or its digest file, was changed after seqtorch wrote them")
    return data


def keep_copy(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Make ``dest`` an atomic copy of ``src`` (a sealed checkpoint: the copy keeps the seal).

    Raises :class:`SaveError` naming ``dest`` if it cannot be made; ``dest`` is then as it was.
    """
    dest = Path(dest)
    _saving(dest, lambda: atomic_link_or_copy(src, dest))
