"""The errors of the Keras importer: all ValueErrors, so one ``except ValueError`` catches them."""

from __future__ import annotations


class KerasImportError(ValueError):
    """Base class: a Keras file that seqtorch cannot turn into a model or into a model's weights."""


class KerasFileError(KerasImportError):
    """The file is not a readable Keras file: missing parts, truncated, corrupt. The message names the path."""


class UnsupportedKerasError(KerasImportError):
    """A layer class, or a layer option's value, that the importer does not translate (named in the message)."""


class WeightMismatchError(KerasImportError):
    """The file's weights do not fit the module: another layer count, kind or shape (both sides named)."""
