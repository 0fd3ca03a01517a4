"""Record the pool of a tabular replay (:mod:`benchmarks.replay`): a real zsltune sweep of ``--num-samples``
configurations drawn at random from the method's space, each run for its whole budget (no early stopping), and
their per-iteration validation curves written as one Parquet file (``config_id``, ``iteration``, ``value``,
``config/<param>``). The file is kept in ``benchmarks/data/`` so the suite replays it without recording again; this
script rebuilds it.

    PYTHONPATH=. python benchmarks/record_pool.py --max-epochs 12                # CRnet on the demo, 200 configurations
    PYTHONPATH=. python benchmarks/record_pool.py --max-epochs 12 --seed 1 --append  # 200 more into the same pool
    PYTHONPATH=. python benchmarks/record_pool.py --num-samples 8 --max-epochs 3 --out /tmp/pool.parquet

The committed pool: 100 configurations (seed 0, the space's defaults first, as a sweep enqueues them) + 199 (seed 1,
``--append``), 12 iterations of 150 steps each, on the demo's val stage.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks._bench_util import HERE

POOL = HERE / "data" / "crnet_pool.parquet"


def pool_from_sweep(sweep_dir: str | Path, metric: str) -> pd.DataFrame:
    """The curves of a finished sweep as a pool table (only trials that ran their whole budget)."""
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
    return e.merge(conf, on="config_id").sort_values(["config_id", "iteration"]).reset_index(drop=True)


def merge_pools(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new``'s configurations after ``old``'s (renumbered); a configuration already in ``old`` is left out."""
    cols = [c for c in old.columns if c.startswith("config/")]
    if sorted(cols) != sorted(c for c in new.columns if c.startswith("config/")):
        raise ValueError(f"pools of different spaces: {sorted(cols)} vs the new pool's columns")
    seen = {tuple(r) for r in old.drop_duplicates("config_id")[cols].astype(str).itertuples(index=False)}
    first = new.drop_duplicates("config_id")
    rows = zip(first["config_id"], first[cols].astype(str).itertuples(index=False), strict=True)
    keep = [i for i, r in rows if tuple(r) not in seen]
    new = new[new["config_id"].isin(keep)].copy()
    new["config_id"] = new["config_id"].map({c: old["config_id"].max() + 1 + j for j, c in enumerate(keep)})
    return pd.concat([old, new[old.columns]], ignore_index=True)


def record(
    *, space: str = "crnet", dataset: str = "demo", num_samples: int = 200, max_epochs: int | None = None,
    out: str | Path = POOL, seed: int = 0, overrides: dict | None = None, append: bool = False,
) -> Path:  # fmt: skip
    from zsltune.space import load_space
    from zsltune.sweep import SweepOptions, run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        res = run_sweep(
            SweepOptions(
                space=space, dataset=dataset, sampler="random", scheduler="fifo", num_samples=num_samples,
                max_epochs=max_epochs, storage=tmp, name="pool", seed=seed, quiet=True, overrides=overrides or {},
            )
        )  # fmt: skip
        pool = pool_from_sweep(res.sweep_dir, load_space(space).metric)
    out = Path(out)
    if append and out.exists():
        pool = merge_pools(pd.read_parquet(out), pool)
    out.parent.mkdir(parents=True, exist_ok=True)
    pool.to_parquet(out, index=False)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="crnet")
    p.add_argument("--dataset", default="demo")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--max-epochs", type=int, default=None, help="iterations per configuration (default: the space's)")
    p.add_argument("--seed", type=int, default=0, help="the random sampler's (and the trials') seed")
    p.add_argument("--append", action="store_true", help="add the new configurations to the pool at --out")
    p.add_argument("--out", default=str(POOL))
    a = p.parse_args(argv)
    out = record(
        space=a.space, dataset=a.dataset, num_samples=a.num_samples, max_epochs=a.max_epochs, out=a.out, seed=a.seed,
        append=a.append,
    )  # fmt: skip
    pool = pd.read_parquet(out)
    print(f"wrote {out}: {pool['config_id'].nunique()} configurations x up to {pool['iteration'].max()} iterations")


if __name__ == "__main__":
    main()
