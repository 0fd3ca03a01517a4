"""Ablations as a sweep: a grid over named hyperparameters, the rest fixed at the space's defaults, each
configuration run with ``--repeats`` seeds (``zsltune run --grid ablation --repeats 3``).

``--grid NAME`` takes every choice of a categorical (or both values of a boolean); ``--grid NAME=V1,V2`` gives the
levels explicitly (needed for numbers); ``--grid A:B=a1:b1,a2:b2`` varies parameters together (only the pairs
given, e.g. DeML's (I, J) arms). The grid runs as one Tune job of (configuration × seed) trials, FIFO: an
ablation compares configurations at their full budget, so no trial is stopped early and no sampler picks.
``zsltune analyze report`` then groups the trials by the grid's parameters (see :mod:`zsltune.analysis.ablation`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from zsltune.errors import ConfigError
from zsltune.methods.hparams import HP, check_value
from zsltune.space import SearchSpace
from zsltune.sweep.overrides import TrialOverrides, grid_space


def _value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def parse_grid_items(items: Sequence[str]) -> list[tuple[list[str], list[tuple[Any, ...]] | None]]:
    """``--grid`` items as (parameter names, the levels given or None), nothing checked against a method: ``act`` ->
    (["act"], None); ``lr=0.01,0.1`` -> (["lr"], [(0.01,), (0.1,)]); ``I:J=1:1,2:4`` -> (["I", "J"], [(1, 1), (2, 4)]).
    Each value is read as YAML (``0.1`` a float, ``true`` a bool, ``gen`` a string)."""
    out: list[tuple[list[str], list[tuple[Any, ...]] | None]] = []
    for item in items:
        head, sep, values = (s.strip() for s in str(item).partition("="))
        names = [n.strip() for n in head.split(":")]
        levels = [tuple(_value(v) for v in lv.split(":")) for lv in values.split(",") if lv.strip()] if sep else None
        out.append((names, levels))
    return out


def grid_names(items: Sequence[str]) -> list[str]:
    """The parameter names of ``--grid`` items (``ablation``, ``lr=1e-4,1e-3`` -> ``lr``; ``I:J=1:1,2:4`` -> I, J)."""
    return [n for names, _ in parse_grid_items(items) for n in names]


def grid_levels(
    items: Sequence[str], *, method: str, hparams: Mapping[str, HP], space: SearchSpace
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """``--grid`` items as ``{(names...): [level tuples]}``, each value checked against the method's declaration.

    ``NAME`` or ``NAME=V1,V2``: one parameter; ``A:B=a1:b1,a2:b2``: parameters varied together (only those
    combinations, e.g. DeML's (I, J) pairs). Several items make the product.
    """
    params = {p.name: p for p in space.params}
    out: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    seen: set[str] = set()
    for item, (parsed, given) in zip(items, parse_grid_items(items), strict=True):
        head, names = item.partition("=")[0].strip(), tuple(parsed)
        for name in names:
            if name not in hparams:
                raise ConfigError(
                    f"--grid {item}: {name} is not a hyperparameter of {method}; valid: {', '.join(sorted(hparams))}"
                )
            if name in seen:
                raise ConfigError(f"--grid {name}: given twice; give each parameter once")
            seen.add(name)
        if given is not None:
            levels = given
            bad = next((lv for lv in levels if len(lv) != len(names)), None)
            if bad is not None:
                raise ConfigError(
                    f"--grid {item}: each level needs {len(names)} value(s) joined by ':' (one per parameter of "
                    f"{head}), got {':'.join(map(str, bad))}"
                )
        elif len(names) > 1:
            raise ConfigError(f"--grid {item}: parameters varied together need their levels, e.g. {head}=1:1,2:4")
        else:
            name = names[0]
            hp, p = hparams[name], params.get(name)
            if p is not None and p.type == "categorical":
                levels = [(v,) for v in p.choices]
            elif hp.kind == "choice":
                levels = [(v,) for v in hp.choices]
            elif hp.kind == "bool":
                levels = [(True,), (False,)]
            else:
                raise ConfigError(
                    f"--grid {name}: a {hp.kind} parameter needs its levels, e.g. --grid {name}=V1,V2 "
                    f"(only categorical and boolean parameters default to all their values)"
                )
        if not levels:
            raise ConfigError(f"--grid {item}: no levels; give at least one, e.g. --grid {head}=V1,V2")
        out[names] = [
            tuple(
                check_value(method, n, hparams[n], v, where=f"--grid {item}: ") for n, v in zip(names, lv, strict=True)
            )
            for lv in levels
        ]
    return out


def grid_configs(levels: Mapping[tuple[str, ...], list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Every configuration of the grid (the product over the items), as {name: value}."""
    out = []
    for combo in itertools.product(*levels.values()):
        cfg: dict[str, Any] = {}
        for names, values in zip(levels, combo, strict=True):
            cfg.update(zip(names, values, strict=True))
        out.append(cfg)
    return out


def grid_param_space(
    levels: Mapping[tuple[str, ...], list[tuple[Any, ...]]], fixed: Mapping[str, Any], seeds: Sequence[int]
) -> dict[str, Any]:
    """Tune's param_space: every grid configuration × every seed, the remaining parameters fixed."""
    varied = {n for names in levels for n in names}
    rest = {k: v for k, v in fixed.items() if k not in varied}
    return grid_space(variants=[TrialOverrides(config=rest, grid=g) for g in grid_configs(levels)], seeds=seeds)


def grid_size(levels: Mapping[tuple[str, ...], list[tuple[Any, ...]]]) -> int:
    return len(grid_configs(levels)) if levels else 1
