"""Record the pool of a replay (:mod:`benchmarks.replay`): a real zsltune sweep of ``--num-samples`` configurations
drawn at random from the method's space, each run for its whole budget (no early stopping), and their per-iteration
validation curves written as one Parquet file (``config_id``, ``seed``, ``iteration``, ``value``, ``config/<param>``).

The pool is a measurement of this machine and this space, not input data: it lives in the cache
(``$ZSLTUNE_CACHE/pools/<space>.parquet``, default ``~/.cache/zsltune/pools/``), not in git; ``--out`` puts it
elsewhere and ``python -m benchmarks --pool PATH`` replays that file.

``--repeats K --repeat-first N`` then runs the first N configurations again at K-1 further trial seeds (a second
sweep: the sweep's own grid of fixed configurations x seeds, FIFO, no searcher), so the pool measures seed noise
too. Column ``seed`` is the repeat's index: 0 for the random sweep (trial seed ``--seed``), i for trial seed
``--seed + i``; a pool written before the column existed reads as one seed. Until the repeats land, the first
sweep's pool waits beside ``--out`` as ``<name>.first.parquet``: a failed repeat sweep names it and loses nothing.

    PYTHONPATH=. python -m benchmarks.record_pool --num-samples 60 --repeats 3 --repeat-first 30 --seed 5
        # the replay's CRnet pool: the space's defaults first (as a sweep enqueues them) and 59 random
        # configurations, the first 30 again at trial seeds 6 and 7; about 80 minutes on 2 cores
    PYTHONPATH=. python -m benchmarks.record_pool --seed 6 --append           # 200 more configurations, one seed
    PYTHONPATH=. python -m benchmarks.record_pool --num-samples 8 --max-epochs 3 --out /tmp/pool.parquet
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from zsltune.data.cache import cache_dir


class MissingPool(FileNotFoundError):
    """The replay's pool has not been recorded on this machine (its message is one line: the path and the command)."""


def pool_path(space: str = "crnet") -> Path:
    """Where the pool of ``space`` is read and written by default: the zsltune cache, ``pools/<space>.parquet``."""
    return cache_dir() / "pools" / f"{Path(space).stem}.parquet"


def record_command(out: str | Path | None = None, space: str = "crnet") -> str:
    """The command that records the pool the replay reads: the space's defaults and 59 random configurations, the
    first 30 at 3 trial seeds (seed 5: the draws of the 2026-12-03 measurement before the space was narrowed)."""
    where = "" if out is None or Path(out) == pool_path(space) else f" --out {out}"
    flags = "" if space == "crnet" else f" --space {space}"
    repeats = "--num-samples 60 --repeats 3 --repeat-first 30 --seed 5"
    return f"PYTHONPATH=. python -m benchmarks.record_pool{flags} {repeats}{where}"


def require_pool(path: str | Path | None = None, space: str = "crnet") -> Path:
    """``path`` (default :func:`pool_path`) if it exists; else :class:`MissingPool` naming it and how to record it."""
    p = Path(path) if path is not None else pool_path(space)
    if not p.is_file():
        raise MissingPool(f"no replay pool at {p}; record it (about 80 min on 2 cores): {record_command(p, space)}")
    return p


def pool_from_sweep(sweep_dir: str | Path, metric: str) -> pd.DataFrame:
    """The curves of a finished sweep as a pool table (only trials that ran their whole budget), ``seed`` 0."""
    return _curves(sweep_dir, metric).drop(columns="trial_seed")


def _curves(sweep_dir: str | Path, metric: str) -> pd.DataFrame:
    """:func:`pool_from_sweep` with each trial's seed (``trial_seed``: a grid trial's own, else the sweep's)."""
    sweep_dir = Path(sweep_dir)
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    epochs = pd.read_parquet(sweep_dir / "epochs.parquet")
    trials = trials[trials["status"] == "completed"].reset_index(drop=True)
    ids = {t: i for i, t in enumerate(trials["trial_id"])}
    cols = [c for c in trials.columns if c.startswith("config/")]
    e = epochs[epochs["trial_id"].isin(ids)].copy()
    e["config_id"] = e["trial_id"].map(ids)
    e = e.rename(columns={"epoch": "iteration", metric: "value"})[["config_id", "iteration", "value"]]
    conf = trials[cols].copy()
    conf["config_id"] = range(len(trials))
    conf["trial_seed"] = trials["seed"].to_numpy() if "seed" in trials else 0
    pool = e.merge(conf, on="config_id").sort_values(["config_id", "iteration"]).reset_index(drop=True)
    pool.insert(1, "seed", 0)
    return pool


def _level(p: Any, v: Any) -> Any:
    """A recorded value as the space's type (Parquet may widen an int column to float); NaN: inactive."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if p.type == "categorical":
        return next((c for c in p.choices if c == v or str(c) == str(v)), v)
    return int(v) if p.type == "int" else float(v)


def _yaml(v: Any) -> str:
    """A value as a ``--grid`` level reads it back (YAML): floats always with a point and a signed exponent."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:.17e}" if isinstance(v, float) else str(v)


def _varied(pool: pd.DataFrame, space: str, fixed: dict[str, Any]) -> list[Any]:
    """The space's parameters the pool records, less those ``fixed`` (the sweeps' overrides fix them in both)."""
    from zsltune.space import load_space

    return [p for p in load_space(space).params if f"config/{p.name}" in pool and p.name not in fixed]


def repeat_grid(
    pool: pd.DataFrame, space: str, first: int, fixed: dict[str, Any] | None = None
) -> tuple[list[str], dict[tuple[str, ...], int]]:
    """The ``--grid`` item that runs the pool's first ``first`` configurations again (every parameter varied
    together), and each configuration's key -> its ``config_id``. An inactive conditional parameter takes a valid
    placeholder (its lower bound or first choice): the trainer ignores it, as it ignored the missing value."""
    params = _varied(pool, space, fixed or {})
    confs = pool[pool["seed"] == 0].drop_duplicates("config_id").sort_values("config_id").head(first)
    levels, keys = [], {}
    for cid, row in zip(confs["config_id"], confs.itertuples(index=False), strict=True):
        row = dict(zip(confs.columns, row, strict=True))
        vals = []
        for p in params:
            v = _level(p, row[f"config/{p.name}"])
            vals.append(v if v is not None else (p.choices[0] if p.type == "categorical" else _level(p, p.low)))
        levels.append(":".join(_yaml(v) for v in vals))
        keys[_key(params, vals)] = int(cid)
    return [":".join(p.name for p in params) + "=" + ",".join(levels)], keys


def _key(params: list[Any], vals: list[Any]) -> tuple[str, ...]:
    return tuple(repr(_level(p, v)) for p, v in zip(params, vals, strict=True))


def repeats_from_sweep(
    sweep_dir: str | Path, metric: str, pool: pd.DataFrame, space: str, keys: dict[tuple[str, ...], int], base: int,
    fixed: dict[str, Any] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The repeat sweep's curves under their configurations' ids in ``pool`` (their recorded values, NaN where
    inactive), ``seed`` = trial seed - ``base``."""
    params = _varied(pool, space, fixed or {})
    rep = _curves(sweep_dir, metric)
    first = rep.drop_duplicates("config_id")
    ids = {
        int(c): keys[_key(params, [r[f"config/{p.name}"] for p in params])]
        for c, r in zip(first["config_id"], first.to_dict("records"), strict=True)
    }
    rep["seed"] = rep["trial_seed"].astype(int) - base
    rep["config_id"] = rep["config_id"].map(ids)
    conf = pool[pool["seed"] == 0].drop_duplicates("config_id").set_index("config_id")
    cols = [c for c in pool.columns if c.startswith("config/")]
    rep[cols] = conf.loc[rep["config_id"], cols].to_numpy()
    return rep[pool.columns]


def merge_pools(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new``'s configurations after ``old``'s (renumbered); a configuration already in ``old`` is left out."""
    old, new = with_seed(old), with_seed(new)
    cols = [c for c in old.columns if c.startswith("config/")]
    if sorted(cols) != sorted(c for c in new.columns if c.startswith("config/")):
        raise ValueError(f"pools of different spaces: {sorted(cols)} vs the new pool's columns")
    seen = {tuple(r) for r in old.drop_duplicates("config_id")[cols].astype(str).itertuples(index=False)}
    first = new.drop_duplicates("config_id")
    rows = zip(first["config_id"], first[cols].astype(str).itertuples(index=False), strict=True)
    keep = list(dict.fromkeys(i for i, r in rows if tuple(r) not in seen))
    new = new[new["config_id"].isin(keep)].copy()
    new["config_id"] = new["config_id"].map({c: old["config_id"].max() + 1 + j for j, c in enumerate(keep)})
    return pd.concat([old, new[old.columns]], ignore_index=True)


def with_seed(pool: pd.DataFrame) -> pd.DataFrame:
    """A pool with its ``seed`` column (a pool recorded before repeats existed: one seed, 0)."""
    return pool if "seed" in pool else pool.assign(seed=0)[["config_id", "seed", *pool.columns.drop("config_id")]]


def record(
    *, space: str = "crnet", dataset: str = "demo", num_samples: int = 200, max_epochs: int | None = None,
    out: str | Path | None = None, seed: int = 0, overrides: dict | None = None, append: bool = False,
    repeats: int = 1, repeat_first: int = 0,
) -> Path:  # fmt: skip
    from zsltune.space import load_space
    from zsltune.sweep import SweepOptions, run_sweep

    metric = load_space(space).metric
    common: dict[str, Any] = {
        "space": space, "dataset": dataset, "max_epochs": max_epochs, "name": "pool", "quiet": True,
        "overrides": overrides or {},
    }  # fmt: skip
    out = Path(out) if out is not None else pool_path(space)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_sweep(
            SweepOptions(**common, sampler="random", scheduler="fifo", num_samples=num_samples, storage=tmp, seed=seed)
        )
        pool = pool_from_sweep(res.sweep_dir, metric)
    if repeats > 1 and repeat_first > 0:
        # the first sweep (most of an hour) is kept on disk until the repeats have landed
        first = out.with_name(f"{out.stem}.first{out.suffix}")
        pool.to_parquet(first, index=False)
        grid, keys = repeat_grid(pool, space, repeat_first, overrides)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                # the sweep's grid: trial seeds seed+1 .. seed+repeats-1 (grid seeds run from the sweep's seed on)
                res = run_sweep(SweepOptions(**common, grid=grid, repeats=repeats - 1, storage=tmp, seed=seed + 1))
                rep = repeats_from_sweep(res.sweep_dir, metric, pool, space, keys, seed, overrides)
        except Exception as e:
            raise RuntimeError(
                f"the repeat sweep failed ({type(e).__name__}: {e}); the first sweep's {pool['config_id'].nunique()} "
                f"configurations are kept at {first} (one seed; python -m benchmarks --pool {first} replays them)"
            ) from e
        pool = pd.concat([pool, rep], ignore_index=True)
        pool = pool.sort_values(["config_id", "seed", "iteration"]).reset_index(drop=True)
        first.unlink()
    if append and out.exists():
        pool = merge_pools(pd.read_parquet(out), pool)
    pool.to_parquet(out, index=False)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="crnet")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--max-epochs", type=int, default=None, help="iterations per configuration (default: the space's)")
    p.add_argument("--seed", type=int, default=0, help="the random sampler's (and the trials') seed")
    p.add_argument("--repeats", type=int, default=1, help="seeds of each repeated configuration (1: no repeats)")
    p.add_argument("--repeat-first", type=int, default=0, help="how many of the first configurations to repeat")
    p.add_argument("--append", action="store_true", help="add the new configurations to the pool at --out")
    p.add_argument("--out", default=None, help="the pool's file (default: $ZSLTUNE_CACHE/pools/<space>.parquet)")
    a = p.parse_args(argv)
    out = record(
        space=a.space, dataset=a.dataset, num_samples=a.num_samples, max_epochs=a.max_epochs, out=a.out, seed=a.seed,
        append=a.append, repeats=a.repeats, repeat_first=a.repeat_first,
    )  # fmt: skip
    pool = pd.read_parquet(out)
    seeds = pool.groupby("config_id")["seed"].nunique()
    print(
        f"wrote {out}: {pool['config_id'].nunique()} configurations x up to {pool['iteration'].max()} iterations; "
        f"{int((seeds > 1).sum())} of them at {int(seeds.max())} seeds"
    )


if __name__ == "__main__":
    main()
