"""zsltune: hyperparameter search for zero-shot-learning methods on Ray Tune and Optuna.

The public API, re-exported here from the modules that define it:

* :func:`run_sweep` and :class:`SweepOptions` (:mod:`zsltune.sweep`): run or resume one sweep, as ``zsltune run``.
* :func:`read_results` (:mod:`zsltune.results`): a sweep folder's ``(trials, epochs)`` DataFrames.
* :class:`Trainer` and :func:`register_method` (:mod:`zsltune.methods`): the contract a method follows and its
  registry.

The names load on first use (a module ``__getattr__``, PEP 562), so ``import zsltune``, and with it the
``zsltune`` command's start, imports neither Ray nor torch: ``from zsltune import run_sweep`` imports the sweep
package then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time __getattr__ imports these on first use
    from zsltune.methods import Trainer, register_method
    from zsltune.results import read_results
    from zsltune.sweep import SweepOptions, run_sweep

__all__ = ["SweepOptions", "Trainer", "read_results", "register_method", "run_sweep"]

#: public name -> the module it is imported from (the package that documents it)
_EXPORTS: dict[str, str] = {
    "SweepOptions": "zsltune.sweep",
    "Trainer": "zsltune.methods",
    "read_results": "zsltune.results",
    "register_method": "zsltune.methods",
    "run_sweep": "zsltune.sweep",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first access (module attributes are found before this runs)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses find it without calling __getattr__ again
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
