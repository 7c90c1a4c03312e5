"""The error of a data file seqtorch cannot read: missing parts, cut short, damaged, or not in its format.

Each reader raises its own subclass, which keeps the built-in type it always raised (IMDB's readers a
RuntimeError, Jena's a ValueError), so existing ``except`` clauses still catch them; all are
:class:`~seqtorch.training.errors.UserError` s, so the training scripts print them as one message.
The message names the file and says what to do.
"""

from __future__ import annotations

from ..training.errors import UserError


class DataFileError(UserError):
    """A data file (or a local copy of one) cannot be read; the message names it and what to do."""
