"""zsltune.analysis.stats against scipy.stats on known samples: t intervals, BCa bootstrap, paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from zsltune.analysis.stats import bootstrap_interval, paired_comparison, summarize, t_interval

SAMPLES = [
    np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
    np.array([0.51, 0.48, 0.55, 0.47, 0.52, 0.50, 0.49]),
    np.array([0.3, 0.9]),
    np.random.default_rng(7).normal(0.6, 0.05, 30),
]


def test_t_interval_by_hand() -> None:
    # mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.7764451: half-width 2.7764451 * sqrt(2.5) / sqrt(5) = 1.9632432
    ci = t_interval([1, 2, 3, 4, 5])
    assert ci.n == 5 and ci.mean == pytest.approx(3.0) and ci.std == pytest.approx(math.sqrt(2.5))
    assert ci.half == pytest.approx(1.9632432, abs=1e-6)
    assert (ci.lo, ci.hi) == pytest.approx((1.0367568, 4.9632432), abs=1e-6)


@pytest.mark.parametrize("x", SAMPLES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_t_interval_matches_scipy(x: np.ndarray, confidence: float) -> None:
    ci = t_interval(x, confidence)
    lo, hi = st.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), rel=1e-12, abs=1e-12)
    assert ci.mean == pytest.approx(np.mean(x)) and ci.std == pytest.approx(np.std(x, ddof=1))


def test_t_interval_small_and_missing_samples() -> None:
    one = t_interval([0.4])
    assert one.n == 1 and one.mean == 0.4 and math.isnan(one.lo) and math.isnan(one.hi) and math.isnan(one.half)
    none = t_interval([])
    assert none.n == 0 and math.isnan(none.mean)
    with_nan = t_interval([1.0, float("nan"), 3.0])
    assert with_nan.n == 2 and with_nan.mean == 2.0
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], 1.5)


@pytest.mark.parametrize("x", SAMPLES)
@pytest.mark.parametrize(("confidence", "seed"), [(0.95, 0), (0.9, 3)])
def test_bootstrap_is_scipys_bca(x: np.ndarray, confidence: float, seed: int) -> None:
    lo, hi = bootstrap_interval(x, confidence, n_resamples=4999, seed=seed)
    rng = np.random.default_rng(seed)
    ref = st.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=4999, method="BCa", rng=rng)
    ref = ref.confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high), rel=1e-12, abs=1e-12)


def test_bootstrap_is_seeded_and_sane() -> None:
    x = SAMPLES[3]
    assert bootstrap_interval(x, seed=1) == bootstrap_interval(x, seed=1)
    assert bootstrap_interval(x, seed=1) != bootstrap_interval(x, seed=2)
    lo, hi = bootstrap_interval(x, seed=0)
    ci = t_interval(x)
    assert lo < x.mean() < hi and abs((hi - lo) - (ci.hi - ci.lo)) < 0.3 * (ci.hi - ci.lo)  # near t for n=30
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_interval([0.5]))


def test_paired_comparison_matches_ttest_rel() -> None:
    a = np.array([0.51, 0.48, 0.55, 0.47, 0.52, 0.50, 0.49])
    b = a - np.array([0.01, 0.03, -0.02, 0.02, 0.0, 0.01, 0.02])
    pc = paired_comparison(a, b, seed=5)
    ref = st.ttest_rel(a, b)
    assert pc.n == 7 and pc.mean_diff == pytest.approx(0.01)
    assert pc.t == pytest.approx(ref.statistic, rel=1e-10) and pc.p == pytest.approx(ref.pvalue, rel=1e-10)
    d = a - b
    assert (pc.lo, pc.hi) == pytest.approx(st.t.interval(0.95, 6, loc=d.mean(), scale=st.sem(d)), rel=1e-10)
    boot = st.bootstrap((d,), np.mean, n_resamples=9999, method="BCa", rng=np.random.default_rng(5))
    assert (pc.boot_lo, pc.boot_hi) == pytest.approx(
        (boot.confidence_interval.low, boot.confidence_interval.high), rel=1e-10, abs=1e-12
    )
    # a clear difference: tiny p, both intervals exclude 0
    far = paired_comparison(a + 0.1 + np.linspace(0, 0.01, 7), a)
    assert far.p < 1e-6 and far.lo > 0 and far.boot_lo > 0


def test_paired_comparison_edge_cases() -> None:
    a = np.array([0.5, 0.6, 0.7])
    same = paired_comparison(a, a)
    assert same.mean_diff == 0 and math.isnan(same.t) and math.isnan(same.p)
    shifted = paired_comparison(a + 0.1, a)
    assert shifted.t == math.inf and shifted.p == 0.0
    dropped = paired_comparison([0.5, float("nan"), 0.7, 0.8], [0.4, 0.5, 0.6, 0.8])
    assert dropped.n == 3
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1.0, 2.0], [1.0])


def test_summarize_groups_and_metrics() -> None:
    frame = pd.DataFrame(
        {"rank": [1, 1, 1, 2, 2, 2], "seed": [0, 1, 2] * 2, "H": [0.5, 0.52, 0.48, 0.4, 0.41, 0.45], "U": 0.3}
    )
    s = summarize(frame, ["H", "U", "absent"], by="rank")
    assert list(s.columns[:3]) == ["rank", "metric", "n"] and len(s) == 4
    row = s[(s["rank"] == 2) & (s["metric"] == "H")].iloc[0]
    ci = t_interval([0.4, 0.41, 0.45])
    assert row["n"] == 3 and row["mean"] == pytest.approx(ci.mean) and row["t_lo"] == pytest.approx(ci.lo)
    assert (row["boot_lo"], row["boot_hi"]) == pytest.approx(bootstrap_interval([0.4, 0.41, 0.45]))
    assert not row["boot_reliable"]  # 3 seeds: the report leads with the t interval
    assert bool(summarize(pd.DataFrame({"rank": 1, "H": np.linspace(0.4, 0.5, 6)}), ["H"])["boot_reliable"].iloc[0])
    constant = s[(s["rank"] == 1) & (s["metric"] == "U")].iloc[0]
    assert constant["half"] == 0 and constant["boot_lo"] == constant["boot_hi"] == pytest.approx(0.3)
