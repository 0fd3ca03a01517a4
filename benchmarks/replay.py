"""Search efficiency on a tabular replay, as tabular HPO benchmarks do it (HPOBench, YAHPO, LCBench): the per-iteration
validation curves of a fixed pool of configurations are recorded once (:mod:`benchmarks.record_pool`, a real zsltune
sweep); a strategy is then replayed on the table with simulated compute. Its sampler proposes a configuration from
the method's search space; the nearest recorded one answers with its curve, one iteration at a time, and the pruner
may stop it. Nearest is Gower's distance for mixed types: numeric parameters scaled to [0, 1] (log where the space
says log), each counting its absolute difference; a categorical parameter counts 1 where it differs.
Compute is counted in trial-iterations; nothing is handed the paper default.

Strategies: random search, TPE, TPE + ASHA (Optuna's successive halving: min resource = the space's grace period,
reduction factor 3), TPE + median pruning, CMA-ES (categorical parameters sampled independently), and random search
+ ASHA (which of the two parts of TPE + ASHA earns what it earns).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from zsltune.space import SearchSpace, load_space

STRATEGIES = ("random", "tpe", "tpe+asha", "tpe+median", "cmaes", "random+asha")


@dataclass(frozen=True)
class Table:
    """A recorded pool: ``configs`` (n, params; NaN where a conditional parameter is inactive) and ``curves`` (n, T),
    the validation metric after each iteration (a curve that ended early holds its last value)."""

    space: SearchSpace
    configs: pd.DataFrame
    curves: np.ndarray

    @property
    def horizon(self) -> int:
        return int(self.curves.shape[1])

    @classmethod
    def read(cls, path: str | Path, space: str | SearchSpace) -> Table:
        """A pool Parquet (one row per config and iteration: ``config_id``, ``iteration``, ``value``, ``config/*``)."""
        return cls.read_frame(pd.read_parquet(path), space)

    @classmethod
    def read_frame(cls, df: pd.DataFrame, space: str | SearchSpace) -> Table:
        """A pool table already in memory (:func:`benchmarks.record_pool.pool_from_sweep`)."""
        sp = load_space(space) if isinstance(space, str) else space
        wide = df.pivot(index="config_id", columns="iteration", values="value").sort_index()
        curves = wide.ffill(axis=1).to_numpy(np.float64)
        cols = [c for c in df.columns if c.startswith("config/")]
        configs = df.drop_duplicates("config_id").set_index("config_id").sort_index()[cols]
        configs.columns = [c.removeprefix("config/") for c in cols]
        return cls(sp, configs, np.nan_to_num(curves, nan=0.0))


class Nearest:
    """Maps a proposed configuration onto the nearest recorded one: Gower's distance (``metric="gower"``: every
    parameter weighs at most 1, numeric ones by their scaled absolute difference), or ``"squared"`` (numeric ones by
    the squared difference: categorical parameters then decide nearly alone)."""

    def __init__(self, table: Table, *, metric: str = "gower") -> None:
        if metric not in ("gower", "squared"):
            raise ValueError(f"metric {metric!r}: unknown; valid: gower, squared")
        self.metric = metric
        self.numeric, self.categorical, cols = [], [], []
        for p in table.space.params:
            if p.name not in table.configs:
                continue
            if p.type == "categorical":
                self.categorical.append(p)
            else:
                self.numeric.append(p)
                v = table.configs[p.name].to_numpy(np.float64)
                cols.append(self._scale(p, v))
        self.x = np.stack(cols, 1) if cols else np.zeros((len(table.configs), 0))  # (n, numeric)
        self.cats = table.configs[[p.name for p in self.categorical]].astype(object).to_numpy()  # (n, categorical)

    @staticmethod
    def _scale(p: Any, v: np.ndarray) -> np.ndarray:
        lo, hi = float(p.low), float(p.high)
        if p.log:
            v, lo, hi = np.log(np.maximum(v, 1e-300)), math.log(lo), math.log(hi)
        return np.nan_to_num((v - lo) / max(hi - lo, 1e-12), nan=-1.0)  # inactive: far from any active value

    def __call__(self, params: dict[str, Any]) -> int:
        q = np.array([self._scale(p, np.array([params.get(p.name, np.nan)], np.float64))[0] for p in self.numeric])
        diff = np.abs(self.x - q) if self.metric == "gower" else (self.x - q) ** 2  # (n, numeric)
        d = diff.sum(1) if len(q) else np.zeros(len(self.x))
        for j, p in enumerate(self.categorical):
            d = d + (self.cats[:, j] != params.get(p.name)).astype(np.float64)
        return int(np.argmin(d))


def make_study(strategy: str, seed: int, grace: int) -> optuna.Study:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: unknown; valid: {', '.join(STRATEGIES)}")
    from zsltune.sweep.search import make_sampler  # the samplers a sweep builds, with its settings

    sampler = make_sampler(strategy.split("+")[0], seed=seed, multi=False)
    # the schedulers' settings as make_scheduler gives them to Ray: ASHA reduction factor 3 from the grace period;
    # the median rule after the grace period once 3 trials have reported
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if strategy.endswith("+asha"):
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=3)
    elif strategy == "tpe+median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=grace)
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


def replay(
    table: Table, strategy: str, *, budget: int, seed: int, nearest: Nearest | None = None,
    first: dict[str, Any] | None = None,
) -> np.ndarray:  # fmt: skip
    """Best validation value seen after each unit of compute: (budget,) (NaN before the first report).

    ``first``: a configuration to try first, as a zsltune sweep enqueues the space's defaults (the efficiency
    comparison and the live check hand it to no strategy: their real sweeps run with ``--no-defaults-first``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    nearest = nearest or Nearest(table)
    study = make_study(strategy, seed, table.space.grace_period)
    if first:
        study.enqueue_trial(first)
    best = np.full(budget, np.nan)
    used, incumbent = 0, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while used < budget:
            trial = study.ask()
            table.space(trial)  # define-by-run: the space's own distributions and conditions
            curve = table.curves[nearest(trial.params)]
            value, pruned = -np.inf, False
            for t in range(table.horizon):
                if used >= budget:
                    break
                value = max(value, float(curve[t]))
                incumbent = max(incumbent, float(curve[t]))
                best[used] = incumbent
                used += 1
                trial.report(float(curve[t]), t + 1)
                if trial.should_prune():
                    pruned = True
                    break
            state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
            study.tell(trial, None if pruned else value, state=state)
    return best


@dataclass(frozen=True)
class Efficiency:
    """Curves (strategy -> (repeats, budget)) and the summary at the fixed budget."""

    curves: dict[str, np.ndarray]
    budget: int
    target: float  # random search's mean best at the budget
    summary: pd.DataFrame  # strategy, best_mean, best_std, compute_to_target (mean curve), share_of_budget, reached


def compare(
    table: Table, *, budget: int, repeats: int = 10, strategies: tuple[str, ...] = STRATEGIES, metric: str = "gower"
) -> Efficiency:
    """Every strategy ``repeats`` times (seeds 0..repeats-1) on the same table at the same budget."""
    nearest = Nearest(table, metric=metric)
    curves = {s: np.stack([replay(table, s, budget=budget, seed=r, nearest=nearest) for r in range(repeats)])
              for s in strategies}  # fmt: skip
    target = float(np.nanmean(curves["random"][:, -1])) if "random" in curves else float("nan")
    rows = []
    for s, c in curves.items():
        # as the HPO literature counts a speed-up over random search (e.g. BOHB, Falkner et al. 2018): the compute at
        # which the strategy's mean best-so-far curve first reaches random search's mean best at the budget
        hit = np.nanmean(np.nan_to_num(c), 0) >= target - 1e-12  # (budget,) the mean curve at or above the target
        at = float(np.argmax(hit) + 1) if hit.any() else np.inf
        rows.append(
            {
                "strategy": s,
                "best_mean": float(np.nanmean(c[:, -1])),
                "best_std": float(np.nanstd(c[:, -1])),
                "compute_to_target": at,
                "share_of_budget": at / budget,
                "reached": float(np.mean(np.nan_to_num(c[:, -1]) >= target)),  # repeats at or above it at the end
            }
        )
    return Efficiency(curves, budget, target, pd.DataFrame(rows))


def plot(eff: Efficiency, path: str | Path, *, metric: str = "H") -> Path:
    """Best validation value vs compute (mean and the 25-75% band over repeats), one line a strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, eff.budget + 1)
    for s, c in eff.curves.items():
        ax.plot(x, np.nanmean(c, 0), label=s)
        ax.fill_between(x, np.nanpercentile(c, 25, 0), np.nanpercentile(c, 75, 0), alpha=0.15)
    ax.axhline(eff.target, color="grey", ls=":", lw=1, label="random's best at the budget")
    ax.set_xlabel("compute (trial-iterations)")
    ax.set_ylabel(f"best validation {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
