"""A surrogate of the recorded pool (surrogate benchmarks: Eggensperger et al., 2015; YAHPO Gym: Pfisterer et al.,
2022): a regressor of trees maps a configuration and an iteration to the validation value there, trained on each
configuration's curve averaged over its seeds, so a replay can answer a configuration nobody recorded. Of a random
forest, extremely randomised trees and gradient boosting, :func:`pick` keeps the one with the least leave-out error.

It counts only where it predicts better than the pool itself can be trusted: its leave-configurations-out error
(:func:`leave_out_error`, GroupKFold over configurations) must be below the seed noise (:func:`seed_noise`, the spread
of one configuration's curves over trial seeds). The error is measured against seed-averaged curves that are noisy
themselves; the noise those targets carry (seed variance / their seeds) is taken out of it, so both figures are
distances from a configuration's true mean curve: the surrogate's prediction's, and one recorded run's.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from benchmarks.replay import Table


class Encoder:
    """Configurations as features: numeric parameters scaled to [0, 1] (log where the space says log), categoricals
    one-hot, and a conditional parameter's activity as a flag of its own (its value columns 0 where inactive)."""

    def __init__(self, table: Table) -> None:
        self.params = [p for p in table.space.params if p.name in table.configs]
        self.names: list[str] = []
        for p in self.params:
            self.names += [f"{p.name}={c}" for c in p.choices] if p.type == "categorical" else [p.name]
            self.names += [f"{p.name} active"] if p.condition else []

    def row(self, params: dict[str, Any]) -> np.ndarray:
        out: list[float] = []
        for p in self.params:
            v = params.get(p.name)
            active = v is not None and not (isinstance(v, float) and math.isnan(v))
            if p.type == "categorical":
                out += [float(active and (c == v or str(c) == str(v))) for c in p.choices]
            else:
                lo, hi, x = float(p.low), float(p.high), float(v) if active else float(p.low)
                if p.log:
                    lo, hi, x = math.log(lo), math.log(hi), math.log(max(x, 1e-300))
                out.append((x - lo) / max(hi - lo, 1e-12) if active else 0.0)
            out += [float(active)] if p.condition else []
        return np.asarray(out, np.float64)

    def frame(self, configs: pd.DataFrame) -> np.ndarray:
        return np.stack([self.row(r) for r in configs.to_dict("records")])


#: the regressors a surrogate may be (:func:`pick` keeps the one with the least leave-out error): a random forest
#: (Eggensperger et al., 2015's best), extremely randomised trees (smoother between recorded points: Geurts et al.,
#: 2006) and gradient-boosted trees (histogram-based, as LightGBM)
KINDS = ("forest", "extra", "boosting")


def _regressor(kind: str, trees: int, seed: int) -> Any:
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor

    if kind == "forest":
        return RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, random_state=seed, n_jobs=1)
    if kind == "extra":
        return ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=2, random_state=seed, n_jobs=1)
    if kind == "boosting":  # shallow trees: ~60 recorded configurations overfit deep ones
        return HistGradientBoostingRegressor(max_iter=trees, max_depth=4, learning_rate=0.1, random_state=seed)
    raise ValueError(f"surrogate kind {kind!r}: unknown; valid: {', '.join(KINDS)}")


class Surrogate:
    """The validation curve of a configuration, predicted: one regressor (``kind``, default a random forest) over
    (configuration features, iteration).

    ``noise`` > 0: each answered trial's curve is shifted by one Gaussian draw of that size (use the seed noise), so
    a strategy's repeats differ as real reruns would; 0 (the default) answers the predicted mean curve."""

    def __init__(
        self, encoder: Encoder, horizon: int, *, trees: int = 100, seed: int = 0, noise: float = 0.0,
        kind: str = "forest",
    ) -> None:  # fmt: skip
        self.encoder, self.horizon, self.noise, self.kind = encoder, horizon, noise, kind
        self.model = _regressor(kind, trees, seed)

    @classmethod
    def of(
        cls, table: Table, *, trees: int = 100, seed: int = 0, noise: float = 0.0, kind: str = "forest"
    ) -> Surrogate:  # fmt: skip
        """Trained on every configuration of ``table`` (its seed-averaged curves)."""
        s = cls(Encoder(table), table.horizon, trees=trees, seed=seed, noise=noise, kind=kind)
        return s.fit(s.encoder.frame(table.configs), table.curves)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        t = np.tile(np.arange(1, self.horizon + 1, dtype=np.float64), len(x))[:, None]
        return np.hstack([np.repeat(x, self.horizon, 0), t])  # (configs * T, features + 1)

    def fit(self, x: np.ndarray, curves: np.ndarray) -> Surrogate:
        self.model.fit(self._rows(x), curves.reshape(-1))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(configs, T) predicted curves of encoded configurations ``x``."""
        return self.model.predict(self._rows(x)).reshape(len(x), self.horizon)

    def curve(self, params: dict[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
        c = self.predict(self.encoder.row(params)[None])[0]
        return c + rng.normal(0.0, self.noise) if rng is not None and self.noise > 0 else c


def seed_noise(table: Table) -> dict[str, float]:
    """Mean std over trial seeds of the configurations recorded at several: over curve points (``curve``) and of
    each run's best value (``best``); NaN where none is (a pool without repeats)."""
    runs, k = table.runs, table.seeds
    rep = runs[k >= 2]  # (configs with repeats, seeds, T)
    if not len(rep):
        return {"curve": math.nan, "best": math.nan, "configs": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the seeds a configuration lacks are NaN rows
        curve = float(np.nanmean(np.nanstd(rep, 1, ddof=1)))
        best = float(np.nanmean(np.nanstd(np.nanmax(rep, 2), 1, ddof=1)))
    return {"curve": curve, "best": best, "configs": len(rep)}


def leave_out_error(
    table: Table, *, folds: int = 5, seed: int = 0, trees: int = 100, kind: str = "forest"
) -> dict[str, float]:  # fmt: skip
    """RMSE of the surrogate on configurations it was not trained on, over curve points (``curve``) and over each
    curve's best value (``best``): KFold over configurations, so a curve's points are never split (GroupKFold by
    configuration). ``*_raw``: against the seed-averaged curves as recorded; the plain keys: with those targets' own
    seed noise taken out (where the pool has repeats)."""
    from sklearn.model_selection import KFold

    enc = Encoder(table)
    x, y = enc.frame(table.configs), table.curves
    pred = np.zeros_like(y)
    for train, test in KFold(n_splits=min(folds, len(x)), shuffle=True, random_state=seed).split(x):
        s = Surrogate(
            enc, table.horizon, trees=trees, seed=seed, kind=kind
        )  # a model per fold, on its configurations only
        pred[test] = s.fit(x[train], y[train]).predict(x[test])
    raw_curve = float(np.sqrt(np.mean((pred - y) ** 2)))
    raw_best = float(np.sqrt(np.mean((pred.max(1) - y.max(1)) ** 2)))
    noise = seed_noise(table)
    out = {"curve_raw": raw_curve, "best_raw": raw_best, "curve": raw_curve, "best": raw_best}
    if noise["configs"]:
        inv_k = float(np.mean(1.0 / table.seeds))  # a seed-mean target of k runs carries variance sigma^2 / k
        out["curve"] = math.sqrt(max(raw_curve**2 - noise["curve"] ** 2 * inv_k, 0.0))
        out["best"] = math.sqrt(max(raw_best**2 - noise["best"] ** 2 * inv_k, 0.0))
    return out


def pick(table: Table, *, kinds: tuple[str, ...] = KINDS, **kw: Any) -> tuple[str, dict[str, dict[str, float]]]:
    """The kind with the least leave-out error on each curve's best value (what a replay's fractions read), and
    every kind's error: choosing among three on the same folds is model selection, reported beside the figure."""
    errors = {k: leave_out_error(table, kind=k, **kw) for k in kinds}
    return min(errors, key=lambda k: errors[k]["best"]), errors


def verdict(error: dict[str, float], noise: dict[str, float]) -> tuple[bool | None, str]:
    """Whether the surrogate counts (its error below the seed noise on both measures) and a line that says so."""
    line = (
        f"surrogate leave-configurations-out RMSE: curve {error['curve']:.4f} (raw {error['curve_raw']:.4f}), best "
        f"{error['best']:.4f} (raw {error['best_raw']:.4f}); seed noise (mean std over seeds, {noise['configs']} "
        f"configurations): curve {noise['curve']:.4f}, best {noise['best']:.4f}"
    )
    if not noise["configs"]:
        return None, line + " -> seed noise unknown (no repeated configurations): the surrogate is unchecked"
    ok = error["curve"] < noise["curve"] and error["best"] < noise["best"]
    return ok, line + (" -> the surrogate counts" if ok else " -> the surrogate does NOT count (error above noise)")
