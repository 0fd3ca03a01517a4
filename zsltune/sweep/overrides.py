"""What the driver fixes for one trial beyond its hyperparameters (seed, budget, frozen knobs, a grid's configuration).

Tune trial configs must stay plain data: Ray pickles them into the experiment state (``--resume`` restores them),
writes them to ``params.json``, and the Parquet callbacks read ``trial.config``. So a trial carries its
:class:`TrialOverrides` as one plain dict under one reserved key, and this module is the only one that knows that
key: :func:`grid_space` writes it into a Tune ``param_space``, :func:`split_config` reads a trial config back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

_KEY = "__overrides__"  # the one reserved key of a trial config


@dataclass(frozen=True, kw_only=True)
class TrialOverrides:
    """One trial's driver-side settings, typed, instead of string keys scattered through its config.

    Holds dicts, so it compares by value but is not hashable.
    """

    config: dict[str, Any] = field(default_factory=dict)  # fixed hyperparameters (a rerun's config, a grid's rest)
    grid: dict[str, Any] = field(default_factory=dict)  # an ablation grid's varied part (zsltune.sweep.grid)
    seed: int | None = None  # replaces the spec's seed (None: the spec's)
    max_epochs: int | None = None  # replaces the spec's epoch budget, the lr schedule's horizon (None: the spec's)
    stop_epoch: int | None = None  # ends the trial after this many epochs (None: at max_epochs)
    knobs: dict[str, float] = field(default_factory=dict)  # the trainer's knobs, frozen (chosen on validation)
    rank: int | None = None  # a rerun's rank of the configuration in its search

    def hyperparameters(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The trainer's config, as ``run_trial`` builds it: ``config``, then the fixed part, then the grid's."""
        return {**config, **self.config, **self.grid}

    def encode(self) -> dict[str, Any]:
        """Plain data (picklable, JSON-able) for a Tune config; :meth:`decode` reads it back."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> TrialOverrides:
        """The overrides :meth:`encode` wrote (fields it lacks take their defaults)."""
        return cls(
            config=dict(data.get("config") or {}),
            grid=dict(data.get("grid") or {}),
            knobs=dict(data.get("knobs") or {}),
            seed=_int(data.get("seed")),
            max_epochs=_int(data.get("max_epochs")),
            stop_epoch=_int(data.get("stop_epoch")),
            rank=_int(data.get("rank")),
        )


def grid_space(*, variants: Sequence[TrialOverrides], seeds: Sequence[int]) -> dict[str, Any]:
    """Tune's ``param_space`` for a grid: one trial per (variant, seed), the variant fastest (Tune's grid order)."""
    from ray import tune

    return {_KEY: tune.grid_search([replace(v, seed=int(s)).encode() for s in seeds for v in variants])}


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], TrialOverrides]:
    """A trial config as (the search's own hyperparameters, the driver's overrides); ``__x__`` keys are reserved."""
    plain = {k: v for k, v in config.items() if not _reserved(k)}
    if _KEY in config:
        return plain, TrialOverrides.decode(config[_KEY])
    return plain, _legacy(config)


def _legacy(config: Mapping[str, Any]) -> TrialOverrides:
    """The overrides of a trial config written before this module, one reserved key each (``__seed__``, ...).

    Read only: ``--resume`` of an experiment an older zsltune started still applies its seeds, budgets and knobs.
    """
    fixed, grid = dict(config.get("__config__") or {}), dict(config.get("__grid__") or {})
    merged = {**config, **fixed, **grid}  # a rerun kept its reserved keys inside __config__
    return TrialOverrides(
        config={k: v for k, v in fixed.items() if not _reserved(k)},
        grid={k: v for k, v in grid.items() if not _reserved(k)},
        knobs=dict(merged.get("__knobs__") or {}),
        seed=_int(merged.get("__seed__")),
        max_epochs=_int(merged.get("__max_epochs__")),
        stop_epoch=_int(merged.get("__stop_epoch__")),
        rank=_int(merged.get("__rank__")),
    )


def _reserved(key: Any) -> bool:
    return isinstance(key, str) and key.startswith("__") and key.endswith("__")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value
