"""Errors a user can cause in a run, as opposed to bugs: the scripts print these as one message.

A missing or damaged data file, a checkpoint that fails its check, an ``--out`` that cannot take the run,
a flag value that makes no sense: each is raised as a :class:`UserError` (or a subclass) whose message
names the file, flag or value and says what to do. The scripts turn a ``UserError`` into that message
on stderr and the exit status :attr:`UserError.exit_code`; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (a path, a flag, a file's content); printed as one message."""

    exit_code = 2
