"""The errors of the Keras importer: all ValueErrors, so one ``except ValueError`` catches them.

Every error a file can cause is a :class:`KerasFileError` whose message names the file: the file is
damaged or not in a Keras layout (:class:`KerasFileError` itself), it holds a layer or option value
that seqtorch does not translate (:class:`UnsupportedKerasError`), or its weights do not fit the
module (:class:`WeightMismatchError`). So ``except KerasFileError`` catches "this file cannot be
loaded", whatever the reason.
"""

from __future__ import annotations


class KerasImportError(ValueError):
    """Base class of the importer's errors (the name older code catches; every one is a KerasFileError)."""


class KerasFileError(KerasImportError):
    """A Keras file that cannot be loaded; the message names the path. Raised as such when the file is
    missing parts, truncated, corrupt, or its config holds values of types Keras never writes."""


class UnsupportedKerasError(KerasFileError):
    """A layer class, or a layer option's value, that the importer does not translate (named in the message)."""


class WeightMismatchError(KerasFileError):
    """The file's weights do not fit the module: another layer count, kind or shape (both sides named)."""
