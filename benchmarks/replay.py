"""Search efficiency on a replay, as tabular and surrogate HPO benchmarks do it (HPOBench, LCBench; surrogates:
Eggensperger et al., 2015; YAHPO Gym: Pfisterer et al., 2022): the per-iteration validation curves of a pool of
configurations are recorded once (:mod:`benchmarks.record_pool`, a real zsltune sweep, kept in the cache, not in
git); a strategy is then replayed on it with simulated compute. Its sampler proposes a configuration from the
method's space and one of two answers returns its curve, one iteration at a time, while the pruner may stop it:

* ``nearest``: the nearest recorded configuration's curve (mean over its seeds). Nearest is Gower's distance for
  mixed types: numeric parameters scaled to [0, 1] (log where the space says log), each counting its absolute
  difference; a categorical parameter counts 1 where it differs.
* ``surrogate``: a random forest's predicted curve (:mod:`benchmarks.surrogate`), which counts only where its
  leave-configurations-out error is below the pool's seed noise.

Compute is counted in trial-iterations (steps x batch, or device seconds, are a later step); nothing is handed the
paper default. Strategies, built with the sweep's own samplers (:func:`zsltune.sweep.search.make_sampler`) and
Optuna's pruners at the settings the sweep gives Ray's schedulers: random search, TPE (multivariate), TPE + ASHA
(Li et al., 2020; min resource = the space's grace period, reduction factor 3), Optuna's GP sampler + ASHA, TPE +
Hyperband (Li et al., 2017; reduction factor 3 from one iteration: BOHB-like, Falkner et al., 2018, as Optuna's TPE
models each bracket apart), CMA-ES (categorical parameters sampled independently), TPE + median pruning, and random
search + ASHA (which of the two parts of TPE + ASHA earns what it earns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from zsltune.space import SearchSpace, load_space

STRATEGIES = ("random", "tpe", "tpe+asha", "gp+asha", "tpe+hyperband", "cmaes", "tpe+median", "random+asha")
#: (params, the trial's generator) -> the curve a proposal is answered with, (T,)
Answer = Callable[[dict[str, Any], np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Table:
    """A recorded pool: ``configs`` (n, params; NaN where a conditional parameter is inactive), ``runs`` (n, seeds,
    T: the validation metric after each iteration of each seed's run, NaN where a configuration has fewer seeds; a
    curve that ended early holds its last value) and ``curves`` (n, T), their mean over seeds."""

    space: SearchSpace
    configs: pd.DataFrame
    runs: np.ndarray

    @property
    def curves(self) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.nanmean(self.runs, 1), nan=0.0)

    @property
    def seeds(self) -> np.ndarray:
        """(n,) how many seeds each configuration was recorded at."""
        return (~np.isnan(self.runs).all(2)).sum(1)

    @property
    def horizon(self) -> int:
        return int(self.runs.shape[2])

    @classmethod
    def read(cls, path: str | Path, space: str | SearchSpace) -> Table:
        """A pool Parquet (one row per config, seed and iteration: ``config_id``, ``seed`` (optional: one seed),
        ``iteration``, ``value``, ``config/*``)."""
        return cls.read_frame(pd.read_parquet(path), space)

    @classmethod
    def read_frame(cls, df: pd.DataFrame, space: str | SearchSpace) -> Table:
        """A pool table already in memory (:func:`benchmarks.record_pool.pool_from_sweep`)."""
        sp = load_space(space) if isinstance(space, str) else space
        df = df if "seed" in df else df.assign(seed=0)
        wide = df.pivot_table(index=["config_id", "seed"], columns="iteration", values="value", dropna=False)
        wide = wide.ffill(axis=1).sort_index()  # a run that ended early holds its last value
        ids = np.sort(df["config_id"].unique())
        seeds = np.sort(df["seed"].unique())
        full = wide.reindex(pd.MultiIndex.from_product([ids, seeds], names=["config_id", "seed"]))
        runs = full.to_numpy(np.float64).reshape(len(ids), len(seeds), -1)
        cols = [c for c in df.columns if c.startswith("config/")]
        first = df.sort_values("seed").drop_duplicates("config_id").set_index("config_id").loc[ids]
        configs = first[cols]
        configs.columns = [c.removeprefix("config/") for c in cols]
        return cls(sp, configs, runs)


class Nearest:
    """Maps a proposed configuration onto the nearest recorded one: Gower's distance (``metric="gower"``: every
    parameter weighs at most 1, numeric ones by their scaled absolute difference), or ``"squared"`` (numeric ones by
    the squared difference: categorical parameters then decide nearly alone)."""

    def __init__(self, table: Table, *, metric: str = "gower") -> None:
        if metric not in ("gower", "squared"):
            raise ValueError(f"metric {metric!r}: unknown; valid: gower, squared")
        self.metric, self.table_curves = metric, table.curves
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

    def curve(self, params: dict[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
        """The nearest recorded configuration's curve, mean over its seeds (``rng`` unused: a table is fixed)."""
        return self.table_curves[self(params)]


def make_study(strategy: str, seed: int, grace: int, horizon: int) -> optuna.Study:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: unknown; valid: {', '.join(STRATEGIES)}")
    from zsltune.sweep.search import make_sampler  # the samplers a sweep builds, with its settings

    sampler = make_sampler(strategy.split("+")[0], seed=seed, multi=False)
    # the schedulers' settings as make_scheduler gives them to Ray: ASHA reduction factor 3 from the grace period;
    # Hyperband reduction factor 3 up to the horizon (Ray's brackets start near one iteration); the median rule
    # after the grace period once 3 trials have reported
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if strategy.endswith("+asha"):
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=grace, reduction_factor=3)
    elif strategy.endswith("+hyperband"):
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=horizon, reduction_factor=3)
    elif strategy == "tpe+median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=grace)
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


def replay(
    table: Table, strategy: str, *, budget: int, seed: int, nearest: Nearest | None = None,
    first: dict[str, Any] | None = None, answer: Answer | None = None,
) -> np.ndarray:  # fmt: skip
    """Best validation value seen after each unit of compute: (budget,) (NaN before the first report).

    ``answer``: what answers a proposal with a curve (default: ``nearest``'s, else Gower's nearest configuration;
    a :class:`benchmarks.surrogate.Surrogate`'s ``curve``). ``first``: a configuration to try first, as a zsltune
    sweep enqueues the space's defaults (the efficiency comparison and the live check hand it to no strategy:
    their real sweeps run with ``--no-defaults-first``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP's fallback notes on conditional parameters, each trial
    answer = answer or (nearest or Nearest(table)).curve
    study = make_study(strategy, seed, table.space.grace_period, table.horizon)
    rng = np.random.default_rng(seed)
    if first:
        study.enqueue_trial(first)
    best = np.full(budget, np.nan)
    used, incumbent = 0, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while used < budget:
            trial = study.ask()
            table.space(trial)  # define-by-run: the space's own distributions and conditions
            curve = answer(trial.params, rng)
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


def fraction(curves: np.ndarray, target: float) -> float:
    """Share of the budget at which the mean best-so-far over repeats (``curves``: (repeats, budget)) first reaches
    ``target``; inf if it never does. As the HPO literature counts a speed-up over random search (e.g. BOHB,
    Falkner et al., 2018), on the mean curve, not per repeat."""
    hit = np.nanmean(np.nan_to_num(curves, nan=-np.inf), 0) >= target - 1e-12
    return float(np.argmax(hit) + 1) / curves.shape[1] if hit.any() else math.inf


def fractions(
    curves: dict[str, np.ndarray], *, baseline: str = "random", boot: int = 500, seed: int = 0, level: float = 0.9
) -> dict[str, dict[str, float]]:
    """Each strategy's :func:`fraction` of the baseline's compute to reach the baseline's mean best at the full
    budget, with a bootstrap ``level`` interval: repeats of the strategy and of the baseline resampled apart."""
    base = curves[baseline]
    rng = np.random.default_rng(seed)
    out = {}
    for name, c in curves.items():
        boots = []
        for _ in range(boot):
            b = base[rng.integers(0, len(base), len(base))]
            s = c[rng.integers(0, len(c), len(c))]
            boots.append(fraction(s, float(np.nanmean(b[:, -1]))))
        # the interval from the resamples themselves (no interpolation, which an inf would turn into NaN)
        lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
        out[name] = {"fraction": fraction(c, float(np.nanmean(base[:, -1]))), "fraction_lo": float(lo),
                     "fraction_hi": float(hi)}  # fmt: skip
    return out


@dataclass(frozen=True)
class Efficiency:
    """Curves (strategy -> (repeats, budget)) and the summary at the fixed budget."""

    curves: dict[str, np.ndarray]
    budget: int
    target: float  # random search's mean best at the budget
    summary: pd.DataFrame  # strategy, best_mean, best_std, fraction (+ _lo, _hi), compute_to_target, reached


def compare(
    table: Table, *, budget: int, repeats: int = 10, strategies: tuple[str, ...] = STRATEGIES, metric: str = "gower",
    answer: Answer | None = None,
) -> Efficiency:  # fmt: skip
    """Every strategy ``repeats`` times (seeds 0..repeats-1) on the same table at the same budget, answered by
    ``answer`` (default: Gower's nearest configuration)."""
    answer = answer or Nearest(table, metric=metric).curve
    curves = {s: np.stack([replay(table, s, budget=budget, seed=r, answer=answer) for r in range(repeats)])
              for s in strategies}  # fmt: skip
    target = float(np.nanmean(curves["random"][:, -1])) if "random" in curves else float("nan")
    fr = fractions(curves) if "random" in curves else {}
    rows = []
    for s, c in curves.items():
        f = fr.get(s, {"fraction": math.nan, "fraction_lo": math.nan, "fraction_hi": math.nan})
        rows.append(
            {
                "strategy": s,
                "best_mean": float(np.nanmean(c[:, -1])),
                "best_std": float(np.nanstd(c[:, -1])),
                **f,
                "compute_to_target": f["fraction"] * budget,
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
