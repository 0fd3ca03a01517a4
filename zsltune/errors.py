"""User-facing errors: one line each, naming the file or option and the fix.

The CLI prints ``str(error)`` and exits non-zero; a traceback appears only with ``--debug``.
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
