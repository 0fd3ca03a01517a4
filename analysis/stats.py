"""Confidence intervals and paired comparisons over seed repeats, on ``scipy.stats``: pure functions of arrays.

* :func:`t_interval`: mean ± Student-t interval (``scipy.stats.t.interval``).
* :func:`bootstrap_interval`: ``scipy.stats.bootstrap`` of the mean, BCa where the sample allows (percentile where
  BCa is undefined: a constant sample). With fewer than :data:`BOOTSTRAP_MIN_N` seeds a bootstrap interval is far
  narrower than the t interval it would be compared with (3 seeds: 27 distinct resamples), so tables mark it
  unreliable and lead with the t interval.
* :func:`paired_comparison`: two configurations or methods measured on the same seeds: ``scipy.stats.ttest_rel``
  on the differences and a bootstrap interval of the mean difference.
* :func:`summarize`: all of it per group and metric, as a tidy DataFrame for tables and reports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    """``mean`` with the interval ``[lo, hi]`` at ``confidence``; ``half`` is the t half-width (NaN if n < 2)."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float
    half: float
    confidence: float


def _sample(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


#: below this many values a bootstrap interval is reported as unreliable (tables show the t interval only)
BOOTSTRAP_MIN_N = 6


def t_interval(x: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean ± Student-t interval of a sample (NaNs dropped); lo = hi = NaN for fewer than two values."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a = _sample(x)
    n = int(a.size)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan, math.nan, confidence)
    mean = float(a.mean())
    if n < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan, math.nan, confidence)
    std = float(a.std(ddof=1))
    if std == 0:
        return Interval(n, mean, 0.0, mean, mean, 0.0, confidence)
    lo, hi = _st.t.interval(confidence, n - 1, loc=mean, scale=_st.sem(a))
    return Interval(n, mean, std, float(lo), float(hi), float(hi - mean), confidence)


def bootstrap_interval(
    x: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the mean (``scipy.stats.bootstrap``, BCa; percentile for a constant sample), seeded."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a = _sample(x)
    if a.size < 2:
        return math.nan, math.nan
    if np.all(a == a[0]):  # BCa's acceleration is 0/0 here; every resample has the same mean
        return float(a[0]), float(a[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate BCa; the NaN check below handles it
        ci = _st.bootstrap(
            (a,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="BCa",
            rng=np.random.default_rng(seed),
        ).confidence_interval  # fmt: skip
    lo, hi = float(ci.low), float(ci.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa undefined for this sample: the percentile interval
        ci = _st.bootstrap(
            (a,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval  # fmt: skip
        lo, hi = float(ci.low), float(ci.high)
    return lo, hi


@dataclass(frozen=True)
class Paired:
    """``a - b`` on the same seeds: mean difference, paired t-test, t and bootstrap intervals of the difference."""

    n: int
    mean_diff: float
    t: float
    p: float
    lo: float
    hi: float
    boot_lo: float
    boot_hi: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    *,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Paired:
    """Compare ``a`` and ``b`` measured in pairs (same seeds, same order); pairs with a NaN are dropped."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples need the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    n = int(d.size)
    ci = t_interval(d, confidence)
    if n < 2:
        t = p = math.nan
    elif ci.std == 0:  # ttest_rel divides by zero here: every pair differs by the same amount
        t = math.nan if ci.mean == 0 else math.copysign(math.inf, ci.mean)
        p = math.nan if ci.mean == 0 else 0.0
    else:
        res = _st.ttest_rel(x[keep], y[keep])
        t, p = float(res.statistic), float(res.pvalue)
    blo, bhi = bootstrap_interval(d, confidence, n_resamples=n_resamples, seed=seed)
    return Paired(n, ci.mean, float(t), p, ci.lo, ci.hi, blo, bhi, confidence)


def summarize(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    by: str | Sequence[str] = "rank",
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (group, metric): ``n, mean, std, t_lo, t_hi, half, boot_lo, boot_hi, boot_reliable``."""
    keys = [by] if isinstance(by, str) else list(by)
    rows = []
    for group, sub in frame.groupby(keys, sort=True):
        gvals = group if isinstance(group, tuple) else (group,)
        for m in metrics:
            if m not in sub:
                continue
            vals = pd.to_numeric(sub[m], errors="coerce").to_numpy(dtype=np.float64)
            ci = t_interval(vals, confidence)
            blo, bhi = bootstrap_interval(vals, confidence, n_resamples=n_resamples, seed=seed)
            rows.append(
                {
                    **dict(zip(keys, gvals, strict=True)),
                    "metric": m,
                    "n": ci.n,
                    "mean": ci.mean,
                    "std": ci.std,
                    "t_lo": ci.lo,
                    "t_hi": ci.hi,
                    "half": ci.half,
                    "boot_lo": blo,
                    "boot_hi": bhi,
                    "boot_reliable": ci.n >= BOOTSTRAP_MIN_N,
                }
            )
    columns = [*keys, "metric", "n", "mean", "std", "t_lo", "t_hi", "half", "boot_lo", "boot_hi", "boot_reliable"]
    return pd.DataFrame(rows, columns=columns)
