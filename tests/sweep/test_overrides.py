"""The driver's per-trial overrides: one typed value, encoded as plain data under one key of a Tune config, and
read or written nowhere else (zsltune.sweep.overrides)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

from zsltune.sweep.overrides import TrialOverrides, grid_space, split_config

REPO = Path(__file__).resolve().parents[2]
#: the reserved trial-config keys of the string side channel the overrides replaced
OLD_KEYS = ("__seed__", "__knobs__", "__grid__", "__stop_epoch__", "__max_epochs__", "__rank__", "__config__")


def _variants(space: dict) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    return [config for _, config in generate_variants(space)]


def test_overrides_round_trip_through_a_tune_config() -> None:
    over = TrialOverrides(
        config={"lr": 1e-3, "act": "relu"},
        grid={"width": 8},
        seed=3,
        max_epochs=20,
        stop_epoch=7,
        knobs={"gamma": 0.4},
        rank=2,
    )
    (config,) = _variants(grid_space(variants=[over], seeds=[3]))
    # plain data: Ray pickles it into the experiment state and writes it as params.json
    config = json.loads(json.dumps(pickle.loads(pickle.dumps(config))))
    sampled, back = split_config({**config, "margin": 0.5})
    assert back == over
    assert sampled == {"margin": 0.5}
    assert back.hyperparameters(sampled) == {"margin": 0.5, "lr": 1e-3, "act": "relu", "width": 8}


def test_a_config_without_overrides_has_none() -> None:
    sampled, over = split_config({"lr": 0.1})
    assert sampled == {"lr": 0.1}
    assert over == TrialOverrides()
    assert over.seed is None and over.max_epochs is None and over.stop_epoch is None and over.rank is None


def test_grid_space_is_every_variant_times_every_seed_variant_fastest() -> None:
    variants = [TrialOverrides(config={"b": 0}, grid={"a": a}) for a in (1, 2, 3)]
    configs = _variants(grid_space(variants=variants, seeds=[10, 11]))
    got = [(over.grid["a"], over.seed, over.config) for _, over in map(split_config, configs)]
    assert got == [(a, s, {"b": 0}) for s in (10, 11) for a in (1, 2, 3)]


def test_trial_configs_of_older_experiments_still_read() -> None:
    """--resume of an experiment started before TrialOverrides: its configs hold one reserved key per field."""
    rerun = {"__config__": {"lr": 0.1, "__rank__": 1, "__max_epochs__": 9, "__stop_epoch__": 4, "__knobs__": {}}}
    sampled, over = split_config({**rerun, "__seed__": 5})
    assert sampled == {}
    assert over == TrialOverrides(config={"lr": 0.1}, rank=1, max_epochs=9, stop_epoch=4, seed=5)
    _, grid = split_config({"__grid__": {"act": "tanh"}, "__config__": {"lr": 0.1}, "__seed__": 0})
    assert grid == TrialOverrides(config={"lr": 0.1}, grid={"act": "tanh"}, seed=0)


def test_no_module_but_overrides_touches_a_reserved_key() -> None:
    pattern = re.compile("|".join(re.escape(k) for k in OLD_KEYS))
    allowed = REPO / "zsltune" / "sweep" / "overrides.py"
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("zsltune", "analysis")
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file() and path != allowed and "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, f"reserved trial-config keys outside zsltune/sweep/overrides.py: {offenders}"
