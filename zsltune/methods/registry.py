"""The method registry: a trainer by registry name (``crnet``) or import path (``my_pkg.my_module:MyTrainer``).

:func:`register_method` is the class decorator each shipped trainer carries; importing :mod:`zsltune.methods`
imports them all, so :func:`get_method` and :func:`list_methods` see every shipped method.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from zsltune.errors import UnknownNameError
from zsltune.methods.base import Trainer

#: registry name -> trainer class, filled by @register_method as each method module is imported
_REGISTRY: dict[str, type[Trainer]] = {}
T = TypeVar("T", bound=type[Trainer])


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register_method("crnet")`` makes ``--space crnet`` find the trainer."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            prev = _REGISTRY[name]
            if (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):  # not a re-import
                raise ValueError(f"method '{name}' is already registered by {prev.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_method(name: str) -> type[Trainer]:
    """A trainer by registry name (``crnet``) or import path (``my_pkg.my_module:MyTrainer``)."""
    if ":" in name:
        return import_method(name)
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown method '{name}'; valid methods: {', '.join(list_methods())}")
    return _REGISTRY[name]


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def method_ref(cls: type[Trainer]) -> tuple[str, str | None]:
    """(``module:QualName``, the sys.path root it imports from where that is not an installed location)."""
    ref = f"{cls.__module__}:{cls.__qualname__}"
    mod = sys.modules.get(cls.__module__)
    file = getattr(mod, "__file__", None)
    if cls.__module__.startswith("zsltune.") or not file:
        return ref, None
    root = Path(file).resolve().parent
    for _ in cls.__module__.split(".")[1:]:
        root = root.parent
    return ref, str(root)


def import_object(ref: str, path: str | None = None) -> Any:
    """The object at ``module:QualName``, importing the module (from ``path`` too, where given); ImportError or
    AttributeError for the caller to word."""
    module, _, qual = ref.partition(":")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def import_method(ref: str, path: str | None = None) -> type[Trainer]:
    """The trainer class at ``module:QualName``, importing the module (from ``path`` too, where given)."""
    try:
        obj = import_object(ref, path)
    except (ImportError, AttributeError) as e:
        msg = f"method '{ref}': cannot import it ({e}); check the module path and PYTHONPATH"
        raise UnknownNameError(msg) from None
    if not (isinstance(obj, type) and issubclass(obj, Trainer)):
        raise UnknownNameError(f"method '{ref}' is not a Trainer subclass")
    return obj
