"""Does a compute budget help TL-VSC's search? Two real TPE + ASHA sweeps per seed on the demo, one counting Tune
iterations (``--budget iterations``) and one counting samples through the model (``--budget compute``: a trial at
batch 256 / n_critic 3 gets ~2/5 of the defaults' iterations, one at 32 / 1 three times them), compared by their
best validation H against the compute actually spent (samples, in iterations of the space's defaults). Neither
sweep is handed the defaults (``--no-defaults-first``): two sweeps that start from the same trial tell less apart.

    PYTHONPATH=. python -m benchmarks.tlvsc_budget --num-samples 10 --seeds 0 1     # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

BUDGETS = ("iterations", "compute")


def step_samples(config: pd.DataFrame) -> pd.Series:
    """Samples per TL-VSC step (a generator iteration: n_critic critic batches + one G/I batch), as
    :meth:`zsltune.methods.tlvsc.TLVSC.step_cost` counts them, from a trials table's ``config/*`` columns."""
    return config["config/batch_size"].astype(float) * (config["config/n_critic"].astype(float) + 1)


def spent_curve(epochs: pd.DataFrame, trials: pd.DataFrame, unit: float, metric: str = "H") -> pd.DataFrame:
    """Best-so-far ``metric`` against cumulative compute (iterations of the defaults), one row per trial-iteration
    in the order they were reported; ``unit``: the samples of one of the defaults' iterations."""
    steps = epochs.sort_values(["trial_id", "epoch"]).groupby("trial_id")["step"].diff()
    cost = trials.set_index("trial_id").pipe(step_samples)
    e = epochs.assign(cost=steps.fillna(epochs["step"]) * epochs["trial_id"].map(cost) / unit)
    e = e.sort_values("timestamp")
    return pd.DataFrame(
        {"compute": e["cost"].cumsum().to_numpy(), "best": e[metric].cummax().to_numpy(), "trial": e["trial_id"]}
    )


def reach(curve: pd.DataFrame, target: float) -> float:
    """Compute at which ``curve`` first reaches ``target`` (inf if never)."""
    hit = curve[curve["best"] >= target - 1e-12]
    return float(hit["compute"].iloc[0]) if len(hit) else math.inf


def run(*, num_samples: int, seeds: list[int], max_epochs: int | None = None) -> dict[str, Any]:
    from zsltune.space import load_space
    from zsltune.sweep import SweepOptions, run_sweep

    space = load_space("tlvsc")
    d = space.defaults("demo")
    unit = float(d["batch_size"]) * (int(d["n_critic"]) + 1) * int(space.iteration_steps or 1)
    rows, lines, reached = [], [], []
    for seed in seeds:
        curves: dict[str, pd.DataFrame] = {}
        for b in BUDGETS:
            t0 = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                res = run_sweep(
                    SweepOptions(
                        space="tlvsc", dataset="demo", sampler="tpe", scheduler="asha", num_samples=num_samples,
                        max_epochs=max_epochs, budget=b, seed=seed, storage=tmp, name=f"tlvsc-{b}", quiet=True,
                        defaults_first=False,
                    )
                )  # fmt: skip
                epochs, trials = pd.read_parquet(res.epochs_path), pd.read_parquet(res.sweep_dir / "trials.parquet")
            curves[b] = c = spent_curve(epochs, trials, unit)
            rows.append(
                {
                    "seed": seed,
                    "budget": b,
                    "best": float(c["best"].iloc[-1]),
                    "compute": float(c["compute"].iloc[-1]),
                    "wall_s": time.time() - t0,
                    "iterations": len(epochs),
                }
            )
        it, co = curves["iterations"], curves["compute"]
        # each sweep's compute to reach the other's final best (inf: never)
        rows[-1]["compute_to_iterations_best"] = to_it = reach(co, float(it["best"].iloc[-1]))
        rows[-2]["compute_to_compute_best"] = to_co = reach(it, float(co["best"].iloc[-1]))
        reached.append(
            f"seed {seed}: --budget compute reaches the iterations sweep's best after {to_it:.1f}; --budget "
            f"iterations reaches the compute sweep's best after {to_co:.1f} default-iterations"
        )
    df = pd.DataFrame(rows)
    for r in df.itertuples():
        lines.append(
            f"seed {r.seed} {r.budget:10s}: best val H {r.best:.3f} after {r.compute:.1f} default-iterations of "
            f"compute ({r.iterations} trial-iterations, {r.wall_s:.0f} s)"
        )
    lines += reached
    mean = df.groupby("budget")[["best", "compute", "wall_s"]].mean()
    per_compute = mean["best"] / mean["compute"]
    lines.append(
        f"mean over seeds: iterations H {mean.loc['iterations', 'best']:.3f} at {mean.loc['iterations', 'compute']:.1f}"
        f", compute H {mean.loc['compute', 'best']:.3f} at {mean.loc['compute', 'compute']:.1f}; "
        f"H per unit compute ratio (compute / iterations) {per_compute['compute'] / per_compute['iterations']:.2f}x"
    )
    return {"rows": df.to_dict("records"), "text": "\n".join(lines), "spread": float(np.std(df["best"]))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-samples", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--max-epochs", type=int, default=None, help="the budget in the defaults' iterations")
    a = p.parse_args(argv)
    print(run(num_samples=a.num_samples, seeds=a.seeds, max_epochs=a.max_epochs)["text"])


if __name__ == "__main__":
    main()
