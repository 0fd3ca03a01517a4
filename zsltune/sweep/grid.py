"""Ablations as a sweep: a grid over named hyperparameters, the rest fixed at the space's defaults, each
configuration run with ``--repeats`` seeds (``zsltune run --grid ablation --repeats 3``).

``--grid NAME`` takes every choice of a categorical (or both values of a boolean); ``--grid NAME=V1,V2`` gives the
levels explicitly (needed for numbers). The grid runs as one Tune job of (configuration × seed) trials, FIFO: an
ablation compares configurations at their full budget, so no trial is stopped early and no sampler picks.
``zsltune analyze report`` then groups the trials by the grid's parameters (see :mod:`analysis.ablation`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from zsltune.errors import ConfigError
from zsltune.methods.hparams import HP, check_value
from zsltune.space import SearchSpace

#: reserved trial-config keys (zsltune.sweep.trial): the fixed part of every configuration, and the trial's seed
CONFIG_KEY, SEED_KEY = "__config__", "__seed__"


def _value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def grid_names(items: Sequence[str]) -> list[str]:
    """The parameter names of ``--grid`` items (``ablation``, ``lr=1e-4,1e-3`` -> ``lr``)."""
    return [item.partition("=")[0].strip() for item in items]


def grid_levels(
    items: Sequence[str], *, method: str, hparams: Mapping[str, HP], space: SearchSpace
) -> dict[str, list[Any]]:
    """``--grid`` items as ``{name: [levels]}``, each level checked against the method's declaration."""
    params = {p.name: p for p in space.params}
    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = (s.strip() for s in item.partition("="))
        if name not in hparams:
            raise ConfigError(f"--grid {item}: not a hyperparameter of {method}; valid: {', '.join(sorted(hparams))}")
        if name in out:
            raise ConfigError(f"--grid {name}: given twice; give each parameter once")
        hp, p = hparams[name], params.get(name)
        if sep:
            levels = [_value(v) for v in values.split(",") if v.strip()]
        elif p is not None and p.type == "categorical":
            levels = list(p.choices)
        elif hp.kind == "choice":
            levels = list(hp.choices or ())
        elif hp.kind == "bool":
            levels = [True, False]
        else:
            raise ConfigError(
                f"--grid {name}: a {hp.kind} parameter needs its levels, e.g. --grid {name}=V1,V2 "
                f"(only categorical and boolean parameters default to all their values)"
            )
        if len(levels) < 1:
            raise ConfigError(f"--grid {item}: no levels; give at least one, e.g. --grid {name}=V1,V2")
        out[name] = [check_value(method, name, hp, v, where=f"--grid {item}: ") for v in levels]
    return out


def grid_param_space(levels: Mapping[str, list[Any]], fixed: Mapping[str, Any], seeds: Sequence[int]) -> dict:
    """Tune's param_space: every grid level × every seed, the remaining parameters fixed."""
    from ray import tune

    return {
        **{name: tune.grid_search(list(values)) for name, values in levels.items()},
        CONFIG_KEY: {k: v for k, v in fixed.items() if k not in levels},
        SEED_KEY: tune.grid_search(list(seeds)),
    }


def grid_size(levels: Mapping[str, list[Any]]) -> int:
    return len(list(itertools.product(*levels.values()))) if levels else 1
