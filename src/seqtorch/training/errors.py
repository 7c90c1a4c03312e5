"""Errors a user can cause in a run, as opposed to bugs: the scripts print these as one message.

A missing or damaged data file, a checkpoint that fails its check, an ``--out`` that cannot take the run,
a flag value that makes no sense: each is raised as a :class:`UserError` (or a subclass) whose message
names the file, flag or value and says what to do. The scripts turn a ``UserError`` into that message
on stderr and the exit status :attr:`UserError.exit_code`; any other exception is a bug and keeps its
traceback (:mod:`seqtorch.training.cli`).

Each subclass also keeps the built-in base a Python caller caught before it existed (``ValueError`` for
a bad setting, ``RuntimeError`` for a run that cannot go on), so ``except ValueError`` still works.
"""

from __future__ import annotations

from ..errors import UserError  # the base, shared with the data code below the training loop


class ConfigError(UserError, ValueError):
    """A setting that cannot work: a flag's value out of range, two flags that exclude each other."""


class ResumeError(UserError, RuntimeError):
    """``--resume`` of a run that this one cannot continue (another model, optimizer or recipe)."""


class SetupError(UserError, RuntimeError):
    """The machine lacks what the settings ask for (``--device cuda`` without a visible GPU)."""
