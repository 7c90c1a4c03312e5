"""The training scripts' command-line face: a user's mistake is one message, Ctrl-C says how to resume.

:func:`run` calls a script's ``main(argv)`` and turns what escapes it into what a person at a terminal
needs:

* a :class:`~seqtorch.training.errors.UserError` (a missing file, a bad flag value, an ``--out`` that
  holds another run): ``<script>: error: <message>`` on stderr, then for each of its fixes the exact
  command that applies it; exit status :attr:`~seqtorch.training.errors.UserError.exit_code` (2);
* Ctrl-C (``KeyboardInterrupt``; during training a
  :class:`~seqtorch.training.interrupt.RunInterrupted` that says what ``last.pt`` holds): that message
  and the command that resumes the run; exit status 130, the shell's 128 + SIGINT;
* any other exception is a bug: Python's traceback, unchanged.

``--debug`` (a flag of every script, :func:`add_debug_flag`) or ``SEQTORCH_DEBUG=1`` shows the traceback
of the first two as well. Commands are written the way the run was started: under ``make train`` the
Makefile names itself in ``SEQTORCH_RERUN`` (``make train``), the variable that carries the flags in
``SEQTORCH_RERUN_VAR`` (``TRAIN_ARGS``) and their value in ``SEQTORCH_RERUN_ARGS``, so the hint is
``make train TRAIN_ARGS=--resume``; under torchrun it is a torchrun command; else the process's own
command line. Under torchrun only rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Callable, Sequence

from .errors import UserError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SEQTORCH_DEBUG"
RERUN_ENV, RERUN_VAR_ENV, RERUN_ARGS_ENV = "SEQTORCH_RERUN", "SEQTORCH_RERUN_VAR", "SEQTORCH_RERUN_ARGS"
INTERRUPTED_EXIT = 130  # 128 + SIGINT: what a shell reports for a program stopped by Ctrl-C
# Flags a hint replaces: a run is resumed, replaced or started again, never two of them at once.
_RUN_MODE_FLAGS = ("--resume", "--overwrite")


def add_debug_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--debug``; :func:`run` reads it from the command line itself (it is no config field)."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"on an error, show Python's traceback instead of one message (also "
                             f"{DEBUG_ENV}=1)")


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def rerun_command(argv: Sequence[str], flag: str | None = "") -> str:
    """The command that started this run with ``--resume``/``--overwrite`` dropped and ``flag`` added;
    with ``flag=None``, the command as it was.

    ``argv`` are the script's arguments (``sys.argv[1:]`` for a script run from a shell).
    """
    def edit(args: Sequence[str]) -> list[str]:
        if flag is None:
            return list(args)
        return [a for a in args if a not in _RUN_MODE_FLAGS] + ([flag] if flag else [])

    make = os.environ.get(RERUN_ENV)
    if make:
        variable = os.environ.get(RERUN_VAR_ENV, "TRAIN_ARGS")
        args = edit(shlex.split(os.environ.get(RERUN_ARGS_ENV, "")))
        return f"{make} {variable}={shlex.quote(' '.join(args))}" if args else make
    args = [sys.argv[0], *edit(argv)]
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker: the command to give is torchrun's
        nproc = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
        return shlex.join(["torchrun", "--nproc_per_node", nproc, *args])
    # The interpreter and its options as typed (".venv/bin/python -u"), then the script and its flags.
    interpreter = sys.orig_argv[:len(sys.orig_argv) - len(sys.argv)] or [sys.executable]
    return shlex.join([*interpreter, *args])


def run(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
    """Call ``main(argv)`` (default ``sys.argv[1:]``); a user error or Ctrl-C exits with a message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) or "seqtorch"
    try:
        main(argv)
    except UserError as error:
        if debug_requested(argv):
            raise
        _say(f"{prog}: error: {error}", argv, error.fixes)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interrupt:
        if debug_requested(argv):
            raise
        # A RunInterrupted says where the run stands; any other came while no epoch was running.
        detail = str(interrupt) or "No training was under way (the data was being read, or the results written)."
        fixes = getattr(interrupt, "fixes", ((None, "run it again"),))
        _say(f"{prog}: interrupted (Ctrl-C). {detail}", argv, fixes)
        sys.exit(INTERRUPTED_EXIT)


def _say(message: str, argv: Sequence[str], fixes: Sequence[tuple[str | None, str]]) -> None:
    """``message`` and a command per fix on stderr, from one process (rank 0 under torchrun)."""
    if os.environ.get("RANK", "0") != "0":
        return
    lines = [message] + [f"  {what}: {rerun_command(argv, flag)}" for flag, what in fixes]
    print("\n".join(lines), file=sys.stderr, flush=True)
