"""Download files into the seqtorch cache, verified and written atomically.

A download streams into a temporary file beside its destination (:func:`seqtorch.fileio.atomic_write`),
hashes the bytes on the way, and is renamed into place only once the size and the sha256 match. A
failed or interrupted download therefore never leaves a file at ``dest`` that looks complete, and
the temporary file of a killed one is removed after the next successful download of that file.

Only the standard library's ``urllib`` is used, so ``http(s)://`` and ``file://`` URLs both work
(the tests use ``file://`` and a local ``http.server``).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..fileio import atomic_write
from .errors import DownloadError

__all__ = ["cache_dir", "download", "sha256sum"]

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough to keep the progress bar moving
_TIMEOUT_S = 60.0


def cache_dir() -> Path:
    """The directory where seqtorch keeps downloaded and preprocessed data, created if absent.

    ``$SEQTORCH_DATA`` if set, else ``~/.cache/seqtorch``.
    """
    env = os.environ.get("SEQTORCH_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "seqtorch"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 digest of the file at ``path``, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    desc: str | None = None,
    expected_size: int | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    Does nothing if ``dest`` exists and either ``sha256`` is None or the file's digest matches.
    Otherwise streams ``url`` to a temporary file in ``dest``'s directory with a tqdm progress
    bar, checks the byte count (against ``expected_size`` and the server's Content-Length) and the
    sha256, and renames the temporary file onto ``dest``. On any failure the temporary file is
    deleted and a :class:`~seqtorch.data.errors.DownloadError` (a ``RuntimeError``) names the URL,
    what was expected, what arrived, and what to do.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: destination file path; its parent directory is created.
        sha256: expected hex digest (case-insensitive), or None to skip verification.
        desc: progress bar label (default: the file name).
        expected_size: expected size in bytes, or None.
    """
    dest = Path(dest)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")

    if dest.is_file():
        if sha256 is None or sha256sum(dest) == sha256:
            return dest
        # A stale or corrupt copy: fetch it again rather than use it (the rename below replaces it).

    def fetch(out) -> None:
        actual_sha, n_bytes, announced = _stream(url, out, desc or dest.name, expected_size)
        _check(url, dest, sha256, actual_sha, n_bytes, announced, expected_size)  # before the rename

    atomic_write(dest, fetch)
    return dest


def _stream(url: str, out, desc: str, expected_size: int | None) -> tuple[str, int, int | None]:
    """Copy ``url`` into the open binary file ``out``; return (sha256 hex, bytes written, Content-Length)."""
    digest = hashlib.sha256()
    n_bytes = 0
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(
            f"could not open {url}: {exc}. Check the network connection, or download the file by "
            f"other means and pass its local path instead."
        ) from exc
    with response:
        length = response.headers.get("Content-Length") if response.headers else None
        announced = int(length) if length and length.isdigit() else None
        total = announced if announced is not None else expected_size
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  leave=False) as bar:
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    n_bytes += len(chunk)
                    bar.update(len(chunk))
            except (urllib.error.URLError, OSError) as exc:
                raise DownloadError(
                    f"download of {url} failed after {n_bytes} bytes: {exc}. Try again; nothing "
                    f"was kept."
                ) from exc
    return digest.hexdigest(), n_bytes, announced


def _check(url, dest, sha256, actual_sha, n_bytes, announced, expected_size) -> None:
    """Raise DownloadError if the downloaded bytes are not the expected file."""
    advice = (
        f"The partial download was deleted and nothing was written to {dest}. Try again; if it "
        f"keeps failing, the file at {url} has changed or is corrupt: fetch a verified copy by "
        f"other means and pass its local path."
    )
    if announced is not None and n_bytes != announced:
        raise DownloadError(
            f"download of {url} truncated: server announced {announced} bytes, received {n_bytes}. "
            + advice
        )
    if expected_size is not None and n_bytes != expected_size:
        raise DownloadError(
            f"size mismatch for {url}: expected {expected_size} bytes, got {n_bytes}. " + advice
        )
    if sha256 is not None and actual_sha != sha256:
        raise DownloadError(
            f"sha256 mismatch for {url}: expected {sha256}, got {actual_sha}. " + advice
        )
