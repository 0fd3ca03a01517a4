"""Declared hyperparameters: each method states the type and the valid values of every key its config may hold.

A trainer checks its config against these declarations (:func:`check_config`); a search space's bounds, choices and
per-dataset defaults are checked against them when it loads, and every ``--set`` value on the driver before Ray
starts (:func:`check_space`, :func:`check_value`). Every rule broken is one line naming the parameter, the value
and the rule.

Each declaration holds the paper's default (``default=``: a value, or a mapping dataset -> value with ``"*"`` as the
fallback where the paper tunes it per dataset); a search space searches inside the declared range and may start
from other defaults (a CPU-sized first trial), checked against the declaration when it loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zsltune.errors import ConfigError

Kind = Literal["float", "int", "bool", "choice", "path"]


@dataclass(frozen=True, kw_only=True)
class HP:
    """One hyperparameter: kind, valid range (inclusive ``low``/``high``; ``gt`` for a strict lower bound) or
    choices, and the paper's default (a value, or ``{dataset: value, "*": value}``)."""

    kind: Kind
    default: Any
    low: float | None = None
    high: float | None = None
    gt: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""

    def default_for(self, dataset: str = "*") -> Any:
        """The default for ``dataset``, read as a space's (:meth:`zsltune.space.Param.default_for`)."""
        if isinstance(self.default, dict):
            return self.default.get(dataset, self.default.get(dataset.upper(), self.default["*"]))
        return self.default

    def rule(self) -> str:
        """The rule in words: "an integer >= 1", "a number in [0, 1]", "one of l2, std"."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "path":
            return "a file path or null"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        what = "an integer" if self.kind == "int" else "a finite number"
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {self.gt:g}")
        if self.low is not None and self.high is not None:
            what = "an integer" if self.kind == "int" else "a number"
            return f"{what} in [{self.low:g}, {self.high:g}]" + (f" and > {self.gt:g}" if self.gt is not None else "")
        if self.low is not None:
            bounds.append(f">= {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        return what + (" " + " and ".join(bounds) if bounds else "")

    def valid(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "path":
            return value is None or (isinstance(value, str) and bool(value))
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices) or (
                not isinstance(value, bool) and value in self.choices
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.kind == "int" and float(value) != int(value):
            return False
        return (
            (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.gt is None or value > self.gt)
        )

    def cast(self, value: Any) -> Any:
        """``value`` in the declared kind (an int for "int", so ``K=3.0`` from YAML builds 3 experts)."""
        if self.kind == "int":
            return int(value)
        if self.kind == "float":
            return float(value)
        if self.kind == "choice":
            return next((c for c in self.choices if c == value and type(c) is type(value)), value)
        return value


def Float(*, default: Any, low: float | None = None, high: float | None = None, gt: float | None = None,
          help: str = "") -> HP:  # fmt: skip
    return HP(kind="float", default=default, low=low, high=high, gt=gt, help=help)


def Int(*, default: Any, low: float | None = 1, high: float | None = None, help: str = "") -> HP:
    return HP(kind="int", default=default, low=low, high=high, help=help)


def Bool(*, default: Any, help: str = "") -> HP:
    return HP(kind="bool", default=default, help=help)


def Path(*, default: Any = None, help: str = "") -> HP:
    """A file path (e.g. local pretrained weights), or None; fixed with ``--set``, never searched."""
    return HP(kind="path", default=default, help=help)


def Choice(choices: tuple[Any, ...], *, default: Any, help: str = "") -> HP:
    return HP(kind="choice", default=default, choices=tuple(choices), help=help)


def check_value(method: str, name: str, hp: HP, value: Any, *, where: str = "") -> Any:
    """``value`` cast to the declared kind, or a :class:`ConfigError` naming the parameter, value and rule."""
    if not hp.valid(value):
        raise ConfigError(f"{where}{method}: {name} must be {hp.rule()}, got {value!r}")
    return hp.cast(value)


def check_config(method: str, hparams: Mapping[str, HP], config: Mapping[str, Any], *, where: str = "") -> dict:
    """``config`` checked key by key against the declarations: unknown keys and invalid values are errors."""
    unknown = sorted(set(config) - set(hparams))
    if unknown:
        raise ConfigError(
            f"{where}{method}: unknown hyperparameter '{unknown[0]}'; valid ones: {', '.join(sorted(hparams))}"
        )
    return {k: check_value(method, k, hparams[k], v, where=where) for k, v in config.items()}


def check_space(method: str, hparams: Mapping[str, HP], space: Any, datasets: tuple[str, ...] = ()) -> None:
    """A search space's parameters against the declarations: known names, bounds and choices inside the valid
    values, and every (per-dataset) default valid. ``space`` is a :class:`zsltune.space.SearchSpace`."""
    src = f"{space.path}: " if space.path else ""
    for p in space.params:
        if p.name not in hparams:
            raise ConfigError(
                f"{src}parameter '{p.name}' is not a hyperparameter of {method}; valid: {', '.join(sorted(hparams))}"
            )
        hp = hparams[p.name]
        values: list[tuple[str, Any]] = []
        if p.type == "categorical":
            values += [("choice", c) for c in p.choices]
        else:
            values += [("low", p.low), ("high", p.high)]
            if hp.kind in ("bool", "choice"):
                raise ConfigError(f"{src}{method}: {p.name} is {hp.rule()}; declare it as type: categorical")
            if hp.kind == "int" and p.type == "float":
                raise ConfigError(f"{src}{method}: {p.name} must be an integer; declare it as type: int")
        defaults = p.default.items() if isinstance(p.default, dict) else [("", p.default)]
        values += [(f"default{'[' + k + ']' if k else ''}", v) for k, v in defaults if v is not None]
        for what, v in values:
            if not hp.valid(v):
                raise ConfigError(f"{src}{method}: {p.name} {what} must be {hp.rule()}, got {v!r}")
