"""Errors of the data a run reads: a source that is missing, unusable, or cannot be downloaded.

Each is a :class:`~seqtorch.errors.UserError` (the scripts print it as one message naming the
file and what to do, exit status 2) and keeps the built-in bases the loaders raised before it existed,
so a Python caller's ``except FileNotFoundError`` / ``ValueError`` / ``RuntimeError`` still catches it.
"""

from __future__ import annotations

from ..errors import UserError


class DataError(UserError):
    """The data a run was given cannot be used; the message names the file and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The path given as the data (``--data``) does not exist or holds no data set."""


class DataFileError(DataError, ValueError, RuntimeError):
    """The file is not usable: not the data set's format, corrupt, or truncated (the message says which).

    A ``ValueError`` (what the Jena parser raised) and a ``RuntimeError`` (what the IMDB reader raised).
    """


class DownloadError(DataError, RuntimeError):
    """A download failed (no network, a cut connection) or is not the published file (size, sha256)."""
