"""The base of every error a user can cause and fix, as opposed to a bug: :class:`UserError`.

The data code (:mod:`seqtorch.data.errors`) and the training machinery (:mod:`seqtorch.training.errors`)
derive theirs from it; the scripts print any ``UserError`` as one message and exit with its
:attr:`~UserError.exit_code` (:mod:`seqtorch.training.cli`). It lives here, below both, so that the data
code needs nothing from the training loop.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (a path, a flag, a file's content); printed as one message.

    ``fixes`` lists the flags that, added to the same command, get past it, each with what it does
    (``("--resume", "continue it")``): the scripts print the exact command for each.
    """

    exit_code = 2

    def __init__(self, *args, fixes: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(*args)
        self.fixes = tuple(fixes)
