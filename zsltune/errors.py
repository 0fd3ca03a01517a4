"""User-facing errors: one line each, naming the file or option and the fix.

The CLI prints ``str(error)`` and exits non-zero; a traceback appears only with ``--debug``.
"""

from __future__ import annotations


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
