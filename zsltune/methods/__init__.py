"""Method trainers. Importing this package registers every method; look one up with :func:`get_method`."""

from zsltune.methods import clarel, crnet, linear  # noqa: F401  (importing registers the methods)
from zsltune.methods.base import (
    GZSL_KEYS,
    Trainer,
    TrialDiverged,
    TrialOutOfMemory,
    get_method,
    list_methods,
    register_method,
)

__all__ = [
    "GZSL_KEYS",
    "Trainer",
    "TrialDiverged",
    "TrialOutOfMemory",
    "get_method",
    "list_methods",
    "register_method",
]
