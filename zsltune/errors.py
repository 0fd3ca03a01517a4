"""User-facing errors: one line each, naming the file or option and the fix; and the errors that end a trial.

The CLI prints ``str(error)`` of a :class:`ZsltuneError` and exits non-zero; a traceback appears only with
``--debug``. :class:`TrialDiverged` and :class:`TrialOutOfMemory` are not user input errors: a trainer or the sweep's
trainable raises them inside a trial, and the sweep records the trial as failed (or retries it) with the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ZsltuneError(Exception):
    """Base class of every error caused by user input (files, YAML, CLI options)."""


class DataError(ZsltuneError):
    """A dataset file is missing, malformed or inconsistent."""


class SpaceError(ZsltuneError):
    """A search-space YAML file is malformed."""


class ConfigError(ZsltuneError):
    """A command-line option or trainer configuration is invalid."""


class UnknownNameError(ZsltuneError, KeyError):
    """A registry lookup (method, sampler, scheduler, dataset) failed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TrialDiverged(RuntimeError):
    """A loss or score became NaN or inf, or a run collapsed: the trial ends as failed and is not retried."""


#: result key of the last report of a trial that raised :class:`TrialDiverged`: its one-line reason
DIVERGED = "diverged"


class TrialOutOfMemory(RuntimeError):
    """The trial ran out of memory (host or CUDA); the one-line reason names the device and the cap.

    Raised by the sweep's trainable in place of ``MemoryError``, torch's CPU allocator error or
    ``torch.cuda.OutOfMemoryError``; Tune retries the trial (``--max-failures``) and records the reason.
    """


def run_command(func: Callable[[Any], int | None], args: Any, *, debug: bool = False) -> int:
    """``func(args)`` as a command's exit status: a :class:`ZsltuneError` prints ``zsltune: error: ...`` (one line) and
    gives 2, re-raised instead with ``debug``; Ctrl-C prints ``zsltune: interrupted`` and gives 130.

    Shared by the ``zsltune`` command (:mod:`zsltune.cli`) and the script ``python zsltune/run.py``.
    """
    try:
        return int(func(args) or 0)
    except ZsltuneError as e:
        if debug:
            raise
        print(f"zsltune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zsltune: interrupted", file=sys.stderr)
        return 130
